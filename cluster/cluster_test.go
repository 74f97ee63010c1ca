package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// testNode remembers what a node needs to be restarted with the same identity and addresses.
type testNode struct {
	*Node
	cfg Config
}

func testConfig(t *testing.T, id, dir string, join []string, expect int) Config {
	return Config{
		NodeID: id, DataDir: dir, RaftBind: "127.0.0.1:0", GossipBind: "127.0.0.1:0",
		GRPCAdvertise: "127.0.0.1:1", Join: join, BootstrapExpect: expect,
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
		LeaderLeaseTimeout: 300 * time.Millisecond, CommitTimeout: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// mustNewNode starts a node and closes it when the test ends.
func mustNewNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	n, err := Open(cfg)
	if err != nil {
		t.Fatalf("open node %s: %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	// Pin the ports the OS picked so a restart comes back at the same addresses.
	cfg.RaftBind, cfg.GossipBind = n.RaftAddr(), n.GossipAddr()
	return &testNode{Node: n, cfg: cfg}
}

// mustNewCluster starts n nodes that bootstrap together through gossip, and waits for a leader.
func mustNewCluster(t *testing.T, size int) []*testNode {
	t.Helper()
	base := t.TempDir()
	var nodes []*testNode
	var seeds []string
	for i := range size {
		id := fmt.Sprintf("node%d", i+1)
		tn := mustNewNode(t, testConfig(t, id, filepath.Join(base, id), seeds, size))
		if i == 0 {
			seeds = []string{tn.GossipAddr()}
		}
		nodes = append(nodes, tn)
	}
	waitLeader(t, nodes)
	return nodes
}

func waitLeader(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.IsLeader() {
				// Every live node must agree.
				agree := true
				for _, o := range nodes {
					if id, _ := o.Leader(); id != n.ID() {
						agree = false
					}
				}
				if agree {
					return n
				}
			}
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded by the deadline
	}
	t.Fatal("no leader agreed on within 15s")
	return nil
}

func eventID(n uint64) []byte {
	b := make([]byte, 16)
	b[0] = 0xCA
	binary.BigEndian.PutUint64(b[8:], n)
	return b
}

func appendReq(stream string, ids ...uint64) *fsmpb.Request {
	var evs []*fsmpb.Event
	for _, id := range ids {
		evs = append(evs, &fsmpb.Event{Id: eventID(id), Type: "T", Data: []byte("x")})
	}
	return &fsmpb.Request{Kind: &fsmpb.Request_Append{Append: &fsmpb.AppendRequest{Parts: []*fsmpb.StreamAppend{{
		Stream: stream, Expected: &fsmpb.ExpectedRevision{Kind: fsmpb.ExpectedRevision_KIND_ANY}, Events: evs,
	}}}}}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestThreeNodesFormOneClusterThroughGossip(t *testing.T) {
	nodes := mustNewCluster(t, 3)
	leader := waitLeader(t, nodes)
	// Before any write: the log ends with the term's no-op, which raft never hands to the FSM; a
	// linearizable read must still complete (the term barrier is a command the FSM applies).
	if _, err := leader.ReadFence(ctxT(t, 3*time.Second), ReadOptions{Consistency: Linearizable}); err != nil {
		t.Fatalf("linearizable read on an idle new cluster: %v", err)
	}
	st, err := leader.Status(ctxT(t, 5*time.Second), false)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetRole() != "leader" || len(st.GetMembers()) != 3 {
		t.Fatalf("status: %+v", st)
	}
	for _, m := range st.GetMembers() {
		if m.GetSuffrage() != "voter" {
			t.Fatalf("member %s is %s, want voter", m.GetId(), m.GetSuffrage())
		}
	}
	followers := 0
	for _, n := range nodes {
		if n.ID() != leader.ID() {
			s, _ := n.Status(ctxT(t, time.Second), false)
			if s.GetRole() == "follower" && s.GetLeaderId() == leader.ID() {
				followers++
			}
		}
	}
	if followers != 2 {
		t.Fatalf("%d followers agree on the leader, want 2", followers)
	}
}

func TestProposeAndReadConsistency(t *testing.T) {
	nodes := mustNewCluster(t, 3)
	leader := waitLeader(t, nodes)
	res, err := leader.Propose(ctxT(t, 5*time.Second), appendReq("s", 1, 2))
	if err != nil || res.Err != nil {
		t.Fatalf("propose: %v %v", err, res.Err)
	}
	for _, n := range nodes {
		ctx := ctxT(t, 5*time.Second)
		if n.ID() != leader.ID() {
			// A follower refuses to propose and to serve linearizable reads, naming the leader.
			var nl *NotLeaderError
			if _, err := n.Propose(ctx, appendReq("s", 3)); !errors.As(err, &nl) || nl.LeaderID != leader.ID() {
				t.Fatalf("propose on follower: %v", err)
			}
			if _, err := n.ReadFence(ctx, ReadOptions{Consistency: Linearizable}); !errors.As(err, &nl) {
				t.Fatalf("linearizable read on follower: %v", err)
			}
			// A stale read with the append's index as token sees the append.
			info, err := n.ReadFence(ctx, ReadOptions{Consistency: Stale, MinLogIndex: res.LogIndex})
			if err != nil || info.AppliedIndex < res.LogIndex {
				t.Fatalf("stale read with token: %v %+v", err, info)
			}
		} else if _, err := n.ReadFence(ctx, ReadOptions{Consistency: Linearizable}); err != nil {
			t.Fatalf("linearizable read on leader: %v", err)
		}
		evs, err := n.FSM().ReadStream("s", fsm.Start, fsm.Forward, 10)
		if err != nil || len(evs) != 2 {
			t.Fatalf("node %s: %v, %d events", n.ID(), err, len(evs))
		}
	}
	// A token beyond anything committed cannot be met before the deadline.
	follower := nodes[0]
	if follower.ID() == leader.ID() {
		follower = nodes[1]
	}
	_, err = follower.ReadFence(ctxT(t, 100*time.Millisecond), ReadOptions{Consistency: Stale, MinLogIndex: res.LogIndex + 1000})
	var se *StalenessError
	if !errors.Is(err, ErrNotCaughtUp) || !errors.As(err, &se) || se.RequiredIndex != res.LogIndex+1000 {
		t.Fatalf("unreachable token: %v", err)
	}
}

func TestLeaderKillRetryIsIdempotentAndNothingLost(t *testing.T) {
	nodes := mustNewCluster(t, 3)
	leader := waitLeader(t, nodes)
	var acked []uint64
	for i := uint64(1); i <= 20; i++ {
		res, err := leader.Propose(ctxT(t, 5*time.Second), appendReq("s", i))
		if err != nil || res.Err != nil {
			t.Fatalf("propose %d: %v %v", i, err, res.Err)
		}
		acked = append(acked, i)
	}
	orig, err := leader.Propose(ctxT(t, 5*time.Second), appendReq("retry", 100, 101))
	if err != nil || orig.Err != nil {
		t.Fatal(err, orig.Err)
	}
	if err := leader.Kill(); err != nil {
		t.Logf("kill: %v", err)
	}
	var rest []*testNode
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	start := time.Now()
	newLeader := waitLeader(t, rest)
	t.Logf("new leader %s after %v", newLeader.ID(), time.Since(start))
	retry, err := newLeader.Propose(ctxT(t, 5*time.Second), appendReq("retry", 100, 101))
	if err != nil || retry.Err != nil {
		t.Fatalf("retry: %v %v", err, retry.Err)
	}
	if !retry.Idempotent || retry.LogIndex != orig.LogIndex || retry.Streams[0].FirstPosition != orig.Streams[0].FirstPosition {
		t.Fatalf("retry after failover: %+v, original %+v", retry, orig)
	}
	for _, n := range rest {
		if _, err := n.ReadFence(ctxT(t, 5*time.Second), ReadOptions{Consistency: Stale, MinLogIndex: retry.LogIndex}); err != nil {
			t.Fatal(err)
		}
		evs, err := n.FSM().ReadStream("s", fsm.Start, fsm.Forward, 100)
		if err != nil || len(evs) != len(acked) {
			t.Fatalf("node %s: %v, %d events, want %d", n.ID(), err, len(evs), len(acked))
		}
		for i, e := range evs {
			if e.ID != [16]byte(eventID(acked[i])) {
				t.Fatalf("node %s revision %d holds the wrong event", n.ID(), i)
			}
		}
		if evs, _ := n.FSM().ReadStream("retry", fsm.Start, fsm.Forward, 100); len(evs) != 2 {
			t.Fatalf("node %s: retried append stored %d times over", n.ID(), len(evs))
		}
	}
}

func TestRestartKeepsDataAndCatchesUp(t *testing.T) {
	nodes := mustNewCluster(t, 3)
	leader := waitLeader(t, nodes)
	for i := uint64(1); i <= 10; i++ {
		if _, err := leader.Propose(ctxT(t, 5*time.Second), appendReq("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Stop one follower, write more, restart it: it catches up.
	var down *testNode
	for _, n := range nodes {
		if n != leader {
			down = n
			break
		}
	}
	if err := down.Close(); err != nil {
		t.Fatal(err)
	}
	var last fsm.Result
	for i := uint64(11); i <= 20; i++ {
		var err error
		if last, err = leader.Propose(ctxT(t, 5*time.Second), appendReq("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	back := mustNewNode(t, down.cfg)
	if _, err := back.ReadFence(ctxT(t, 10*time.Second), ReadOptions{Consistency: Stale, MinLogIndex: last.LogIndex}); err != nil {
		t.Fatalf("restarted node did not catch up: %v", err)
	}
	if evs, err := back.FSM().ReadStream("s", fsm.Start, fsm.Forward, 100); err != nil || len(evs) != 20 {
		t.Fatalf("restarted node: %v, %d events", err, len(evs))
	}

	// Restart the whole cluster: everything is there, nothing applied twice.
	cfgs := []Config{}
	for _, n := range append([]*testNode{back}, nodes...) {
		if n != down {
			cfgs = append(cfgs, n.cfg)
			_ = n.Close()
		}
	}
	var again []*testNode
	for _, c := range cfgs {
		again = append(again, mustNewNode(t, c))
	}
	l := waitLeader(t, again)
	res, err := l.Propose(ctxT(t, 5*time.Second), appendReq("s", 21))
	if err != nil || res.Err != nil || res.Streams[0].FirstRevision != 20 {
		t.Fatalf("append after full restart: %v %+v", err, res)
	}
	for _, n := range again {
		if _, err := n.ReadFence(ctxT(t, 5*time.Second), ReadOptions{Consistency: Stale, MinLogIndex: res.LogIndex}); err != nil {
			t.Fatal(err)
		}
		if evs, err := n.FSM().ReadStream("s", fsm.Start, fsm.Forward, 100); err != nil || len(evs) != 21 {
			t.Fatalf("node %s after full restart: %v, %d events", n.ID(), err, len(evs))
		}
	}
}

func TestDataDirBelongsToOneNode(t *testing.T) {
	dir := t.TempDir()
	n := mustNewNode(t, testConfig(t, "a", dir, nil, 1))
	n.Close()
	if _, err := Open(testConfig(t, "b", dir, nil, 1)); err == nil {
		t.Fatal("a data dir of node a opened as node b")
	}
}

func TestHclogAdapterRendersFormats(t *testing.T) {
	var buf strings.Builder
	l := newHclog(slog.New(slog.NewTextHandler(&buf, nil)), "raft", hclog.Info)
	l.Info("initial configuration", "servers", hclog.Fmt("%+v", []int{1, 2}))
	l.Debug("hidden")
	if out := buf.String(); !strings.Contains(out, "servers=\"[1 2]\"") || strings.Contains(out, "hidden") || !strings.Contains(out, "logger=raft") {
		t.Fatalf("log line: %s", out)
	}
}

// A member that stops shows as gone in gossip (the state comes from memberlist's leave event),
// so the leader never adds or promotes it again.
func TestStoppedMemberLeavesGossipView(t *testing.T) {
	nodes := mustNewCluster(t, 3)
	leader := waitLeader(t, nodes)
	var gone *testNode
	for _, n := range nodes {
		if n != leader {
			gone = n
			break
		}
	}
	if err := gone.Kill(); err != nil {
		t.Logf("kill: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for leader.members.gossipState(gone.ID()) == "alive" {
		if time.Now().After(deadline) {
			t.Fatalf("%s still alive in the leader's gossip view 20s after it died", gone.ID())
		}
		time.Sleep(50 * time.Millisecond) // memberlist's failure detection, bounded
	}
	for _, m := range leader.members.alive() {
		if m.ID == gone.ID() {
			t.Fatalf("%s listed among alive members", gone.ID())
		}
	}
}

// Writing SnapshotBytes of data triggers a snapshot even far below SnapshotThreshold entries.
func TestSnapshotBySize(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir(), nil, 1)
	cfg.SnapshotBytes = 64 << 10
	cfg.SnapshotThreshold = 1 << 30
	n := mustNewNode(t, cfg)
	waitLeader(t, []*testNode{n})
	payload := make([]byte, 4096)
	for i := uint64(1); i <= 40; i++ { // 160 KiB in 40 entries
		req := appendReq("s", i)
		req.GetAppend().GetParts()[0].GetEvents()[0].Data = payload
		if _, err := n.Propose(ctxT(t, 5*time.Second), req); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for n.raft.Stats()["last_snapshot_index"] == "0" {
		if time.Now().After(deadline) {
			t.Fatal("no snapshot 10s after writing 160 KiB with a 64 KiB size trigger")
		}
		time.Sleep(50 * time.Millisecond) // the trigger checks once a second
	}
}
