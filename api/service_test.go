package api

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
)

func TestAppendReadRoundTrip(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	ctx := ctxT(t)
	before := time.Now()
	e0, e1 := evt(1, "Created", "a", "b"), evt(2, "Renamed")
	e1.Id = strings.ToUpper(e1.Id) // upper-case hex is accepted and stored canonically
	resp, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "order-1",
		Expected: &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_NO_STREAM},
		Events:   []*cairnpb.EventData{e0, e1}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetFirstRevision() != 0 || resp.GetLastRevision() != 1 || resp.GetFirstPosition() != 1 ||
		resp.GetLastPosition() != 2 || resp.GetLogIndex() == 0 || resp.GetIdempotent() {
		t.Fatalf("append response %v", resp)
	}
	if ct := resp.GetCommitTime().AsTime(); ct.Before(before.Add(-time.Second)) || ct.After(time.Now().Add(time.Second)) {
		t.Fatalf("commit time %v not around now", ct)
	}

	rr, err := ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "order-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rr.GetEvents()) != 2 || !rr.GetEndOfStream() {
		t.Fatalf("read %d events, end %v", len(rr.GetEvents()), rr.GetEndOfStream())
	}
	got := rr.GetEvents()[0]
	if got.GetId() != e0.GetId() || got.GetStream() != "order-1" || got.GetType() != "Created" ||
		got.GetContentType() != "application/json" || !bytes.Equal(got.GetData(), e0.GetData()) ||
		!bytes.Equal(got.GetMetadata(), e0.GetMetadata()) || !slices.Equal(got.GetTags(), []string{"a", "b"}) ||
		got.GetRevision() != 0 || got.GetPosition() != 1 || got.GetLogIndex() != resp.GetLogIndex() ||
		!got.GetCommitTime().AsTime().Equal(resp.GetCommitTime().AsTime()) {
		t.Fatalf("read event %v", got)
	}
	if id := rr.GetEvents()[1].GetId(); id != strings.ToLower(e1.GetId()) {
		t.Fatalf("id %s, want canonical lower case", id)
	}
	sb := rr.GetServedBy()
	if sb.GetNodeId() != "n1" || !sb.GetLeader() || sb.GetAppliedIndex() != resp.GetLogIndex() {
		t.Fatalf("served by %v", sb)
	}

	// Events without an id get a server-made v4 UUID.
	r2, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "order-1", Expected: exactRev(1),
		Events: []*cairnpb.EventData{{Type: "Shipped"}}})
	if err != nil {
		t.Fatal(err)
	}
	rr, err = ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "order-1", FromRevision: r2.GetFirstRevision()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := parseUUID(rr.GetEvents()[0].GetId())
	if err != nil || id[6]>>4 != 4 || id[8]>>6 != 2 {
		t.Fatalf("server-made id %q is not a v4 UUID (%v)", rr.GetEvents()[0].GetId(), err)
	}
}

func TestIdempotentRetry(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	ctx := ctxT(t)
	mustAppend(t, ts.events, "other", evt(100, "X"))
	req := &cairnpb.AppendRequest{Stream: "s", Expected: &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_NO_STREAM},
		Events: []*cairnpb.EventData{evt(1, "A"), evt(2, "B")}}
	first, err := ts.events.Append(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, ts.events, "other", evt(101, "X")) // move the log on
	retry, err := ts.events.Append(ctx, req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !retry.GetIdempotent() || retry.GetFirstPosition() != first.GetFirstPosition() ||
		retry.GetLastPosition() != first.GetLastPosition() || retry.GetFirstRevision() != first.GetFirstRevision() ||
		retry.GetLastRevision() != first.GetLastRevision() || retry.GetLogIndex() != first.GetLogIndex() ||
		!retry.GetCommitTime().AsTime().Equal(first.GetCommitTime().AsTime()) {
		t.Fatalf("retry %v, first %v", retry, first)
	}

	// A partial overlap is a conflict.
	_, err = ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(2, "B"), evt(3, "C")}})
	st := wantStatus(t, err, codes.Aborted, ReasonEventIDConflict)
	d := detailOf[*cairnpb.EventIdConflict](t, st)
	if d.GetStream() != "s" || d.GetEventId() != uuidN(2) || d.GetReason() == "" {
		t.Fatalf("conflict detail %v", d)
	}

	// AppendMulti retries are idempotent too.
	mreq := &cairnpb.AppendMultiRequest{Appends: []*cairnpb.StreamAppend{
		{Stream: "m1", Events: []*cairnpb.EventData{evt(10, "A")}},
		{Stream: "m2", Events: []*cairnpb.EventData{evt(11, "A")}},
	}}
	m1, err := ts.events.AppendMulti(ctx, mreq)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := ts.events.AppendMulti(ctx, mreq)
	if err != nil {
		t.Fatal(err)
	}
	if !m2.GetIdempotent() || m2.GetLogIndex() != m1.GetLogIndex() ||
		m2.GetResults()[1].GetFirstPosition() != m1.GetResults()[1].GetFirstPosition() {
		t.Fatalf("multi retry %v, first %v", m2, m1)
	}
}

func TestAppendMulti(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	ctx := ctxT(t)
	mustAppend(t, ts.events, "a", evt(1, "X"), evt(2, "X"))
	resp, err := ts.events.AppendMulti(ctx, &cairnpb.AppendMultiRequest{Appends: []*cairnpb.StreamAppend{
		{Stream: "b", Expected: &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_NO_STREAM},
			Events: []*cairnpb.EventData{evt(3, "Y"), evt(4, "Y")}},
		{Stream: "a", Expected: exactRev(1)}, // check-only
		{Stream: "c", Events: []*cairnpb.EventData{evt(5, "Z")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []*cairnpb.StreamAppendResult{
		{Stream: "b", Count: 2, FirstRevision: 0, LastRevision: 1, FirstPosition: 3, LastPosition: 4},
		{Stream: "a", Count: 0, FirstRevision: 1, LastRevision: 1},
		{Stream: "c", Count: 1, FirstRevision: 0, LastRevision: 0, FirstPosition: 5, LastPosition: 5},
	}
	for i, w := range want {
		g := resp.GetResults()[i]
		if g.GetStream() != w.Stream || g.GetCount() != w.Count || g.GetFirstRevision() != w.FirstRevision ||
			g.GetLastRevision() != w.LastRevision || g.GetFirstPosition() != w.FirstPosition || g.GetLastPosition() != w.LastPosition {
			t.Fatalf("result %d: %v, want %v", i, g, w)
		}
	}

	// Every violated condition is reported at once, and nothing is written.
	_, err = ts.events.AppendMulti(ctx, &cairnpb.AppendMultiRequest{Appends: []*cairnpb.StreamAppend{
		{Stream: "a", Expected: exactRev(0), Events: []*cairnpb.EventData{evt(6, "X")}},
		{Stream: "b", Expected: exactRev(1)},
		{Stream: "new", Expected: &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_STREAM_EXISTS}},
	}})
	st := wantStatus(t, err, codes.Aborted, ReasonWrongExpectedRevision)
	v := detailOf[*cairnpb.WrongExpectedRevision](t, st).GetViolations()
	if len(v) != 2 || v[0].GetStream() != "a" || v[0].GetActualRevision() != 1 || !v[0].GetStreamExists() ||
		v[0].GetExpected().GetKind() != cairnpb.ExpectedRevision_KIND_EXACT || v[0].GetExpected().GetRevision() != 0 ||
		v[1].GetStream() != "new" || v[1].GetStreamExists() {
		t.Fatalf("violations %v", v)
	}
	if r, _ := ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "a"}); len(r.GetEvents()) != 2 {
		t.Fatalf("failed AppendMulti wrote events: %v", r.GetEvents())
	}
}

// TestErrorRows covers each DESIGN §6 row the api produces from the state machine and the
// cluster layer, over gRPC.
func TestErrorRows(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node)
	ctx := ctxT(t)
	mustAppend(t, ts.events, "s", evt(1, "A"), evt(2, "A"))

	t.Run("wrong expected revision", func(t *testing.T) {
		_, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Expected: exactRev(0),
			Events: []*cairnpb.EventData{evt(3, "A")}})
		st := wantStatus(t, err, codes.Aborted, ReasonWrongExpectedRevision)
		v := detailOf[*cairnpb.WrongExpectedRevision](t, st).GetViolations()
		if len(v) != 1 || v[0].GetStream() != "s" || v[0].GetActualRevision() != 1 || !v[0].GetStreamExists() || v[0].GetTombstoned() {
			t.Fatalf("violations %v", v)
		}
		_, err = ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "none", Expected: exactRev(3),
			Events: []*cairnpb.EventData{evt(4, "A")}})
		st = wantStatus(t, err, codes.Aborted, ReasonWrongExpectedRevision)
		if v := detailOf[*cairnpb.WrongExpectedRevision](t, st).GetViolations(); v[0].GetStreamExists() {
			t.Fatalf("no stream reported as existing: %v", v)
		}
	})

	t.Run("tombstoned", func(t *testing.T) {
		mustAppend(t, ts.events, "dead", evt(20, "A"))
		node.tombstone(t, "dead")
		_, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "dead", Events: []*cairnpb.EventData{evt(21, "A")}})
		st := wantStatus(t, err, codes.FailedPrecondition, ReasonStreamTombstoned)
		v := detailOf[*cairnpb.WrongExpectedRevision](t, st).GetViolations()
		if len(v) != 1 || v[0].GetStream() != "dead" || !v[0].GetTombstoned() {
			t.Fatalf("violations %v", v)
		}
		_, err = ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "dead"})
		st = wantStatus(t, err, codes.FailedPrecondition, ReasonStreamTombstoned)
		if ri := detailOf[*errdetails.ResourceInfo](t, st); ri.GetResourceName() != "dead" || ri.GetResourceType() != "stream" {
			t.Fatalf("resource info %v", ri)
		}
		// A tombstoned stream next to a wrong revision: ABORTED, both listed.
		_, err = ts.events.AppendMulti(ctx, &cairnpb.AppendMultiRequest{Appends: []*cairnpb.StreamAppend{
			{Stream: "dead", Events: []*cairnpb.EventData{evt(22, "A")}},
			{Stream: "s", Expected: exactRev(7)},
		}})
		st = wantStatus(t, err, codes.Aborted, ReasonWrongExpectedRevision)
		if v := detailOf[*cairnpb.WrongExpectedRevision](t, st).GetViolations(); len(v) != 2 || !v[0].GetTombstoned() {
			t.Fatalf("violations %v", v)
		}
	})

	t.Run("not found", func(t *testing.T) {
		_, err := ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "missing"})
		st := wantStatus(t, err, codes.NotFound, ReasonStreamNotFound)
		if ri := detailOf[*errdetails.ResourceInfo](t, st); ri.GetResourceName() != "missing" {
			t.Fatalf("resource info %v", ri)
		}
	})

	clusterErr := func(t *testing.T, err error, code codes.Code, reason string) {
		t.Helper()
		node.setProposeErr(err)
		defer node.setProposeErr(nil)
		_, got := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(30, "A")}})
		wantStatus(t, got, code, reason)
	}
	t.Run("no leader", func(t *testing.T) {
		clusterErr(t, fmt.Errorf("propose: %w", cluster.ErrNoLeader), codes.Unavailable, ReasonNoLeader)
		clusterErr(t, &cluster.NotLeaderError{}, codes.Unavailable, ReasonNoLeader)
	})
	t.Run("outcome unknown", func(t *testing.T) {
		node.setProposeErr(fmt.Errorf("leadership lost: %w", cluster.ErrOutcomeUnknown))
		defer node.setProposeErr(nil)
		_, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(30, "A")}})
		st := wantStatus(t, err, codes.Unknown, ReasonOutcomeUnknown)
		if !strings.Contains(st.Message(), "same event ids is safe") {
			t.Fatalf("message %q does not say retrying is safe", st.Message())
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		clusterErr(t, cluster.ErrShutdown, codes.Unavailable, ReasonShuttingDown)
	})
	t.Run("deadline", func(t *testing.T) {
		clusterErr(t, fmt.Errorf("propose: %w", context.DeadlineExceeded), codes.DeadlineExceeded, ReasonDeadlineExceeded)
	})
	t.Run("internal", func(t *testing.T) {
		clusterErr(t, fmt.Errorf("disk on fire"), codes.Internal, ReasonInternal)
	})

	t.Run("staleness", func(t *testing.T) {
		node.setFenceErr(&cluster.StalenessError{Err: cluster.ErrNotCaughtUp, NodeID: "n1", AppliedIndex: 3,
			RequiredIndex: 9, LastContact: time.Second})
		defer node.setFenceErr(nil)
		_, err := ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s", Options: &cairnpb.ReadOptions{
			Consistency: cairnpb.Consistency_CONSISTENCY_STALE, MinLogIndex: 9}})
		st := wantStatus(t, err, codes.Unavailable, ReasonNotCaughtUp)
		d := detailOf[*cairnpb.NotCaughtUp](t, st)
		if d.GetNodeId() != "n1" || d.GetAppliedIndex() != 3 || d.GetRequiredIndex() != 9 || d.GetLastContact().AsDuration() != time.Second {
			t.Fatalf("detail %v", d)
		}
		node.setFenceErr(&cluster.StalenessError{Err: cluster.ErrTooStale, MaxStaleness: time.Millisecond})
		_, err = ts.events.ReadAll(ctx, &cairnpb.ReadAllRequest{})
		wantStatus(t, err, codes.Unavailable, ReasonTooStale)
	})

	t.Run("stats", func(t *testing.T) {
		s := ts.svc.Stats()
		for _, r := range []string{ReasonWrongExpectedRevision, ReasonStreamTombstoned, ReasonStreamNotFound,
			ReasonNoLeader, ReasonOutcomeUnknown, ReasonInternal, ReasonNotCaughtUp, ReasonTooStale} {
			if s.Errors[r] == 0 {
				t.Errorf("no %s counted: %v", r, s.Errors)
			}
		}
	})
}

func TestNotLeaderRequireLeader(t *testing.T) {
	node := newFakeNode(t, "n2")
	node.setFollower("n1", "10.0.0.1:7000") // never dialled: require_leader refuses forwarding
	ts := mustNewServer(t, node)
	_, err := ts.events.Append(ctxT(t), &cairnpb.AppendRequest{Stream: "s", RequireLeader: true,
		Events: []*cairnpb.EventData{evt(1, "A")}})
	st := wantStatus(t, err, codes.Unavailable, ReasonNotLeader)
	d := detailOf[*cairnpb.NotLeader](t, st)
	if d.GetLeaderId() != "n1" || d.GetLeaderAddress() != "10.0.0.1:7000" {
		t.Fatalf("detail %v", d)
	}
	_, err = ts.events.AppendMulti(ctxT(t), &cairnpb.AppendMultiRequest{RequireLeader: true,
		Appends: []*cairnpb.StreamAppend{{Stream: "s", Events: []*cairnpb.EventData{evt(1, "A")}}}})
	wantStatus(t, err, codes.Unavailable, ReasonNotLeader)
	if s := ts.svc.Stats(); s.Forwarded != 0 {
		t.Fatalf("forwarded %d requests despite require_leader", s.Forwarded)
	}
}

func TestReadPaging(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"), func(c *Config) {
		c.DefaultReadLimit, c.MaxReadLimit = 2, 3
	})
	ctx := ctxT(t)
	mustAppend(t, ts.events, "s", evt(1, "A"), evt(2, "A"), evt(3, "A"), evt(4, "A"), evt(5, "A"))
	bwd := cairnpb.Direction_DIRECTION_BACKWARD
	for _, c := range []struct {
		name string
		req  *cairnpb.ReadRequest
		revs []uint64
		end  bool
	}{
		{"default limit", &cairnpb.ReadRequest{}, []uint64{0, 1}, false},
		{"clamped limit", &cairnpb.ReadRequest{Limit: 1000}, []uint64{0, 1, 2}, false},
		{"to the end", &cairnpb.ReadRequest{FromRevision: 3, Limit: 3}, []uint64{3, 4}, true},
		{"exactly to the end", &cairnpb.ReadRequest{FromRevision: 2, Limit: 3}, []uint64{2, 3, 4}, true},
		{"beyond the end", &cairnpb.ReadRequest{FromRevision: 9}, []uint64{}, true},
		{"forward from end", &cairnpb.ReadRequest{FromEnd: true, FromRevision: 1}, []uint64{4}, true},
		{"backward from end", &cairnpb.ReadRequest{FromEnd: true, Direction: bwd}, []uint64{4, 3}, false},
		{"backward to the start", &cairnpb.ReadRequest{FromRevision: 1, Direction: bwd, Limit: 3}, []uint64{1, 0}, true},
		{"backward beyond the end", &cairnpb.ReadRequest{FromRevision: 99, Direction: bwd, Limit: 1}, []uint64{4}, false},
	} {
		c.req.Stream = "s"
		r, err := ts.events.Read(ctx, c.req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := revisions(r.GetEvents()); !slices.Equal(got, c.revs) || r.GetEndOfStream() != c.end {
			t.Errorf("%s: revisions %v end %v, want %v end %v", c.name, got, r.GetEndOfStream(), c.revs, c.end)
		}
	}
}

func TestReadResponseBudget(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"), func(c *Config) { c.MaxResponseBytes = 1 })
	ctx := ctxT(t)
	mustAppend(t, ts.events, "s", evt(1, "A"), evt(2, "A"), evt(3, "A"))
	var got []uint64
	from := uint64(0)
	for range 4 {
		r, err := ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s", FromRevision: from})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.GetEvents()) != 1 {
			t.Fatalf("got %d events, want 1 per response under a tiny byte budget", len(r.GetEvents()))
		}
		got = append(got, r.GetEvents()[0].GetRevision())
		if r.GetEndOfStream() {
			break
		}
		from = r.GetEvents()[0].GetRevision() + 1
	}
	if !slices.Equal(got, []uint64{0, 1, 2}) {
		t.Fatalf("paged revisions %v", got)
	}
}

func TestReadOptionsMapping(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node)
	ctx := ctxT(t)
	mustAppend(t, ts.events, "s", evt(1, "A"))
	for _, c := range []struct {
		opts *cairnpb.ReadOptions
		want cluster.ReadOptions
	}{
		{nil, cluster.ReadOptions{Consistency: cluster.Linearizable}},
		{&cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_LINEARIZABLE, MinLogIndex: 4},
			cluster.ReadOptions{Consistency: cluster.Linearizable}},
		{&cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_LEADER}, cluster.ReadOptions{Consistency: cluster.Leader}},
		{&cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_STALE, MinLogIndex: 1,
			MaxStaleness: durationpb.New(2 * time.Second)},
			cluster.ReadOptions{Consistency: cluster.Stale, MinLogIndex: 1, MaxStaleness: 2 * time.Second}},
	} {
		if _, err := ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s", Options: c.opts}); err != nil {
			t.Fatal(err)
		}
		if got := node.fence(); got != c.want {
			t.Errorf("options %v: fence got %+v, want %+v", c.opts, got, c.want)
		}
	}
}

func TestClusterStatus(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	resp, err := ts.cluster.Status(ctxT(t), &cairnpb.StatusRequest{WithMemberLag: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetNodeId() != "n1" || resp.GetLeaderAddress() != ts.addr || len(resp.GetMembers()) != 1 {
		t.Fatalf("status %v", resp)
	}
}

func TestHealthAndReflection(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	ctx := ctxT(t)
	hc := healthpb.NewHealthClient(ts.conn)
	check := func(service string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health check %q: %v", service, err)
		}
		if r.GetStatus() != want {
			t.Fatalf("health %q: %v, want %v", service, r.GetStatus(), want)
		}
	}
	check("", healthpb.HealthCheckResponse_SERVING)
	check("cairn.v1.Events", healthpb.HealthCheckResponse_SERVING)
	check("cairn.v1.Cluster", healthpb.HealthCheckResponse_SERVING)
	ts.svc.SetServing(false)
	check("", healthpb.HealthCheckResponse_NOT_SERVING)
	ts.svc.SetServing(true)
	check("cairn.v1.Events", healthpb.HealthCheckResponse_SERVING)

	stream, err := reflectionpb.NewServerReflectionClient(ts.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"cairn.v1.Events", "cairn.v1.Cluster", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	// The file descriptor of the Events service resolves, so grpcurl can describe it.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "cairn.v1.Events"}}); err != nil {
		t.Fatal(err)
	}
	if resp, err = stream.Recv(); err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("file containing cairn.v1.Events: %v %v", resp, err)
	}
	_ = stream.CloseSend()

	if err := ts.svc.Close(); err != nil {
		t.Fatal(err)
	}
	check("", healthpb.HealthCheckResponse_NOT_SERVING)
}
