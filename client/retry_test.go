package client_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/client"
)

// scriptedServer is an Events server whose answers a test scripts. It records every request.
type scriptedServer struct {
	cairnpb.UnimplementedEventsServer
	addr string

	mu      sync.Mutex
	appends []*cairnpb.AppendRequest
	reads   []*cairnpb.ReadRequest
	// onAppend answers the n-th append (0-based); nil answers success at log index 7.
	onAppend func(n int, req *cairnpb.AppendRequest) (*cairnpb.AppendResponse, error)
	onRead   func(n int, req *cairnpb.ReadRequest) (*cairnpb.ReadResponse, error)
}

func (s *scriptedServer) Append(_ context.Context, req *cairnpb.AppendRequest) (*cairnpb.AppendResponse, error) {
	s.mu.Lock()
	n := len(s.appends)
	s.appends = append(s.appends, req)
	f := s.onAppend
	s.mu.Unlock()
	if f == nil {
		return &cairnpb.AppendResponse{LogIndex: 7, LastRevision: uint64(len(req.GetEvents()) - 1)}, nil
	}
	return f(n, req)
}

func (s *scriptedServer) Read(_ context.Context, req *cairnpb.ReadRequest) (*cairnpb.ReadResponse, error) {
	s.mu.Lock()
	n := len(s.reads)
	s.reads = append(s.reads, req)
	f := s.onRead
	s.mu.Unlock()
	if f == nil {
		return &cairnpb.ReadResponse{ServedBy: &cairnpb.ServedBy{NodeId: "fake"}, EndOfStream: true}, nil
	}
	return f(n, req)
}

func (s *scriptedServer) appendRequests() []*cairnpb.AppendRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*cairnpb.AppendRequest(nil), s.appends...)
}

func (s *scriptedServer) readRequests() []*cairnpb.ReadRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*cairnpb.ReadRequest(nil), s.reads...)
}

func startScripted(t *testing.T) *scriptedServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedServer{addr: lis.Addr().String()}
	srv := grpc.NewServer()
	cairnpb.RegisterEventsServer(srv, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return s
}

// cairnStatus builds a status as a Cairn node would: ErrorInfo with the reason, then details.
func cairnStatus(code codes.Code, reason string, meta map[string]string, details ...protoadapt.MessageV1) error {
	all := append([]protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: "cairn.dev", Metadata: meta}}, details...)
	st, err := status.New(code, "scripted "+reason).WithDetails(all...)
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func newTestClient(t *testing.T, addrs []string, opts ...client.Option) *client.Client {
	t.Helper()
	opts = append([]client.Option{client.WithBackoff(time.Millisecond, 5*time.Millisecond)}, opts...)
	c, err := client.New(addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func oneEvent() []client.EventData {
	return []client.EventData{{Type: "T", Data: []byte("{}")}, {Type: "T", Data: []byte("{}")}}
}

func TestNewNeedsAnAddressAndDoesNoIO(t *testing.T) {
	if _, err := client.New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	// Nothing listens on this port: New must still succeed, as it does not dial.
	c, err := client.New([]string{"127.0.0.1:1", " ", "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Addrs(); len(got) != 1 {
		t.Fatalf("addresses not cleaned: %q", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(context.Background(), "s", client.Any(), oneEvent()); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func TestOutcomeUnknownIsRetriedWithTheSameIDs(t *testing.T) {
	s := startScripted(t)
	s.onAppend = func(n int, req *cairnpb.AppendRequest) (*cairnpb.AppendResponse, error) {
		if n == 0 {
			return nil, cairnStatus(codes.Unknown, "OUTCOME_UNKNOWN", nil)
		}
		return &cairnpb.AppendResponse{LogIndex: 9, Idempotent: true, LastRevision: 1}, nil
	}
	c := newTestClient(t, []string{s.addr})
	events := []client.EventData{{ID: "0b5f3b4e-8c1a-4d7e-9f00-000000000001", Type: "T"}, {Type: "T"}}
	res, err := c.Append(ctxTimeout(t, 5*time.Second), "s", client.NoStream(), events)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Idempotent || res.LogIndex != 9 || len(res.EventIDs) != 2 || res.EventIDs[0] != events[0].ID {
		t.Fatalf("result %+v", res)
	}
	if events[1].ID != "" {
		t.Fatal("the caller's events were modified")
	}
	reqs := s.appendRequests()
	if len(reqs) != 2 {
		t.Fatalf("%d attempts, want 2", len(reqs))
	}
	for i := range 2 {
		a, b := reqs[0].GetEvents()[i].GetId(), reqs[1].GetEvents()[i].GetId()
		if a == "" || a != b || a != res.EventIDs[i] {
			t.Fatalf("event %d: ids %q then %q, result %q", i, a, b, res.EventIDs[i])
		}
	}
	if got := c.SeenLogIndex(); got != 9 {
		t.Fatalf("token %d, want 9", got)
	}
}

func TestNotLeaderRedirectsToTheNamedLeader(t *testing.T) {
	leader, follower := startScripted(t), startScripted(t)
	follower.onAppend = func(int, *cairnpb.AppendRequest) (*cairnpb.AppendResponse, error) {
		return nil, cairnStatus(codes.Unavailable, "NOT_LEADER", nil, &cairnpb.NotLeader{LeaderId: "n1", LeaderAddress: leader.addr})
	}
	c := newTestClient(t, []string{follower.addr}, client.WithMaxAttempts(2))
	if _, err := c.Append(ctxTimeout(t, 5*time.Second), "s", client.Any(), oneEvent(), client.RequireLeader()); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != leader.addr {
		t.Fatalf("leader %q, want %q", c.Leader(), leader.addr)
	}
	if _, err := c.Append(ctxTimeout(t, 5*time.Second), "s", client.Any(), oneEvent()); err != nil {
		t.Fatal(err)
	}
	if f, l := len(follower.appendRequests()), len(leader.appendRequests()); f != 1 || l != 2 {
		t.Fatalf("follower got %d appends (want 1), leader %d (want 2)", f, l)
	}
	if !follower.appendRequests()[0].GetRequireLeader() {
		t.Fatal("require_leader not sent")
	}
	// Pinned to the follower, the client does not follow the redirect: the caller gets it.
	_, err := c.Append(ctxTimeout(t, 5*time.Second), "s", client.Any(), oneEvent(), client.ToAddress(follower.addr))
	var nl *client.NotLeaderError
	if !errors.Is(err, client.ErrNotLeader) || !errors.Is(err, client.ErrUnavailable) || !errors.As(err, &nl) || nl.LeaderAddr != leader.addr {
		t.Fatalf("pinned append: %v", err)
	}
}

func TestDefinitiveAnswersAreNotRetried(t *testing.T) {
	s := startScripted(t)
	s.onAppend = func(n int, req *cairnpb.AppendRequest) (*cairnpb.AppendResponse, error) {
		switch n {
		case 0:
			return nil, cairnStatus(codes.Aborted, "WRONG_EXPECTED_REVISION", nil, &cairnpb.WrongExpectedRevision{
				Violations: []*cairnpb.StreamViolation{{Stream: "s", Expected: req.GetExpected(), ActualRevision: 3, StreamExists: true}}})
		case 1:
			return nil, cairnStatus(codes.InvalidArgument, "INVALID_ARGUMENT", nil, &errdetails.BadRequest{
				FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "events[0].type", Reason: "REQUIRED", Description: "event type is required"}}})
		default:
			return nil, cairnStatus(codes.Aborted, "EVENT_ID_CONFLICT", nil, &cairnpb.EventIdConflict{Stream: "s", EventId: "x", Reason: "partial overlap"})
		}
	}
	c := newTestClient(t, []string{s.addr})
	ctx := ctxTimeout(t, 5*time.Second)
	_, err := c.Append(ctx, "s", client.Exact(1), oneEvent())
	var w *client.WrongExpectedRevisionError
	if !errors.Is(err, client.ErrWrongExpectedRevision) || errors.Is(err, client.ErrStreamTombstoned) || !errors.As(err, &w) ||
		w.Violations[0].ActualRevision != 3 || w.Violations[0].Expected != client.Exact(1) {
		t.Fatalf("wrong expected revision: %v", err)
	}
	if status.Code(err) != codes.Aborted {
		t.Fatalf("status.Code = %v", status.Code(err))
	}
	_, err = c.Append(ctx, "s", client.Any(), oneEvent())
	var ia *client.InvalidArgumentError
	if !errors.Is(err, client.ErrInvalidArgument) || !errors.As(err, &ia) || ia.Field != "events[0].type" || ia.Reason != "REQUIRED" {
		t.Fatalf("invalid argument: %v", err)
	}
	_, err = c.Append(ctx, "s", client.Any(), oneEvent())
	var conflict *client.EventIDConflictError
	if !errors.Is(err, client.ErrEventIDConflict) || errors.Is(err, client.ErrWrongExpectedRevision) || !errors.As(err, &conflict) || conflict.EventID != "x" {
		t.Fatalf("conflict: %v", err)
	}
	if n := len(s.appendRequests()); n != 3 {
		t.Fatalf("%d attempts for 3 definitive answers", n)
	}
}

func TestLostAnswersEndInOutcomeUnknown(t *testing.T) {
	s := startScripted(t)
	s.onAppend = func(int, *cairnpb.AppendRequest) (*cairnpb.AppendResponse, error) {
		// UNAVAILABLE without a Cairn reason is what a broken connection looks like.
		return nil, status.Error(codes.Unavailable, "connection reset")
	}
	c := newTestClient(t, []string{s.addr}, client.WithMaxAttempts(3))
	_, err := c.Append(ctxTimeout(t, 5*time.Second), "s", client.Any(), oneEvent())
	var ou *client.OutcomeUnknownError
	if !errors.Is(err, client.ErrOutcomeUnknown) || !errors.Is(err, client.ErrUnavailable) || !errors.As(err, &ou) ||
		ou.Attempts != 3 || len(ou.EventIDs) != 2 {
		t.Fatalf("append: %v", err)
	}
	reqs := s.appendRequests()
	if len(reqs) != 3 || reqs[2].GetEvents()[0].GetId() != ou.EventIDs[0] {
		t.Fatalf("%d attempts; ids not kept", len(reqs))
	}
	// A read that meets the same failure is just unavailable.
	s.onRead = func(int, *cairnpb.ReadRequest) (*cairnpb.ReadResponse, error) {
		return nil, status.Error(codes.Unavailable, "connection reset")
	}
	_, err = c.Read(ctxTimeout(t, 5*time.Second), "s", client.ReadOptions{})
	if !errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("read: %v", err)
	}
}

func TestRetriesStopAtTheDeadline(t *testing.T) {
	s := startScripted(t)
	s.onAppend = func(int, *cairnpb.AppendRequest) (*cairnpb.AppendResponse, error) {
		return nil, cairnStatus(codes.Unavailable, "NO_LEADER", nil)
	}
	c, err := client.New([]string{s.addr}, client.WithMaxAttempts(1_000_000), client.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Append(ctxTimeout(t, 300*time.Millisecond), "s", client.Any(), oneEvent())
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("gave up after %v", el)
	}
	// Every answer said no leader, so nothing was written; only an attempt that itself ran into
	// the deadline (possible on a slow machine) would leave the outcome unknown.
	if !errors.Is(err, context.DeadlineExceeded) || !(errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrOutcomeUnknown)) {
		t.Fatalf("append: %v", err)
	}
	if n := len(s.appendRequests()); n < 2 {
		t.Fatalf("only %d attempts before the deadline", n)
	}
}

func TestStaleReadsCarryTheReadYourWritesToken(t *testing.T) {
	s := startScripted(t)
	s.onRead = func(n int, req *cairnpb.ReadRequest) (*cairnpb.ReadResponse, error) {
		return &cairnpb.ReadResponse{ServedBy: &cairnpb.ServedBy{NodeId: "f", AppliedIndex: 5}}, nil
	}
	c := newTestClient(t, []string{s.addr})
	ctx := ctxTimeout(t, 5*time.Second)
	if _, err := c.Append(ctx, "s", client.Any(), oneEvent()); err != nil { // log index 7
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, "s", client.ReadOptions{Consistency: client.Stale}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, "s", client.ReadOptions{Consistency: client.Stale, MinLogIndex: 11}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, "s", client.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	off := newTestClient(t, []string{s.addr}, client.WithReadYourWrites(false))
	if _, err := off.Append(ctx, "s", client.Any(), oneEvent()); err != nil {
		t.Fatal(err)
	}
	if _, err := off.Read(ctx, "s", client.ReadOptions{Consistency: client.Stale}); err != nil {
		t.Fatal(err)
	}
	reqs := s.readRequests()
	want := []uint64{7, 11, 0, 0}
	for i, r := range reqs {
		if got := r.GetOptions().GetMinLogIndex(); got != want[i] {
			t.Errorf("read %d: min_log_index %d, want %d", i, got, want[i])
		}
	}
	if got := reqs[2].GetOptions().GetConsistency(); got != cairnpb.Consistency_CONSISTENCY_LINEARIZABLE {
		t.Errorf("default consistency %v", got)
	}
	// A read served at a higher applied index raises the token (monotonic reads).
	s.onRead = func(int, *cairnpb.ReadRequest) (*cairnpb.ReadResponse, error) {
		return &cairnpb.ReadResponse{ServedBy: &cairnpb.ServedBy{NodeId: "f", AppliedIndex: 40}}, nil
	}
	if _, err := c.Read(ctx, "s", client.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := c.SeenLogIndex(); got != 40 {
		t.Fatalf("token %d, want 40", got)
	}
	if _, err := c.Read(ctx, "s", client.ReadOptions{Limit: -1}); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("negative limit: %v", err)
	}
}

func TestExpectedForms(t *testing.T) {
	for _, tc := range []struct {
		e    client.Expected
		want string
	}{
		{client.Expected{}, "any"}, {client.Any(), "any"}, {client.NoStream(), "no-stream"},
		{client.StreamExists(), "exists"}, {client.Exact(0), "0"}, {client.Exact(42), "42"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("%#v: %q, want %q", tc.e, got, tc.want)
		}
	}
	if r, ok := client.Exact(3).Revision(); !ok || r != 3 {
		t.Error("Exact(3).Revision()")
	}
	if _, ok := client.Any().Revision(); ok {
		t.Error("Any().Revision() ok")
	}
	if id := client.NewEventID(); len(id) != 36 || id[14] != '4' {
		t.Errorf("NewEventID %q is not a v4 UUID", id)
	}
}
