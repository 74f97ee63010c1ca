package workload

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/jepsen-lite/history"
)

func cairnErr(code codes.Code, reason string, details ...*cairnpb.WrongExpectedRevision) error {
	st := status.New(code, reason)
	st, _ = st.WithDetails(&errdetails.ErrorInfo{Domain: errorDomain, Reason: reason})
	for _, d := range details {
		st, _ = st.WithDetails(d)
	}
	return st.Err()
}

// Outcomes are classified as the API contract says, and never guessed "fail".
func TestClassify(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		write  bool
		typ    history.Type
		reason string
	}{
		{"ok", nil, true, history.OK, ""},
		{"conflict", cairnErr(codes.Aborted, history.ReasonWrongExpectedRevision), true, history.Fail, history.ReasonWrongExpectedRevision},
		{"not leader: not proposed", cairnErr(codes.Unavailable, history.ReasonNotLeader), true, history.Fail, history.ReasonNotLeader},
		{"no leader: not proposed", cairnErr(codes.Unavailable, history.ReasonNoLeader), true, history.Fail, history.ReasonNoLeader},
		{"outcome unknown", cairnErr(codes.Unknown, history.ReasonOutcomeUnknown), true, history.Info, history.ReasonOutcomeUnknown},
		{"server deadline", cairnErr(codes.DeadlineExceeded, history.ReasonDeadlineExceeded), true, history.Info, history.ReasonDeadlineExceeded},
		{"shutting down", cairnErr(codes.Unavailable, history.ReasonShuttingDown), true, history.Info, history.ReasonShuttingDown},
		{"internal", cairnErr(codes.Internal, history.ReasonInternal), true, history.Info, history.ReasonInternal},
		{"transport", status.Error(codes.Unavailable, "connection refused"), true, history.Info, "transport:Unavailable"},
		{"client deadline", status.Error(codes.DeadlineExceeded, "deadline"), true, history.Info, "transport:DeadlineExceeded"},
		{"plain deadline", context.DeadlineExceeded, true, history.Info, "transport:DeadlineExceeded"},
		{"plain error", errors.New("boom"), true, history.Info, "transport:Unknown"},
		{"read not found is an answer", cairnErr(codes.NotFound, history.ReasonStreamNotFound), false, history.OK, history.ReasonStreamNotFound},
		{"read not leader", cairnErr(codes.Unavailable, history.ReasonForwardFailed), false, history.Fail, history.ReasonForwardFailed},
		{"read transport", status.Error(codes.Unavailable, "x"), false, history.Fail, "transport:Unavailable"},
	}
	for _, c := range cases {
		typ, reason := Classify(c.err, c.write)
		if typ != c.typ || reason != c.reason {
			t.Errorf("%s: got %s %q, want %s %q", c.name, typ, reason, c.typ, c.reason)
		}
	}
	err := cairnErr(codes.Aborted, history.ReasonWrongExpectedRevision,
		&cairnpb.WrongExpectedRevision{Violations: []*cairnpb.StreamViolation{{Stream: "s", StreamExists: true, ActualRevision: 4}}})
	if got := conflictLength(err); got != 5 {
		t.Fatalf("conflict length %d, want 5", got)
	}
}

func TestIDRoundTrip(t *testing.T) {
	id := history.MakeID(17, 123456)
	s := history.FormatID(0xdeadbeef, id)
	if got := history.ParseID(0xdeadbeef, s); got != id {
		t.Fatalf("%s -> %d, want %d", s, got, id)
	}
	if got := history.ParseID(0xdeadbeee, s); got != history.ForeignID {
		t.Fatalf("foreign nonce parsed as %d", got)
	}
	if history.IDWriter(id) != 17 || history.IDSeq(id) != 123456 {
		t.Fatalf("writer %d seq %d", history.IDWriter(id), history.IDSeq(id))
	}
}
