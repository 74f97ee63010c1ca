package api

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// TestStatusFromError covers every branch of the one mapping from errors to statuses.
func TestStatusFromError(t *testing.T) {
	wrongRev := fsm.Violation{Stream: "a", Expected: fsm.Expected{Kind: fsmpb.ExpectedRevision_KIND_EXACT, Revision: 3},
		ActualRevision: 5, StreamExists: true}
	tomb := fsm.Violation{Stream: "b", Expected: fsm.Expected{Kind: fsmpb.ExpectedRevision_KIND_ANY}, Tombstoned: true}
	id := [16]byte{0xCA, 15: 1}
	for _, c := range []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		check  func(*testing.T, *status.Status)
	}{
		{"wrong expected revision", &fsm.ConditionError{Violations: []fsm.Violation{wrongRev, tomb}},
			codes.Aborted, ReasonWrongExpectedRevision, func(t *testing.T, st *status.Status) {
				v := detailOf[*cairnpb.WrongExpectedRevision](t, st).GetViolations()
				if len(v) != 2 || v[0].GetActualRevision() != 5 || v[0].GetExpected().GetRevision() != 3 ||
					v[0].GetExpected().GetKind() != cairnpb.ExpectedRevision_KIND_EXACT || !v[1].GetTombstoned() {
					t.Fatalf("violations %v", v)
				}
			}},
		{"all tombstoned", &fsm.ConditionError{Violations: []fsm.Violation{tomb}},
			codes.FailedPrecondition, ReasonStreamTombstoned, func(t *testing.T, st *status.Status) {
				if v := detailOf[*cairnpb.WrongExpectedRevision](t, st).GetViolations(); v[0].GetStream() != "b" {
					t.Fatalf("violations %v", v)
				}
			}},
		{"event id conflict", fmt.Errorf("x: %w", &fsm.EventIDConflictError{Stream: "s", ID: id, Reason: "partial"}),
			codes.Aborted, ReasonEventIDConflict, func(t *testing.T, st *status.Status) {
				d := detailOf[*cairnpb.EventIdConflict](t, st)
				if d.GetEventId() != formatUUID(id) || d.GetStream() != "s" || d.GetReason() != "partial" {
					t.Fatalf("detail %v", d)
				}
			}},
		{"invalid command", fmt.Errorf("%w: bad", fsm.ErrInvalidCommand), codes.InvalidArgument, ReasonInvalidCommand, nil},
		{"stream not found", &streamError{stream: "s", err: fmt.Errorf("read: %w", fsm.ErrStreamNotFound)},
			codes.NotFound, ReasonStreamNotFound, func(t *testing.T, st *status.Status) {
				if ri := detailOf[*errdetails.ResourceInfo](t, st); ri.GetResourceName() != "s" {
					t.Fatalf("resource %v", ri)
				}
			}},
		{"read tombstoned", &streamError{stream: "s", err: fsm.ErrStreamTombstoned},
			codes.FailedPrecondition, ReasonStreamTombstoned, nil},
		{"not leader", &cluster.NotLeaderError{LeaderID: "n1", LeaderAddr: "h:1"}, codes.Unavailable, ReasonNotLeader,
			func(t *testing.T, st *status.Status) {
				if d := detailOf[*cairnpb.NotLeader](t, st); d.GetLeaderAddress() != "h:1" || d.GetLeaderId() != "n1" {
					t.Fatalf("detail %v", d)
				}
			}},
		{"not leader, none known", &cluster.NotLeaderError{}, codes.Unavailable, ReasonNoLeader, nil},
		{"no leader", cluster.ErrNoLeader, codes.Unavailable, ReasonNoLeader, nil},
		{"outcome unknown", fmt.Errorf("lost: %w", cluster.ErrOutcomeUnknown), codes.Unknown, ReasonOutcomeUnknown, nil},
		{"not caught up", &cluster.StalenessError{Err: cluster.ErrNotCaughtUp, AppliedIndex: 2, RequiredIndex: 4},
			codes.Unavailable, ReasonNotCaughtUp, func(t *testing.T, st *status.Status) {
				if d := detailOf[*cairnpb.NotCaughtUp](t, st); d.GetRequiredIndex() != 4 {
					t.Fatalf("detail %v", d)
				}
			}},
		{"too stale", &cluster.StalenessError{Err: cluster.ErrTooStale, MaxStaleness: time.Second},
			codes.Unavailable, ReasonTooStale, func(t *testing.T, st *status.Status) {
				if d := detailOf[*cairnpb.NotCaughtUp](t, st); d.GetMaxStaleness().AsDuration() != time.Second {
					t.Fatalf("detail %v", d)
				}
			}},
		{"shutdown", cluster.ErrShutdown, codes.Unavailable, ReasonShuttingDown, nil},
		{"gossip plaintext", cluster.ErrGossipPlaintext, codes.FailedPrecondition, ReasonGossipKeyring, nil},
		{"gossip key not installed", cluster.ErrGossipKeyNotInstalled, codes.FailedPrecondition, ReasonGossipKeyring, nil},
		{"gossip key file", fmt.Errorf("%w: read-only", cluster.ErrGossipKeyFile), codes.FailedPrecondition, ReasonGossipKeyring, nil},
		{"fsm closed", fsm.ErrClosed, codes.Unavailable, ReasonShuttingDown, nil},
		{"deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.DeadlineExceeded, ReasonDeadlineExceeded, nil},
		{"canceled", context.Canceled, codes.Canceled, ReasonCanceled, nil},
		{"anything else", errors.New("boom"), codes.Internal, ReasonInternal, func(t *testing.T, st *status.Status) {
			if st.Message() == "boom" {
				t.Fatal("internal error text leaked to the client")
			}
		}},
		{"status passes through", limitError("event_bytes", 1, 2, "events[0]"), codes.ResourceExhausted, ReasonLimitExceeded, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := wantStatus(t, statusFromError(c.err).Err(), c.code, c.reason)
			if c.check != nil {
				c.check(t, st)
			}
		})
	}
	if statusFromError(nil) != nil {
		t.Fatal("nil error mapped to a status")
	}
}
