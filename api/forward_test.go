package api

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairndb/cairn/api/cairnpb"
)

// leaderAndFollower serves a leader and a follower whose fake points at the leader.
func leaderAndFollower(t *testing.T, followerOpts ...func(*Config)) (leader, follower *testServer) {
	t.Helper()
	leader = mustNewServer(t, newFakeNode(t, "n1"))
	fn := newFakeNode(t, "n2")
	fn.setFollower("n1", leader.addr)
	follower = mustNewServer(t, fn, followerOpts...)
	return leader, follower
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

func TestForwardAppendAndReads(t *testing.T) {
	leader, follower := leaderAndFollower(t)
	ctx := ctxT(t)

	resp, err := follower.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s",
		Events: []*cairnpb.EventData{evt(1, "A"), {Type: "NoID"}}})
	if err != nil {
		t.Fatalf("forwarded append: %v", err)
	}
	if resp.GetFirstPosition() != 1 || resp.GetLastPosition() != 2 {
		t.Fatalf("forwarded append response %v", resp)
	}
	if follower.node.fsm.LastPosition() != 0 || leader.node.fsm.LastPosition() != 2 {
		t.Fatalf("events landed on the wrong node: follower %d, leader %d",
			follower.node.fsm.LastPosition(), leader.node.fsm.LastPosition())
	}

	mresp, err := follower.events.AppendMulti(ctx, &cairnpb.AppendMultiRequest{Appends: []*cairnpb.StreamAppend{
		{Stream: "t", Events: []*cairnpb.EventData{evt(2, "A")}}}})
	if err != nil || mresp.GetResults()[0].GetFirstPosition() != 3 {
		t.Fatalf("forwarded append multi: %v %v", mresp, err)
	}

	// A linearizable (default) read on the follower is served by the leader.
	r, err := follower.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s"})
	if err != nil {
		t.Fatalf("forwarded read: %v", err)
	}
	if len(r.GetEvents()) != 2 || r.GetServedBy().GetNodeId() != "n1" || !r.GetServedBy().GetLeader() {
		t.Fatalf("forwarded read %v", r)
	}
	if r.GetEvents()[1].GetId() == "" {
		t.Fatal("event without id was stored without one")
	}
	// So is a LEADER read, and a ReadAll.
	ra, err := follower.events.ReadAll(ctx, &cairnpb.ReadAllRequest{Options: &cairnpb.ReadOptions{
		Consistency: cairnpb.Consistency_CONSISTENCY_LEADER}})
	if err != nil || len(ra.GetEvents()) != 3 || ra.GetServedBy().GetNodeId() != "n1" {
		t.Fatalf("forwarded read all: %v %v", ra, err)
	}
	// A STALE read is served locally, where nothing was written.
	_, err = follower.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s", Options: &cairnpb.ReadOptions{
		Consistency: cairnpb.Consistency_CONSISTENCY_STALE}})
	wantStatus(t, err, codes.NotFound, ReasonStreamNotFound)
	ra, err = follower.events.ReadAll(ctx, &cairnpb.ReadAllRequest{Options: &cairnpb.ReadOptions{
		Consistency: cairnpb.Consistency_CONSISTENCY_STALE}})
	if err != nil || len(ra.GetEvents()) != 0 || ra.GetServedBy().GetNodeId() != "n2" || ra.GetServedBy().GetLeader() {
		t.Fatalf("stale read all on the follower: %v %v", ra, err)
	}

	// The leader's errors come back unchanged, details included.
	_, err = follower.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Expected: exactRev(0),
		Events: []*cairnpb.EventData{evt(9, "A")}})
	st := wantStatus(t, err, codes.Aborted, ReasonWrongExpectedRevision)
	if v := detailOf[*cairnpb.WrongExpectedRevision](t, st).GetViolations(); v[0].GetActualRevision() != 1 {
		t.Fatalf("forwarded violation %v", v)
	}
	if s := follower.svc.Stats(); s.Forwarded != 5 || s.ForwardFailures != 0 {
		t.Fatalf("follower stats %+v", s)
	}
}

// TestForwardIdempotentRetry: a forwarded append retried by the client is recognised by the
// leader.
func TestForwardIdempotentRetry(t *testing.T) {
	_, follower := leaderAndFollower(t)
	ctx := ctxT(t)
	req := &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(1, "A")}}
	first, err := follower.events.Append(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := follower.events.Append(ctx, req)
	if err != nil || !again.GetIdempotent() || again.GetFirstPosition() != first.GetFirstPosition() {
		t.Fatalf("retry %v %v", again, err)
	}
}

// TestNoDoubleForwarding: two followers that each believe the other is the leader must not
// bounce a request between them.
func TestNoDoubleForwarding(t *testing.T) {
	na, nb := newFakeNode(t, "a"), newFakeNode(t, "b")
	a, b := mustNewServer(t, na), mustNewServer(t, nb)
	na.setFollower("b", b.addr)
	nb.setFollower("a", a.addr)
	ctx := ctxT(t)

	_, err := a.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(1, "A")}})
	st := wantStatus(t, err, codes.Unavailable, ReasonNotLeader)
	if d := detailOf[*cairnpb.NotLeader](t, st); d.GetLeaderId() != "a" || d.GetLeaderAddress() != a.addr {
		t.Fatalf("not leader detail %v", d)
	}
	_, err = a.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s"})
	wantStatus(t, err, codes.Unavailable, ReasonNotLeader)

	sa, sb := a.svc.Stats(), b.svc.Stats()
	if sa.Forwarded != 2 || sb.Forwarded != 0 || sb.ForwardRefused != 2 || sa.ForwardRefused != 0 {
		t.Fatalf("stats a %+v, b %+v", sa, sb)
	}
}

// TestForwardRedialsDeadConnection: a pooled connection that fails is dropped and the request
// retried once on a fresh one.
func TestForwardRedialsDeadConnection(t *testing.T) {
	leader := mustNewServer(t, newFakeNode(t, "n1"))
	dead := deadAddr(t)
	var dials atomic.Int32
	fn := newFakeNode(t, "n2")
	fn.setFollower("n1", leader.addr)
	follower := mustNewServer(t, fn, func(c *Config) {
		c.Dialer = func(_ context.Context, addr string) (*grpc.ClientConn, error) {
			if dials.Add(1) == 1 {
				addr = dead // the first connection is broken
			}
			return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		}
	})
	if _, err := follower.events.Append(ctxT(t), &cairnpb.AppendRequest{Stream: "s",
		Events: []*cairnpb.EventData{evt(1, "A")}}); err != nil {
		t.Fatalf("append through a redialled connection: %v", err)
	}
	s := follower.svc.Stats()
	if dials.Load() != 2 || s.ForwardRetries != 1 || s.ConnsDropped != 1 || s.ForwardFailures != 0 {
		t.Fatalf("dials %d, stats %+v", dials.Load(), s)
	}
	if leader.node.fsm.LastPosition() != 1 {
		t.Fatal("event not on the leader")
	}
}

// TestForwardAfterLeaderRestart: the leader's gRPC server restarts on the same address; the
// follower's pooled connection to it must not stay broken.
func TestForwardAfterLeaderRestart(t *testing.T) {
	ln := newFakeNode(t, "n1")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	leader := serveOn(t, lis, ln)
	fn := newFakeNode(t, "n2")
	fn.setFollower("n1", leader.addr)
	follower := mustNewServer(t, fn)
	ctx := ctxT(t)
	mustAppend(t, follower.events, "s", evt(1, "A"))

	leader.srv.Stop() // closes the listener and every connection
	lis2, err := net.Listen("tcp", leader.addr)
	if err != nil {
		t.Fatalf("relisten on %s: %v", leader.addr, err)
	}
	serveOn(t, lis2, ln)
	resp, err := follower.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(2, "A")}})
	if err != nil {
		t.Fatalf("append after leader restart: %v", err)
	}
	if resp.GetFirstRevision() != 1 {
		t.Fatalf("response %v", resp)
	}
}

func TestForwardFailure(t *testing.T) {
	fn := newFakeNode(t, "n2")
	fn.setFollower("n1", deadAddr(t))
	follower := mustNewServer(t, fn)
	ctx := ctxT(t)

	// An append that may have been sent has an unknown outcome.
	_, err := follower.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(1, "A")}})
	wantStatus(t, err, codes.Unknown, ReasonOutcomeUnknown)
	// A read is simply unavailable, naming the leader.
	_, err = follower.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s"})
	st := wantStatus(t, err, codes.Unavailable, ReasonForwardFailed)
	if d := detailOf[*cairnpb.NotLeader](t, st); d.GetLeaderId() != "n1" {
		t.Fatalf("detail %v", d)
	}
	s := follower.svc.Stats()
	if s.Forwarded != 2 || s.ForwardRetries != 2 || s.ForwardFailures != 2 {
		t.Fatalf("stats %+v", s)
	}

	// After Close, forwarding is refused.
	if err := follower.svc.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = follower.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s"})
	wantStatus(t, err, codes.Unavailable, ReasonShuttingDown)
}

// TestForwardConcurrent: concurrent clients share the pooled connection to the leader.
func TestForwardConcurrent(t *testing.T) {
	leader, follower := leaderAndFollower(t)
	ctx := ctxT(t)
	const workers, each = 8, 10
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := follower.events.Append(ctx, &cairnpb.AppendRequest{Stream: fmt.Sprintf("s-%d", w),
					Events: []*cairnpb.EventData{evt(1000+w*each+i, "A")}})
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := leader.node.fsm.LastPosition(); got != workers*each {
		t.Fatalf("leader has %d events, want %d", got, workers*each)
	}
	if s := follower.svc.Stats(); s.Forwarded != workers*each || s.ConnsDropped != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// An append whose first forward may have been delivered is not settled by a NOT_LEADER answer to
// the retry: the first attempt may still commit. The client must hear OUTCOME_UNKNOWN.
func TestForwardRetryNotLeaderIsUnknown(t *testing.T) {
	deposed := newFakeNode(t, "n1")
	deposed.setFollower("", "") // answers NOT_LEADER, knows no leader
	other := mustNewServer(t, deposed)
	dead := deadAddr(t)
	var dials atomic.Int32
	fn := newFakeNode(t, "n2")
	fn.setFollower("n1", other.addr)
	follower := mustNewServer(t, fn, func(c *Config) {
		c.Dialer = func(_ context.Context, addr string) (*grpc.ClientConn, error) {
			if dials.Add(1) == 1 {
				addr = dead // the first attempt fails in transport
			}
			return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		}
	})
	_, err := follower.events.Append(ctxT(t), &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(1, "A")}})
	wantStatus(t, err, codes.Unknown, ReasonOutcomeUnknown)
	// Reads are not writes: the same sequence answers with the deposed node's NOT_LEADER.
	dials.Store(0)
	_, err = follower.events.Read(ctxT(t), &cairnpb.ReadRequest{Stream: "s"})
	if reasonOf(statusFromError(err)) == ReasonOutcomeUnknown {
		t.Fatalf("a read reported an unknown outcome: %v", err)
	}
}
