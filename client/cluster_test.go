package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/testcluster"
)

// mustNewCluster starts an in-process cluster of size real nodes (raft, gossip, state machine,
// gRPC API on loopback) and returns it with its leader. Everything stops when the test ends.
func mustNewCluster(t *testing.T, size int) (*testcluster.Cluster, *testcluster.Node) {
	t.Helper()
	c := testcluster.New(t, size)
	return c, c.WaitLeader(t)
}

// TestAgainstCluster runs the scenarios that do not break the cluster against one shared
// three-node cluster.
func TestAgainstCluster(t *testing.T) {
	tc, leader := mustNewCluster(t, 3)
	followers := tc.Followers(leader)
	follower := followers[0]

	t.Run("AppendAndReadThroughAFollower", func(t *testing.T) {
		c := newTestClient(t, []string{follower.Addr})
		ctx := ctxTimeout(t, 10*time.Second)
		id := client.NewEventID()
		res, err := c.Append(ctx, "roundtrip-1", client.NoStream(), []client.EventData{
			{ID: id, Type: "OrderPlaced", ContentType: "application/json", Data: []byte(`{"id":1}`), Metadata: []byte("m"), Tags: []string{"eu"}},
			{Type: "OrderPaid", Data: []byte(`{"id":1}`)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.FirstRevision != 0 || res.LastRevision != 1 || res.LastPosition != res.FirstPosition+1 || res.LogIndex == 0 ||
			res.Idempotent || res.CommitTime.IsZero() || res.EventIDs[0] != id || res.EventIDs[1] == "" {
			t.Fatalf("append result %+v", res)
		}
		rd, err := c.Read(ctx, "roundtrip-1", client.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rd.Events) != 2 || !rd.EndOfStream || !rd.ServedBy.Leader || rd.ServedBy.NodeID != leader.ID() {
			t.Fatalf("read %+v", rd)
		}
		e := rd.Events[0]
		if e.ID != id || e.Type != "OrderPlaced" || e.ContentType != "application/json" || !bytes.Equal(e.Data, []byte(`{"id":1}`)) ||
			string(e.Metadata) != "m" || len(e.Tags) != 1 || e.Tags[0] != "eu" || e.Stream != "roundtrip-1" ||
			e.Position != res.FirstPosition || e.LogIndex != res.LogIndex || !e.CommitTime.Equal(res.CommitTime) {
			t.Fatalf("event %+v, append %+v", e, res)
		}
		if rd.Events[1].ID != res.EventIDs[1] || rd.Events[1].Revision != 1 {
			t.Fatalf("second event %+v", rd.Events[1])
		}
		back, err := c.Read(ctx, "roundtrip-1", client.ReadOptions{FromEnd: true, Direction: client.Backward, Limit: 1})
		if err != nil || len(back.Events) != 1 || back.Events[0].Revision != 1 || back.EndOfStream {
			t.Fatalf("backward read: %v %+v", err, back)
		}
		all, err := c.ReadAll(ctx, client.ReadAllOptions{Filter: client.Filter{StreamPrefixes: []string{"roundtrip-"}, Tags: []string{"eu"}}})
		if err != nil || len(all.Events) != 1 || all.Events[0].ID != id || !all.EndOfLog || all.Checkpoint < res.LastPosition {
			t.Fatalf("read all: %v %+v", err, all)
		}
	})

	t.Run("WrongExpectedRevision", func(t *testing.T) {
		c := newTestClient(t, tc.Addrs())
		ctx := ctxTimeout(t, 10*time.Second)
		if _, err := c.Append(ctx, "wer-1", client.NoStream(), oneEvent()); err != nil { // revisions 0, 1
			t.Fatal(err)
		}
		for _, exp := range []client.Expected{client.NoStream(), client.Exact(0), client.Exact(5)} {
			_, err := c.Append(ctx, "wer-1", exp, oneEvent())
			var w *client.WrongExpectedRevisionError
			if !errors.Is(err, client.ErrWrongExpectedRevision) || !errors.As(err, &w) {
				t.Fatalf("expected %v: %v", exp, err)
			}
			if len(w.Violations) != 1 || w.Violations[0].ActualRevision != 1 || !w.Violations[0].StreamExists ||
				w.Violations[0].Expected != exp || w.Violations[0].Stream != "wer-1" {
				t.Fatalf("expected %v: violations %+v", exp, w.Violations)
			}
			if errors.Is(err, client.ErrStreamTombstoned) || errors.Is(err, client.ErrUnavailable) || status.Code(err) != codes.Aborted {
				t.Fatalf("expected %v: wrong classification of %v", exp, err)
			}
		}
		_, err := c.Append(ctx, "wer-nothing", client.StreamExists(), oneEvent())
		var w *client.WrongExpectedRevisionError
		if !errors.As(err, &w) || w.Violations[0].StreamExists {
			t.Fatalf("stream exists on no stream: %v", err)
		}
		if _, err := c.Append(ctx, "wer-1", client.Exact(1), oneEvent()); err != nil {
			t.Fatalf("right expected revision: %v", err)
		}
		// AppendMulti reports every violation at once.
		_, err = c.AppendMulti(ctx, []client.StreamAppend{
			{Stream: "wer-1", Expected: client.NoStream(), Events: oneEvent()},
			{Stream: "wer-2", Expected: client.Exact(3), Events: oneEvent()},
		})
		if !errors.As(err, &w) || len(w.Violations) != 2 {
			t.Fatalf("append multi: %v", err)
		}
		mres, err := c.AppendMulti(ctx, []client.StreamAppend{
			{Stream: "wer-1", Expected: client.Exact(3), Events: oneEvent()},
			{Stream: "wer-2", Expected: client.NoStream(), Events: oneEvent()[:1]},
		})
		if err != nil || len(mres.Results) != 2 || mres.Results[0].FirstRevision != 4 || mres.Results[1].Count != 1 ||
			mres.Results[1].LastPosition != mres.Results[0].LastPosition+1 || len(mres.Results[1].EventIDs) != 1 {
			t.Fatalf("append multi: %v %+v", err, mres)
		}
	})

	t.Run("Tombstoned", func(t *testing.T) {
		c := newTestClient(t, tc.Addrs())
		ctx := ctxTimeout(t, 10*time.Second)
		if _, err := c.Append(ctx, "tomb-1", client.Any(), oneEvent()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Tombstone(ctx, "tomb-1", client.Exact(1)); err != nil {
			t.Fatal(err)
		}
		_, err := c.Append(ctx, "tomb-1", client.Any(), oneEvent())
		var w *client.WrongExpectedRevisionError
		if !errors.Is(err, client.ErrStreamTombstoned) || errors.Is(err, client.ErrWrongExpectedRevision) || !errors.As(err, &w) || !w.Violations[0].Tombstoned {
			t.Fatalf("append to tombstoned: %v", err)
		}
		_, err = c.Read(ctx, "tomb-1", client.ReadOptions{})
		var nf *client.StreamNotFoundError
		if !errors.Is(err, client.ErrStreamTombstoned) || !errors.As(err, &nf) || !nf.Tombstoned || nf.Stream != "tomb-1" {
			t.Fatalf("read tombstoned: %v", err)
		}
	})

	t.Run("MetadataAndSoftDelete", func(t *testing.T) {
		c := newTestClient(t, []string{follower.Addr})
		ctx := ctxTimeout(t, 10*time.Second)
		for range 3 { // revisions 0-5
			if _, err := c.Append(ctx, "life-1", client.Any(), oneEvent()); err != nil {
				t.Fatal(err)
			}
		}
		two := uint64(2)
		set, err := c.SetStreamMetadata(ctx, "life-1", client.NoStream(), &client.StreamMetadata{MaxCount: &two,
			User: map[string][]byte{"owner": []byte("a")}})
		if err != nil || set.MetadataRevision != 0 {
			t.Fatalf("set metadata: %+v %v", set, err)
		}
		_, err = c.SetStreamMetadata(ctx, "life-1", client.NoStream(), nil)
		var w *client.WrongExpectedRevisionError
		if !errors.Is(err, client.ErrWrongExpectedRevision) || !errors.As(err, &w) || !w.Violations[0].Metadata {
			t.Fatalf("set metadata with a stale condition: %v", err)
		}
		md, err := c.GetStreamMetadata(ctx, "life-1", client.ReadOptions{})
		if err != nil || !md.Exists || md.Revision != 0 || *md.Metadata.MaxCount != 2 || string(md.Metadata.User["owner"]) != "a" {
			t.Fatalf("get metadata: %+v %v", md, err)
		}
		rd, err := c.Read(ctx, "life-1", client.ReadOptions{})
		if err != nil || len(rd.Events) != 2 || rd.Events[0].Revision != 4 {
			t.Fatalf("read with max_count 2: %+v %v", rd, err)
		}
		if _, err := c.DeleteStream(ctx, "life-1", client.Exact(5)); err != nil {
			t.Fatal(err)
		}
		info, err := c.GetStreamInfo(ctx, "life-1", client.ReadOptions{})
		if err != nil || info.Exists || !info.Deleted || info.LastRevision != 5 || info.Metadata == nil || *info.Metadata.MaxCount != 2 {
			t.Fatalf("info after delete: %+v %v", info, err)
		}
		if _, err := c.Read(ctx, "life-1", client.ReadOptions{}); !errors.Is(err, client.ErrStreamNotFound) {
			t.Fatalf("read after delete: %v", err)
		}
		if _, err := c.DeleteStream(ctx, "never-1", client.Any()); !errors.Is(err, client.ErrStreamNotFound) {
			t.Fatalf("delete of a missing stream: %v", err)
		}
	})

	t.Run("TimeTravel", func(t *testing.T) {
		c := newTestClient(t, tc.Addrs())
		ctx := ctxTimeout(t, 10*time.Second)
		var commits []time.Time
		for range 3 {
			res, err := c.Append(ctx, "tt-1", client.Any(), []client.EventData{{Type: "T", Data: []byte("{}")}})
			if err != nil {
				t.Fatal(err)
			}
			commits = append(commits, res.CommitTime)
		}
		revs := func(rd *client.ReadResult, err error) []uint64 {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			var out []uint64
			for _, e := range rd.Events {
				out = append(out, e.Revision)
			}
			return out
		}
		// Commit times are distinct here (separate appends); as of the second commit: 0, 1.
		if commits[1].Equal(commits[0]) || commits[2].Equal(commits[1]) {
			t.Skip("commit times collided; the clock is too coarse for this check")
		}
		if got := revs(c.Read(ctx, "tt-1", client.ReadOptions{StopAtTime: commits[1]})); len(got) != 2 || got[1] != 1 {
			t.Fatalf("as of the second commit: %v", got)
		}
		if got := revs(c.Read(ctx, "tt-1", client.ReadOptions{FromTime: commits[1]})); len(got) != 2 || got[0] != 1 {
			t.Fatalf("from the second commit: %v", got)
		}
		all, err := c.ReadAll(ctx, client.ReadAllOptions{FromTime: commits[2], Filter: client.Filter{StreamPrefixes: []string{"tt-"}}})
		if err != nil || len(all.Events) != 1 || all.Events[0].Revision != 2 {
			t.Fatalf("$all from the third commit: %+v %v", all, err)
		}
	})

	t.Run("StreamNotFound", func(t *testing.T) {
		c := newTestClient(t, tc.Addrs())
		_, err := c.Read(ctxTimeout(t, 10*time.Second), "no-such-stream", client.ReadOptions{Consistency: client.Stale})
		var nf *client.StreamNotFoundError
		if !errors.Is(err, client.ErrStreamNotFound) || !errors.As(err, &nf) || nf.Stream != "no-such-stream" || nf.Tombstoned {
			t.Fatalf("read: %v", err)
		}
	})

	t.Run("StaleReadOnAFollowerSeesOwnWrites", func(t *testing.T) {
		// The client knows only the leader for writes and reads stale from one follower: without
		// the token the follower could serve a state without the append.
		c := newTestClient(t, []string{leader.Addr}, client.WithStaleReadAddress(follower.Addr))
		ctx := ctxTimeout(t, 20*time.Second)
		for i := range 20 {
			res, err := c.Append(ctx, "ryw-1", client.Any(), []client.EventData{{Type: "T", Data: fmt.Appendf(nil, "%d", i)}})
			if err != nil {
				t.Fatal(err)
			}
			rd, err := c.Read(ctx, "ryw-1", client.ReadOptions{Consistency: client.Stale, FromEnd: true, Direction: client.Backward, Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			if rd.ServedBy.NodeID != follower.ID() || rd.ServedBy.Leader {
				t.Fatalf("served by %+v, want follower %s", rd.ServedBy, follower.ID())
			}
			if len(rd.Events) != 1 || rd.Events[0].ID != res.EventIDs[0] || rd.ServedBy.AppliedIndex < res.LogIndex {
				t.Fatalf("iteration %d: stale read missed the append at log index %d: %+v", i, res.LogIndex, rd)
			}
		}
		// MaxStaleness on a healthy follower is met.
		if _, err := c.Read(ctx, "ryw-1", client.ReadOptions{Consistency: client.Stale, MaxStaleness: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		// A token beyond anything committed cannot be met: ErrNotCaughtUp with the numbers.
		far := c.SeenLogIndex() + 1_000_000
		_, err := c.Read(ctxTimeout(t, 300*time.Millisecond), "ryw-1", client.ReadOptions{Consistency: client.Stale, MinLogIndex: far})
		var nc *client.NotCaughtUpError
		if !errors.Is(err, client.ErrNotCaughtUp) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("unreachable token: %v", err)
		}
		if errors.As(err, &nc) && nc.RequiredIndex != far {
			t.Fatalf("not caught up: %+v", nc)
		}
	})

	t.Run("NotLeader", func(t *testing.T) {
		c := newTestClient(t, []string{follower.Addr})
		ctx := ctxTimeout(t, 10*time.Second)
		_, err := c.Append(ctx, "nl-1", client.Any(), oneEvent(), client.RequireLeader(), client.ToAddress(follower.Addr))
		var nl *client.NotLeaderError
		if !errors.Is(err, client.ErrNotLeader) || !errors.Is(err, client.ErrUnavailable) || !errors.As(err, &nl) ||
			nl.LeaderID != leader.ID() || nl.LeaderAddr != leader.Addr {
			t.Fatalf("pinned append requiring the leader: %v", err)
		}
		if _, err := c.Append(ctx, "nl-1", client.Any(), oneEvent(), client.RequireLeader()); err != nil {
			t.Fatalf("append requiring the leader, redirected: %v", err)
		}
		if c.Leader() != leader.Addr {
			t.Fatalf("client learned leader %q, want %q", c.Leader(), leader.Addr)
		}
	})

	t.Run("InvalidArgument", func(t *testing.T) {
		c := newTestClient(t, tc.Addrs())
		ctx := ctxTimeout(t, 10*time.Second)
		for _, tt := range []struct {
			stream string
			events []client.EventData
			field  string
			reason string
		}{
			{"ia-1", []client.EventData{{Type: ""}}, "events[0].type", "REQUIRED"},
			{"$system", []client.EventData{{Type: "T"}}, "stream", "RESERVED_PREFIX"},
			{"ia-1", []client.EventData{{Type: "T"}, {ID: "not-a-uuid", Type: "T"}}, "events[1].id", "INVALID_UUID"},
			{"ia-1", nil, "events", "REQUIRED"},
		} {
			_, err := c.Append(ctx, tt.stream, client.Any(), tt.events)
			var ia *client.InvalidArgumentError
			if !errors.Is(err, client.ErrInvalidArgument) || !errors.As(err, &ia) || ia.Field != tt.field || ia.Reason != tt.reason {
				t.Errorf("append %q %+v: %v (want field %s, reason %s)", tt.stream, tt.events, err, tt.field, tt.reason)
			}
		}
	})

	t.Run("LimitExceeded", func(t *testing.T) {
		c := newTestClient(t, tc.Addrs())
		big := make([]byte, 1<<20+1)
		_, err := c.Append(ctxTimeout(t, 10*time.Second), "limit-1", client.Any(), []client.EventData{{Type: "T", Data: big}})
		var le *client.LimitError
		if !errors.Is(err, client.ErrLimitExceeded) || !errors.As(err, &le) || le.Limit != "event_bytes" || le.Max != 1<<20 || le.Actual <= le.Max {
			t.Fatalf("append: %v", err)
		}
	})

	t.Run("RetryWithSameIDsIsIdempotent", func(t *testing.T) {
		c := newTestClient(t, tc.Addrs())
		ctx := ctxTimeout(t, 10*time.Second)
		events := []client.EventData{{ID: client.NewEventID(), Type: "T"}, {ID: client.NewEventID(), Type: "T"}}
		first, err := c.Append(ctx, "idem-1", client.NoStream(), events)
		if err != nil {
			t.Fatal(err)
		}
		again, err := c.Append(ctx, "idem-1", client.NoStream(), events)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Idempotent || again.LogIndex != first.LogIndex || again.FirstPosition != first.FirstPosition {
			t.Fatalf("retry %+v, original %+v", again, first)
		}
		_, err = c.Append(ctx, "idem-1", client.Any(), []client.EventData{events[0], {Type: "T"}})
		if !errors.Is(err, client.ErrEventIDConflict) {
			t.Fatalf("partial overlap: %v", err)
		}
	})

	t.Run("StatusAndHealth", func(t *testing.T) {
		c := newTestClient(t, []string{follower.Addr})
		ctx := ctxTimeout(t, 10*time.Second)
		st, err := c.Status(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		if st.NodeID != follower.ID() || st.Role != "follower" || st.LeaderID != leader.ID() || st.LeaderAddress != leader.Addr ||
			len(st.Members) != 3 || st.Addr != follower.Addr || !st.HasContact {
			t.Fatalf("status %+v", st)
		}
		for _, m := range st.Members {
			if m.Suffrage != "voter" || m.GRPCAddress == "" || m.Role == "unknown" {
				t.Fatalf("member %+v", m)
			}
		}
		if c.Leader() != leader.Addr {
			t.Fatalf("status did not teach the leader: %q", c.Leader())
		}
		// With the leader known, status goes to the leader; ToAddress pins it.
		if st, err := c.Status(ctx, false); err != nil || st.NodeID != leader.ID() || st.Role != "leader" {
			t.Fatalf("status at leader: %v %+v", err, st)
		}
		if st, err := c.Status(ctx, false, client.ToAddress(followers[1].Addr)); err != nil || st.NodeID != followers[1].ID() {
			t.Fatalf("pinned status: %v %+v", err, st)
		}
		if ok, err := c.Health(ctx); err != nil || !ok {
			t.Fatalf("health: %v %v", ok, err)
		}
	})
}

// TestRetryAcrossLeaderFailureIsIdempotent kills the leader and retries an append with the same
// ids through the client: the client finds the new leader by itself, the retry is recognised,
// nothing is written twice, and new appends go on.
func TestRetryAcrossLeaderFailureIsIdempotent(t *testing.T) {
	tc, leader := mustNewCluster(t, 3)
	c := newTestClient(t, tc.Addrs(), client.WithBackoff(20*time.Millisecond, 200*time.Millisecond), client.WithMaxAttempts(100))
	ctx := ctxTimeout(t, 30*time.Second)
	if _, err := c.Status(ctx, false); err != nil { // learn the leader, so the next append goes to it
		t.Fatal(err)
	}
	if c.Leader() != leader.Addr {
		t.Fatalf("leader %q, want %q", c.Leader(), leader.Addr)
	}
	events := []client.EventData{{ID: client.NewEventID(), Type: "T"}, {ID: client.NewEventID(), Type: "T"}}
	first, err := c.Append(ctx, "failover-1", client.NoStream(), events)
	if err != nil {
		t.Fatal(err)
	}
	leader.Kill()
	// The same append again, as a caller would after an unknown outcome: the client's first
	// attempt goes to the dead leader, then it finds its way to the new one.
	again, err := c.Append(ctx, "failover-1", client.NoStream(), events)
	if err != nil {
		t.Fatalf("retry after leader kill: %v", err)
	}
	if !again.Idempotent || again.LogIndex != first.LogIndex || again.FirstPosition != first.FirstPosition || again.LastRevision != 1 {
		t.Fatalf("retry %+v, original %+v", again, first)
	}
	next, err := c.Append(ctx, "failover-1", client.Exact(1), oneEvent())
	if err != nil || next.FirstRevision != 2 {
		t.Fatalf("append after failover: %v %+v", err, next)
	}
	newLeader := tc.WaitLeader(t)
	if newLeader == leader {
		t.Fatal("killed leader still leads")
	}
	for _, n := range tc.Live() {
		rd, err := c.Read(ctx, "failover-1", client.ReadOptions{Consistency: client.Stale}, client.ToAddress(n.Addr))
		if err != nil {
			t.Fatal(err)
		}
		if len(rd.Events) != 4 || rd.Events[0].ID != events[0].ID || rd.Events[1].ID != events[1].ID {
			t.Fatalf("node %s holds %d events, want 4 with the retried ones once", n.ID(), len(rd.Events))
		}
	}
}
