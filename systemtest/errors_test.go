package systemtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/localcluster"
)

// reason returns the ErrorInfo reason of a status, "" if none.
func reason(st *status.Status) string {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.GetReason()
		}
	}
	return ""
}

func detail[T any](st *status.Status) (T, bool) {
	for _, d := range st.Details() {
		if v, ok := d.(T); ok {
			return v, true
		}
	}
	var zero T
	return zero, false
}

func wantCode(t *testing.T, err error, code codes.Code, why string) *status.Status {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || reason(st) != why {
		t.Fatalf("got %v (reason %q), want %v %s", err, reason(st), code, why)
	}
	return st
}

// Acceptance (issue 3, point 7): every row of DESIGN §6 that the server can produce today, by a
// real request against real cairnd processes.
func TestErrorTableEndToEnd(t *testing.T) {
	c := mustStartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var follower *localcluster.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
		}
	}
	ev := follower.Events()
	first, err := ev.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Expected: anyRev(), Events: []*cairnpb.EventData{event(newUUID())}})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("wrong expected revision: ABORTED with the actual revision", func(t *testing.T) {
		_, err := ev.Append(ctx, &cairnpb.AppendRequest{Stream: "s",
			Expected: &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_EXACT, Revision: 7},
			Events:   []*cairnpb.EventData{event(newUUID())}})
		st := wantCode(t, err, codes.Aborted, api.ReasonWrongExpectedRevision)
		w, ok := detail[*cairnpb.WrongExpectedRevision](st)
		if !ok || len(w.GetViolations()) != 1 || w.GetViolations()[0].GetActualRevision() != 0 || !w.GetViolations()[0].GetStreamExists() {
			t.Fatalf("detail %v", w)
		}
	})
	t.Run("partial id overlap: ABORTED event id conflict", func(t *testing.T) {
		id := newUUID()
		if _, err := ev.Append(ctx, &cairnpb.AppendRequest{Stream: "c", Events: []*cairnpb.EventData{event(id)}}); err != nil {
			t.Fatal(err)
		}
		_, err := ev.Append(ctx, &cairnpb.AppendRequest{Stream: "c", Events: []*cairnpb.EventData{event(id), event(newUUID())}})
		wantCode(t, err, codes.Aborted, api.ReasonEventIDConflict)
	})
	t.Run("tombstoned: FAILED_PRECONDITION", func(t *testing.T) {
		if _, err := ev.Append(ctx, &cairnpb.AppendRequest{Stream: "dead", Events: []*cairnpb.EventData{event(newUUID())}}); err != nil {
			t.Fatal(err)
		}
		if _, err := ev.Tombstone(ctx, &cairnpb.TombstoneRequest{Stream: "dead"}); err != nil {
			t.Fatal(err)
		}
		_, err := ev.Append(ctx, &cairnpb.AppendRequest{Stream: "dead", Events: []*cairnpb.EventData{event(newUUID())}})
		wantCode(t, err, codes.FailedPrecondition, api.ReasonStreamTombstoned)
		_, err = ev.Read(ctx, &cairnpb.ReadRequest{Stream: "dead"})
		wantCode(t, err, codes.FailedPrecondition, api.ReasonStreamTombstoned)
	})
	t.Run("stream not found: NOT_FOUND", func(t *testing.T) {
		_, err := ev.Read(ctx, &cairnpb.ReadRequest{Stream: "nope"})
		wantCode(t, err, codes.NotFound, api.ReasonStreamNotFound)
	})
	for _, tc := range []struct {
		name  string
		req   *cairnpb.AppendRequest
		field string
	}{
		{"empty name", &cairnpb.AppendRequest{Stream: "", Events: []*cairnpb.EventData{event(newUUID())}}, "stream"},
		{"reserved name", &cairnpb.AppendRequest{Stream: "$x", Events: []*cairnpb.EventData{event(newUUID())}}, "stream"},
		{"control character", &cairnpb.AppendRequest{Stream: "a\x01b", Events: []*cairnpb.EventData{event(newUUID())}}, "stream"},
		{"name too long", &cairnpb.AppendRequest{Stream: strings.Repeat("n", 256), Events: []*cairnpb.EventData{event(newUUID())}}, "stream"},
		{"bad UUID", &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{event("not-a-uuid")}}, "events[0].id"},
		{"nil UUID", &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{event("00000000-0000-0000-0000-000000000000")}}, "events[0].id"},
		{"empty batch", &cairnpb.AppendRequest{Stream: "s"}, "events"},
	} {
		t.Run("INVALID_ARGUMENT: "+tc.name, func(t *testing.T) {
			_, err := ev.Append(ctx, tc.req)
			st := wantCode(t, err, codes.InvalidArgument, api.ReasonInvalidArgument)
			br, ok := detail[*errdetails.BadRequest](st)
			if !ok || len(br.GetFieldViolations()) == 0 || br.GetFieldViolations()[0].GetField() != tc.field {
				t.Fatalf("bad request detail %v, want field %s", br, tc.field)
			}
		})
	}
	t.Run("oversize event: RESOURCE_EXHAUSTED with the limit", func(t *testing.T) {
		big := event(newUUID())
		big.Data = make([]byte, 1<<20+1)
		_, err := ev.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{big}})
		st := wantCode(t, err, codes.ResourceExhausted, api.ReasonLimitExceeded)
		if l, ok := detail[*cairnpb.LimitExceeded](st); !ok || l.GetMax() != 1<<20 || l.GetActual() <= 1<<20 {
			t.Fatalf("limit detail %v", l)
		}
	})
	t.Run("not leader with require_leader: UNAVAILABLE naming the leader", func(t *testing.T) {
		_, err := ev.Append(ctx, &cairnpb.AppendRequest{Stream: "s", RequireLeader: true, Events: []*cairnpb.EventData{event(newUUID())}})
		st := wantCode(t, err, codes.Unavailable, api.ReasonNotLeader)
		if nl, ok := detail[*cairnpb.NotLeader](st); !ok || nl.GetLeaderId() != leader.ID || nl.GetLeaderAddress() != leader.GRPCAddr {
			t.Fatalf("not-leader detail %v, want %s at %s", nl, leader.ID, leader.GRPCAddr)
		}
	})
	t.Run("not caught up to min_log_index: UNAVAILABLE with the applied index", func(t *testing.T) {
		rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer rcancel()
		_, err := ev.Read(rctx, &cairnpb.ReadRequest{Stream: "s", Options: stale(first.GetLogIndex() + 1_000_000)})
		st := wantCode(t, err, codes.Unavailable, api.ReasonNotCaughtUp)
		if d, ok := detail[*cairnpb.NotCaughtUp](st); !ok || d.GetAppliedIndex() < first.GetLogIndex() {
			t.Fatalf("not-caught-up detail %v", d)
		}
	})

	// Faults last: they disturb the cluster.
	t.Run("staler than max_staleness: UNAVAILABLE", func(t *testing.T) {
		if err := leader.Pause(); err != nil {
			t.Fatal(err)
		}
		defer leader.Resume()
		deadline := time.Now().Add(10 * time.Second)
		for {
			opts := &cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_STALE, MaxStaleness: durationpb.New(200 * time.Millisecond)}
			_, err := ev.Read(ctx, &cairnpb.ReadRequest{Stream: "s", Options: opts})
			if status.Code(err) == codes.Unavailable && reason(status.Convert(err)) == api.ReasonTooStale {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("follower never refused a read staler than 200ms: %v", err)
			}
			time.Sleep(50 * time.Millisecond) // waiting for leader contact to age, bounded
		}
	})
	t.Run("quorum lost: UNAVAILABLE no leader", func(t *testing.T) {
		cur, err := c.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var paused []*localcluster.Node
		for _, n := range c.Nodes {
			if n != cur {
				if err := n.Pause(); err != nil {
					t.Fatal(err)
				}
				paused = append(paused, n)
			}
		}
		defer func() {
			for _, n := range paused {
				n.Resume()
			}
		}()
		deadline := time.Now().Add(15 * time.Second)
		for {
			actx, acancel := context.WithTimeout(ctx, time.Second)
			_, err := cur.Events().Append(actx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{event(newUUID())}})
			acancel()
			st := status.Convert(err)
			if st.Code() == codes.Unavailable && reason(st) == api.ReasonNoLeader {
				return
			}
			if err == nil {
				t.Fatal("an append was acknowledged without a quorum")
			}
			if time.Now().After(deadline) {
				t.Fatalf("the isolated node never answered NO_LEADER: %v", err)
			}
		}
	})
}
