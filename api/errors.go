package api

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// ErrorDomain is the Domain of the errdetails.ErrorInfo that every status the service returns
// carries. Together with the ErrorInfo Reason it lets clients in any language switch on a stable
// string rather than parse messages.
const ErrorDomain = "cairn.dev"

// ErrorInfo reasons. Each names one row of the error table in DESIGN.md; the gRPC code and the
// typed detail that go with it are listed there. The strings are part of the API and never change.
const (
	// ReasonInvalidArgument: INVALID_ARGUMENT with errdetails.BadRequest field violations.
	ReasonInvalidArgument = "INVALID_ARGUMENT"
	// ReasonLimitExceeded: RESOURCE_EXHAUSTED with cairnpb.LimitExceeded.
	ReasonLimitExceeded = "LIMIT_EXCEEDED"
	// ReasonWrongExpectedRevision: ABORTED with cairnpb.WrongExpectedRevision.
	ReasonWrongExpectedRevision = "WRONG_EXPECTED_REVISION"
	// ReasonStreamTombstoned: FAILED_PRECONDITION; appends carry cairnpb.WrongExpectedRevision,
	// reads errdetails.ResourceInfo.
	ReasonStreamTombstoned = "STREAM_TOMBSTONED"
	// ReasonStreamNotFound: NOT_FOUND with errdetails.ResourceInfo.
	ReasonStreamNotFound = "STREAM_NOT_FOUND"
	// ReasonEventIDConflict: ABORTED with cairnpb.EventIdConflict.
	ReasonEventIDConflict = "EVENT_ID_CONFLICT"
	// ReasonInvalidCommand: INVALID_ARGUMENT; the state machine refused a command that passed the
	// api's validation (a bug or a configuration mismatch; logged).
	ReasonInvalidCommand = "INVALID_COMMAND"
	// ReasonNotLeader: UNAVAILABLE with cairnpb.NotLeader naming the leader.
	ReasonNotLeader = "NOT_LEADER"
	// ReasonNoLeader: UNAVAILABLE; no leader is known (cairnpb.NotLeader, when present, is empty).
	ReasonNoLeader = "NO_LEADER"
	// ReasonOutcomeUnknown: UNKNOWN; the append may or may not be committed, and retrying it with
	// the same event ids is safe.
	ReasonOutcomeUnknown = "OUTCOME_UNKNOWN"
	// ReasonNotCaughtUp: UNAVAILABLE with cairnpb.NotCaughtUp (min_log_index not reached).
	ReasonNotCaughtUp = "NOT_CAUGHT_UP"
	// ReasonTooStale: UNAVAILABLE with cairnpb.NotCaughtUp (max_staleness exceeded).
	ReasonTooStale = "TOO_STALE"
	// ReasonShuttingDown: UNAVAILABLE; the node is shutting down.
	ReasonShuttingDown = "SHUTTING_DOWN"
	// ReasonForwardFailed: UNAVAILABLE with cairnpb.NotLeader; a read could not be forwarded to
	// the leader. (A forwarded append that fails this way is OUTCOME_UNKNOWN.)
	ReasonForwardFailed = "FORWARD_FAILED"
	// ReasonDeadlineExceeded: DEADLINE_EXCEEDED.
	ReasonDeadlineExceeded = "DEADLINE_EXCEEDED"
	// ReasonCanceled: CANCELED.
	ReasonCanceled = "CANCELED"
	// ReasonServerNotFound: NOT_FOUND; an admin call named a server that is not in the raft
	// configuration.
	ReasonServerNotFound = "SERVER_NOT_FOUND"
	// ReasonNothingToSnapshot: FAILED_PRECONDITION; nothing was applied since the last snapshot.
	ReasonNothingToSnapshot = "NOTHING_TO_SNAPSHOT"
	// ReasonGossipKeyring: FAILED_PRECONDITION; a gossip keyring change cannot be made: the node
	// runs without gossip encryption, the key to make primary is not installed, or the key file
	// cannot be written (nothing changed).
	ReasonGossipKeyring = "GOSSIP_KEYRING"
	// ReasonUnimplemented: UNIMPLEMENTED; the node does not offer this operation.
	ReasonUnimplemented = "UNIMPLEMENTED"
	// ReasonUnauthenticated: UNAUTHENTICATED; no credentials, or unknown or revoked ones.
	ReasonUnauthenticated = "UNAUTHENTICATED"
	// ReasonPermissionDenied: PERMISSION_DENIED; the caller's role or stream prefixes do not
	// allow the call.
	ReasonPermissionDenied = "PERMISSION_DENIED"
	// ReasonTokenNotFound: NOT_FOUND; a revoke named a token that does not exist.
	ReasonTokenNotFound = "TOKEN_NOT_FOUND"
	// ReasonTokenExists: ALREADY_EXISTS; a new token's id or secret collided with a live one.
	ReasonTokenExists = "TOKEN_EXISTS"
	// ReasonInternal: INTERNAL; anything else (logged with the underlying error).
	ReasonInternal = "INTERNAL"
)

// allReasons lists every reason, for the counters.
var allReasons = []string{
	ReasonInvalidArgument, ReasonLimitExceeded, ReasonWrongExpectedRevision, ReasonStreamTombstoned,
	ReasonStreamNotFound, ReasonEventIDConflict, ReasonInvalidCommand, ReasonNotLeader, ReasonNoLeader,
	ReasonOutcomeUnknown, ReasonNotCaughtUp, ReasonTooStale, ReasonShuttingDown, ReasonForwardFailed,
	ReasonDeadlineExceeded, ReasonCanceled, ReasonServerNotFound, ReasonNothingToSnapshot, ReasonUnimplemented,
	ReasonUnauthenticated, ReasonPermissionDenied, ReasonTokenNotFound, ReasonTokenExists, ReasonInternal,
}

// streamError attaches the stream a read was about to an error from the store, so the mapping
// can name it in details.
type streamError struct {
	stream string
	err    error
}

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// outcomeUnknownMsg is the message of every UNKNOWN status.
const outcomeUnknownMsg = "outcome unknown: the append may or may not have been committed; " +
	"retrying it with the same event ids is safe (a stored append is returned, not written twice)"

// statusFromError maps any error the service meets to its gRPC status. It is the one place where
// sentinel and typed errors of fsm and cluster become codes and details (DESIGN §6). Errors that
// already are gRPC statuses (validation errors, statuses returned by a leader we forwarded to)
// pass through unchanged.
func statusFromError(err error) *status.Status {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return st
	}
	var (
		cond     *fsm.ConditionError
		conflict *fsm.EventIDConflictError
		notLdr   *cluster.NotLeaderError
		stale    *cluster.StalenessError
		se       *streamError
	)
	stream := ""
	if errors.As(err, &se) {
		stream = se.stream
	}
	switch {
	case errors.As(err, &cond):
		return conditionStatus(cond)
	case errors.As(err, &conflict):
		id := formatUUID(conflict.ID)
		return newStatus(codes.Aborted, ReasonEventIDConflict, err.Error(),
			map[string]string{"stream": conflict.Stream, "event_id": id},
			&cairnpb.EventIdConflict{Stream: conflict.Stream, EventId: id, Reason: conflict.Reason})
	case errors.Is(err, fsm.ErrEventIDConflict):
		return newStatus(codes.Aborted, ReasonEventIDConflict, err.Error(), nil, &cairnpb.EventIdConflict{})
	case errors.Is(err, fsm.ErrInvalidCommand):
		return newStatus(codes.InvalidArgument, ReasonInvalidCommand, err.Error(), nil)
	case errors.Is(err, fsm.ErrStreamNotFound):
		return newStatus(codes.NotFound, ReasonStreamNotFound, err.Error(), streamMeta(stream),
			&errdetails.ResourceInfo{ResourceType: "stream", ResourceName: stream, Description: "stream has no events"})
	case errors.Is(err, fsm.ErrStreamTombstoned):
		return newStatus(codes.FailedPrecondition, ReasonStreamTombstoned, err.Error(), streamMeta(stream),
			&errdetails.ResourceInfo{ResourceType: "stream", ResourceName: stream, Description: "stream is tombstoned"})
	case errors.Is(err, fsm.ErrWrongExpectedRevision):
		return newStatus(codes.Aborted, ReasonWrongExpectedRevision, err.Error(), nil, &cairnpb.WrongExpectedRevision{})
	case errors.Is(err, cluster.ErrOutcomeUnknown):
		return newStatus(codes.Unknown, ReasonOutcomeUnknown, outcomeUnknownMsg+" ("+err.Error()+")", nil)
	case errors.As(err, &notLdr):
		return notLeaderStatus(notLdr.LeaderID, notLdr.LeaderAddr, err.Error())
	case errors.Is(err, cluster.ErrNotLeader):
		return notLeaderStatus("", "", err.Error())
	case errors.Is(err, cluster.ErrNoLeader):
		return newStatus(codes.Unavailable, ReasonNoLeader, err.Error(), nil)
	case errors.As(err, &stale):
		reason := ReasonNotCaughtUp
		if errors.Is(stale.Err, cluster.ErrTooStale) {
			reason = ReasonTooStale
		}
		return newStatus(codes.Unavailable, reason, err.Error(), nil, &cairnpb.NotCaughtUp{
			NodeId: stale.NodeID, AppliedIndex: stale.AppliedIndex, RequiredIndex: stale.RequiredIndex,
			LastContact: durationpb.New(stale.LastContact), MaxStaleness: durationpb.New(stale.MaxStaleness),
		})
	case errors.Is(err, cluster.ErrNotCaughtUp):
		return newStatus(codes.Unavailable, ReasonNotCaughtUp, err.Error(), nil, &cairnpb.NotCaughtUp{})
	case errors.Is(err, cluster.ErrTooStale):
		return newStatus(codes.Unavailable, ReasonTooStale, err.Error(), nil, &cairnpb.NotCaughtUp{})
	case errors.Is(err, cluster.ErrUnknownServer):
		return newStatus(codes.NotFound, ReasonServerNotFound, err.Error(), nil)
	case errors.Is(err, cluster.ErrNothingToSnapshot):
		return newStatus(codes.FailedPrecondition, ReasonNothingToSnapshot, err.Error(), nil)
	case errors.Is(err, cluster.ErrGossipPlaintext), errors.Is(err, cluster.ErrGossipKeyNotInstalled),
		errors.Is(err, cluster.ErrGossipKeyFile):
		return newStatus(codes.FailedPrecondition, ReasonGossipKeyring, err.Error(), nil)
	case errors.Is(err, ErrUnauthenticated):
		return newStatus(codes.Unauthenticated, ReasonUnauthenticated, err.Error(), nil)
	case errors.Is(err, ErrPermissionDenied):
		return newStatus(codes.PermissionDenied, ReasonPermissionDenied, err.Error(), nil)
	case errors.Is(err, fsm.ErrTokenNotFound):
		return newStatus(codes.NotFound, ReasonTokenNotFound, err.Error(), nil)
	case errors.Is(err, fsm.ErrTokenExists):
		return newStatus(codes.AlreadyExists, ReasonTokenExists, err.Error(), nil)
	case errors.Is(err, errNoAdmin), errors.Is(err, errNoTokens):
		return newStatus(codes.Unimplemented, ReasonUnimplemented, err.Error(), nil)
	case errors.Is(err, cluster.ErrShutdown), errors.Is(err, fsm.ErrClosed):
		return newStatus(codes.Unavailable, ReasonShuttingDown, err.Error(), nil)
	case errors.Is(err, context.DeadlineExceeded):
		return newStatus(codes.DeadlineExceeded, ReasonDeadlineExceeded, err.Error(), nil)
	case errors.Is(err, context.Canceled):
		return newStatus(codes.Canceled, ReasonCanceled, err.Error(), nil)
	}
	return newStatus(codes.Internal, ReasonInternal, "internal error (details in the server log)", nil)
}

// conditionStatus maps failed expected-revision conditions: ABORTED, or FAILED_PRECONDITION when
// every violated condition is a tombstoned stream (retrying with another expected revision
// cannot help). The detail lists every violation either way.
func conditionStatus(ce *fsm.ConditionError) *status.Status {
	d := &cairnpb.WrongExpectedRevision{Violations: make([]*cairnpb.StreamViolation, len(ce.Violations))}
	allTombstoned := len(ce.Violations) > 0
	streams := make([]string, len(ce.Violations))
	for i, v := range ce.Violations {
		d.Violations[i] = &cairnpb.StreamViolation{
			Stream:         v.Stream,
			Expected:       expectedToPB(v.Expected),
			ActualRevision: v.ActualRevision,
			StreamExists:   v.StreamExists,
			Tombstoned:     v.Tombstoned,
			Deleted:        v.Deleted,
			Metadata:       v.Metadata,
		}
		allTombstoned = allTombstoned && v.Tombstoned
		streams[i] = v.Stream
	}
	meta := map[string]string{"streams": strings.Join(streams, ",")}
	if len(streams) == 1 {
		meta = streamMeta(streams[0])
	}
	if allTombstoned {
		return newStatus(codes.FailedPrecondition, ReasonStreamTombstoned, ce.Error(), meta, d)
	}
	return newStatus(codes.Aborted, ReasonWrongExpectedRevision, ce.Error(), meta, d)
}

// notLeaderStatus is UNAVAILABLE with a NotLeader detail; the reason is NO_LEADER when no leader
// address is known, so clients know whether redirecting is possible.
func notLeaderStatus(id, addr, msg string) *status.Status {
	reason := ReasonNotLeader
	if addr == "" {
		reason = ReasonNoLeader
	}
	return newStatus(codes.Unavailable, reason, msg,
		map[string]string{"leader_id": id, "leader_address": addr},
		&cairnpb.NotLeader{LeaderId: id, LeaderAddress: addr})
}

func streamMeta(stream string) map[string]string {
	if stream == "" {
		return nil
	}
	return map[string]string{"stream": stream}
}

// newStatus builds a status carrying an ErrorInfo{reason, ErrorDomain, meta} followed by details.
func newStatus(code codes.Code, reason, msg string, meta map[string]string, details ...protoadapt.MessageV1) *status.Status {
	st := status.New(code, msg)
	all := make([]protoadapt.MessageV1, 0, 1+len(details))
	all = append(all, &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta})
	all = append(all, details...)
	if withDetails, err := st.WithDetails(all...); err == nil {
		return withDetails
	}
	return st
}

// reasonOf returns the ErrorInfo reason of a status produced by a Cairn node, or "" when it has
// none (gRPC's own statuses, transport failures).
func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// badRequest collects the field violations of one request.
type badRequest struct {
	violations []*errdetails.BadRequest_FieldViolation
}

// maxViolations bounds the violations reported for one request (a batch of 10,000 bad events
// need not produce 10,000 entries).
const maxViolations = 100

func (b *badRequest) add(field, reason, format string, args ...any) {
	if len(b.violations) >= maxViolations {
		return
	}
	b.violations = append(b.violations, &errdetails.BadRequest_FieldViolation{
		Field: field, Reason: reason, Description: fmt.Sprintf(format, args...)})
}

// err returns nil, or INVALID_ARGUMENT with a BadRequest detail listing every violation.
func (b *badRequest) err() error {
	if len(b.violations) == 0 {
		return nil
	}
	parts := make([]string, 0, 3)
	for i, v := range b.violations {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(b.violations)-3))
			break
		}
		parts = append(parts, v.GetField()+": "+v.GetDescription())
	}
	fields := make([]string, len(b.violations))
	for i, v := range b.violations {
		fields[i] = v.GetField()
	}
	return newStatus(codes.InvalidArgument, ReasonInvalidArgument, "invalid argument: "+strings.Join(parts, "; "),
		map[string]string{"fields": strings.Join(fields, ",")},
		&errdetails.BadRequest{FieldViolations: b.violations}).Err()
}

// limitError is RESOURCE_EXHAUSTED with a LimitExceeded detail. field names the offending part
// of the request ("" for the whole request).
func limitError(limit string, maxV, actual int, field string) error {
	msg := fmt.Sprintf("%s limit exceeded: %d, max %d", limit, actual, maxV)
	meta := map[string]string{"limit": limit}
	if field != "" {
		msg = field + ": " + msg
		meta["field"] = field
	}
	return newStatus(codes.ResourceExhausted, ReasonLimitExceeded, msg, meta,
		&cairnpb.LimitExceeded{Limit: limit, Max: uint64(maxV), Actual: uint64(actual)}).Err()
}

// expectedToPB converts an fsm expected-revision condition to its API form.
func expectedToPB(e fsm.Expected) *cairnpb.ExpectedRevision {
	out := &cairnpb.ExpectedRevision{Revision: e.Revision}
	switch e.Kind {
	case fsmpb.ExpectedRevision_KIND_ANY:
		out.Kind = cairnpb.ExpectedRevision_KIND_ANY
	case fsmpb.ExpectedRevision_KIND_NO_STREAM:
		out.Kind = cairnpb.ExpectedRevision_KIND_NO_STREAM
	case fsmpb.ExpectedRevision_KIND_STREAM_EXISTS:
		out.Kind = cairnpb.ExpectedRevision_KIND_STREAM_EXISTS
	case fsmpb.ExpectedRevision_KIND_EXACT:
		out.Kind = cairnpb.ExpectedRevision_KIND_EXACT
	}
	return out
}
