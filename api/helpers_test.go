package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// fakeNode is a Node over a real fsm.FSM: Propose encodes the request as a raft command entry
// and applies it directly, as a single-node cluster would after commit. It can play a follower
// (Propose and non-stale ReadFence return *cluster.NotLeaderError) and can be told to fail.
type fakeNode struct {
	clock func() time.Time // nil: time.Now
	id    string
	fsm   *fsm.FSM

	mu         sync.Mutex
	addr       string // own gRPC address, reported by Leader when leader
	next       uint64 // raft index of the next entry
	follower   bool
	leaderID   string
	leaderAddr string
	proposeErr error
	fenceErr   error
	proposals  int
	lastFence  cluster.ReadOptions
}

var _ Node = (*fakeNode)(nil)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newFakeNode(t testing.TB, id string) *fakeNode {
	t.Helper()
	f, err := fsm.Open(fsm.Config{Dir: t.TempDir(), Logger: discardLogger()})
	if err != nil {
		t.Fatalf("open fsm: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &fakeNode{id: id, fsm: f, next: f.AppliedIndex() + 1}
}

func (n *fakeNode) ID() string { return n.id }

// now is the fake leader's clock: time.Now unless a test fixed it.
func (n *fakeNode) now() time.Time {
	if n.clock != nil {
		return n.clock()
	}
	return time.Now()
}

func (n *fakeNode) Propose(ctx context.Context, req *fsmpb.Request) (fsm.Result, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.proposals++
	if err := ctx.Err(); err != nil {
		return fsm.Result{}, err
	}
	if n.proposeErr != nil {
		return fsm.Result{}, n.proposeErr
	}
	if n.follower {
		return fsm.Result{}, &cluster.NotLeaderError{LeaderID: n.leaderID, LeaderAddr: n.leaderAddr}
	}
	return n.applyLocked(req)
}

// applyLocked commits req as the next raft entry, with a leader-assigned timestamp.
func (n *fakeNode) applyLocked(req *fsmpb.Request) (fsm.Result, error) {
	b, err := fsm.EncodeCommand(&fsmpb.Command{TimestampUnixNano: n.now().UnixNano(), Requests: []*fsmpb.Request{req}})
	if err != nil {
		return fsm.Result{}, err
	}
	out := n.fsm.Apply(&raft.Log{Index: n.next, Term: 1, Type: raft.LogCommand, Data: b})
	n.next++
	res, ok := out.([]fsm.Result)
	if !ok || len(res) != 1 {
		if err, isErr := out.(error); isErr {
			return fsm.Result{}, err
		}
		return fsm.Result{}, errors.New("fake: unexpected apply result")
	}
	return res[0], nil
}

// apply commits req directly, whatever the node's mode (for requests the API cannot make, such
// as tombstones), and fails the test if the request fails.
func (n *fakeNode) apply(t testing.TB, req *fsmpb.Request) fsm.Result {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	res, err := n.applyLocked(req)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

func (n *fakeNode) tombstone(t testing.TB, stream string) {
	t.Helper()
	n.apply(t, &fsmpb.Request{Kind: &fsmpb.Request_Tombstone{Tombstone: &fsmpb.TombstoneRequest{
		Stream: stream, Expected: &fsmpb.ExpectedRevision{Kind: fsmpb.ExpectedRevision_KIND_ANY}}}})
}

func (n *fakeNode) ReadFence(ctx context.Context, opts cluster.ReadOptions) (cluster.ReadInfo, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lastFence = opts
	if n.fenceErr != nil {
		return cluster.ReadInfo{}, n.fenceErr
	}
	if n.follower && opts.Consistency != cluster.Stale {
		return cluster.ReadInfo{}, &cluster.NotLeaderError{LeaderID: n.leaderID, LeaderAddr: n.leaderAddr}
	}
	info := cluster.ReadInfo{NodeID: n.id, AppliedIndex: n.fsm.AppliedIndex(), Leader: !n.follower}
	if n.follower {
		info.LastContact = 5 * time.Millisecond
	}
	return info, nil
}

func (n *fakeNode) Store() Store { return n.fsm }

func (n *fakeNode) Leader() (string, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.follower {
		return n.leaderID, n.leaderAddr
	}
	return n.id, n.addr
}

func (n *fakeNode) Status(ctx context.Context, withMemberLag bool) (*cairnpb.StatusResponse, error) {
	id, addr := n.Leader()
	n.mu.Lock()
	defer n.mu.Unlock()
	role := "leader"
	if n.follower {
		role = "follower"
	}
	resp := &cairnpb.StatusResponse{NodeId: n.id, Role: role, LeaderId: id, LeaderAddress: addr,
		AppliedIndex: n.fsm.AppliedIndex(), Version: "test"}
	if withMemberLag {
		resp.Members = []*cairnpb.Member{{Id: n.id, Role: role, AppliedIndex: n.fsm.AppliedIndex()}}
	}
	return resp, nil
}

func (n *fakeNode) setFollower(leaderID, leaderAddr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.follower, n.leaderID, n.leaderAddr = true, leaderID, leaderAddr
}

func (n *fakeNode) setProposeErr(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.proposeErr = err
}

func (n *fakeNode) setFenceErr(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fenceErr = err
}

func (n *fakeNode) proposalCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proposals
}

func (n *fakeNode) fence() cluster.ReadOptions {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lastFence
}

// testServer is a Service served over gRPC on a loopback listener, with a client connection.
type testServer struct {
	addr    string
	node    *fakeNode
	svc     *Service
	srv     *grpc.Server
	conn    *grpc.ClientConn
	events  cairnpb.EventsClient
	cluster cairnpb.ClusterClient
}

// mustNewServer serves a new Service over node on 127.0.0.1:0. opts adjust the Config.
func mustNewServer(t testing.TB, node *fakeNode, opts ...func(*Config)) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, lis, node, opts...)
}

// serveOn serves a new Service over node on lis.
func serveOn(t testing.TB, lis net.Listener, node *fakeNode, opts ...func(*Config)) *testServer {
	t.Helper()
	cfg := DefaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	node.mu.Lock()
	node.addr = lis.Addr().String()
	node.mu.Unlock()
	svc := NewService(node, cfg, discardLogger())
	srv := grpc.NewServer(ServerOptions(cfg)...)
	svc.Register(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: lis.Addr().String(), node: node, svc: svc, srv: srv, conn: conn,
		events: cairnpb.NewEventsClient(conn), cluster: cairnpb.NewClusterClient(conn)}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
		_ = svc.Close()
	})
	return ts
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// uuidN returns a deterministic valid UUID text.
func uuidN(n int) string {
	var id [16]byte
	id[0], id[15] = 0xCA, byte(n)
	id[14] = byte(n >> 8)
	return formatUUID(id)
}

func evt(n int, typ string, tags ...string) *cairnpb.EventData {
	return &cairnpb.EventData{Id: uuidN(n), Type: typ, ContentType: "application/json",
		Data: []byte(`{"n":1}`), Metadata: []byte("meta"), Tags: tags}
}

func anyRev() *cairnpb.ExpectedRevision {
	return &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_ANY}
}

func exactRev(r uint64) *cairnpb.ExpectedRevision {
	return &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_EXACT, Revision: r}
}

func mustAppend(t testing.TB, c cairnpb.EventsClient, stream string, events ...*cairnpb.EventData) *cairnpb.AppendResponse {
	t.Helper()
	resp, err := c.Append(ctxT(t), &cairnpb.AppendRequest{Stream: stream, Expected: anyRev(), Events: events})
	if err != nil {
		t.Fatalf("append to %q: %v", stream, err)
	}
	return resp
}

// wantStatus checks err's code and ErrorInfo reason and returns the status.
func wantStatus(t testing.TB, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v %s", code, reason)
	}
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("got code %v (%v), want %v", st.Code(), err, code)
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil {
		t.Fatalf("status %v has no ErrorInfo: %v", st.Code(), st.Details())
	}
	if info.GetReason() != reason || info.GetDomain() != ErrorDomain {
		t.Fatalf("ErrorInfo %s/%s, want %s/%s (%v)", info.GetDomain(), info.GetReason(), ErrorDomain, reason, err)
	}
	return st
}

// detailOf returns st's detail of type T, failing the test if there is none.
func detailOf[T proto.Message](t testing.TB, st *status.Status) T {
	t.Helper()
	for _, d := range st.Details() {
		if v, ok := d.(T); ok {
			return v
		}
	}
	var zero T
	t.Fatalf("status %v (%s) has no %T detail: %v", st.Code(), st.Message(), zero, st.Details())
	return zero
}

// wantField checks that a BadRequest detail names field with reason.
func wantField(t testing.TB, st *status.Status, field, reason string) {
	t.Helper()
	br := detailOf[*errdetails.BadRequest](t, st)
	for _, v := range br.GetFieldViolations() {
		if v.GetField() == field && v.GetReason() == reason {
			return
		}
	}
	t.Fatalf("BadRequest has no violation %s/%s: %v", field, reason, br.GetFieldViolations())
}

func positions(evs []*cairnpb.RecordedEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.GetPosition()
	}
	return out
}

func revisions(evs []*cairnpb.RecordedEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.GetRevision()
	}
	return out
}
