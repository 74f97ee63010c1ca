package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api/cairnpb"
)

// Sentinel errors. Every error a Client method returns for a failed call matches, with
// errors.Is, the sentinels of its condition (DESIGN §6), and errors.As finds the typed detail
// (*WrongExpectedRevisionError, *InvalidArgumentError, ...) and the *StatusError that carries the
// gRPC code, the ErrorInfo reason and the node's address.
var (
	// ErrWrongExpectedRevision: an append's expected revision did not hold (ABORTED). The
	// *WrongExpectedRevisionError lists every violated condition with the actual revision.
	ErrWrongExpectedRevision = errors.New("cairn: wrong expected revision")
	// ErrStreamTombstoned: the stream is tombstoned and can never be written or read again
	// (FAILED_PRECONDITION).
	ErrStreamTombstoned = errors.New("cairn: stream tombstoned")
	// ErrStreamNotFound: a read of a stream that has no events (NOT_FOUND).
	ErrStreamNotFound = errors.New("cairn: stream not found")
	// ErrEventIDConflict: an append's event ids partially overlap earlier appends, or match
	// stored events that differ from the request (ABORTED). Not retryable.
	ErrEventIDConflict = errors.New("cairn: event id conflict")
	// ErrInvalidArgument: the request is malformed (INVALID_ARGUMENT); *InvalidArgumentError
	// names the field.
	ErrInvalidArgument = errors.New("cairn: invalid argument")
	// ErrLimitExceeded: an event or the request is over a size limit (RESOURCE_EXHAUSTED);
	// *LimitError names the limit.
	ErrLimitExceeded = errors.New("cairn: limit exceeded")
	// ErrNotLeader: the node asked is not the leader and was told not to forward (UNAVAILABLE);
	// *NotLeaderError names the leader. Also matches ErrUnavailable.
	ErrNotLeader = errors.New("cairn: not leader")
	// ErrUnavailable: the cluster or the node could not serve the call (UNAVAILABLE: no leader,
	// not leader, not caught up, shutting down, unreachable).
	ErrUnavailable = errors.New("cairn: unavailable")
	// ErrOutcomeUnknown: an append may or may not have been committed (UNKNOWN, or the client
	// gave up after an attempt whose answer was lost). Retrying it with the same event ids is
	// safe: a stored append is returned, not written twice.
	ErrOutcomeUnknown = errors.New("cairn: outcome unknown")
	// ErrNotCaughtUp: a Stale read could not be served within its bounds: the node had not
	// applied the required log index before the deadline, or had not heard from a leader within
	// MaxStaleness (UNAVAILABLE); *NotCaughtUpError has the numbers. Also matches ErrUnavailable.
	ErrNotCaughtUp = errors.New("cairn: not caught up")
	// ErrServerNotFound: an operator call named a server that is not in the raft configuration
	// (NOT_FOUND).
	ErrServerNotFound = errors.New("cairn: server not in the cluster")
	// ErrUnauthenticated: the call had no token, or one the cluster does not know
	// (UNAUTHENTICATED); see WithToken.
	ErrUnauthenticated = errors.New("cairn: unauthenticated")
	// ErrPermissionDenied: the token's role or stream prefixes do not allow the call
	// (PERMISSION_DENIED).
	ErrPermissionDenied = errors.New("cairn: permission denied")
)

// Reasons of the ErrorInfo detail (domain "cairn.dev") that a Cairn node attaches to every
// status. They are part of the wire API (see api/errors.go); the client keeps its own copy so
// that it does not import the server.
const (
	errorDomain                 = "cairn.dev"
	reasonInvalidArgument       = "INVALID_ARGUMENT"
	reasonWrongExpectedRevision = "WRONG_EXPECTED_REVISION"
	reasonStreamTombstoned      = "STREAM_TOMBSTONED"
	reasonStreamNotFound        = "STREAM_NOT_FOUND"
	reasonEventIDConflict       = "EVENT_ID_CONFLICT"
	reasonNotLeader             = "NOT_LEADER"
	reasonNoLeader              = "NO_LEADER"
	reasonOutcomeUnknown        = "OUTCOME_UNKNOWN"
	reasonNotCaughtUp           = "NOT_CAUGHT_UP"
	reasonTooStale              = "TOO_STALE"
	reasonShuttingDown          = "SHUTTING_DOWN"
	reasonForwardFailed         = "FORWARD_FAILED"
	reasonServerNotFound        = "SERVER_NOT_FOUND"
)

// StatusError is a failed call as the answering node, or the gRPC transport, reported it. Every
// error a Client method returns for a failed call wraps one (find it with errors.As).
type StatusError struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the ErrorInfo reason (e.g. "WRONG_EXPECTED_REVISION"); "" when the status did
	// not come from a Cairn node (a transport failure, a deadline).
	Reason string
	// Message is the status message.
	Message string
	// Metadata is the ErrorInfo metadata (e.g. "stream", "leader_address").
	Metadata map[string]string
	// Addr is the address the call was sent to.
	Addr string

	st *status.Status
}

// Error describes the status: message, code, reason and address.
func (e *StatusError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	b.WriteString(" [")
	b.WriteString(e.Code.String())
	if e.Reason != "" {
		b.WriteString(" ")
		b.WriteString(e.Reason)
	}
	if e.Addr != "" {
		b.WriteString(" from ")
		b.WriteString(e.Addr)
	}
	b.WriteString("]")
	return b.String()
}

// GRPCStatus returns the original gRPC status, so that status.FromError and status.Code work on
// errors returned by the client.
func (e *StatusError) GRPCStatus() *status.Status { return e.st }

// Is maps the status to the sentinel errors of its condition (DESIGN §6), and DEADLINE_EXCEEDED
// and CANCELLED to context.DeadlineExceeded and context.Canceled.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrInvalidArgument:
		return e.Code == codes.InvalidArgument
	case ErrLimitExceeded:
		return e.Code == codes.ResourceExhausted
	case ErrWrongExpectedRevision:
		return e.Code == codes.Aborted && e.Reason != reasonEventIDConflict
	case ErrEventIDConflict:
		return e.Code == codes.Aborted && e.Reason == reasonEventIDConflict
	case ErrStreamTombstoned:
		return e.Code == codes.FailedPrecondition && e.Reason == reasonStreamTombstoned
	case ErrStreamNotFound:
		return e.Code == codes.NotFound && e.Reason != reasonServerNotFound
	case ErrServerNotFound:
		return e.Code == codes.NotFound && e.Reason == reasonServerNotFound
	case ErrUnauthenticated:
		return e.Code == codes.Unauthenticated
	case ErrPermissionDenied:
		return e.Code == codes.PermissionDenied
	case ErrUnavailable:
		return e.Code == codes.Unavailable
	case ErrNotLeader:
		return e.Code == codes.Unavailable && e.Reason == reasonNotLeader
	case ErrNotCaughtUp:
		return e.Code == codes.Unavailable && (e.Reason == reasonNotCaughtUp || e.Reason == reasonTooStale)
	case ErrOutcomeUnknown:
		return e.Code == codes.Unknown
	case context.DeadlineExceeded:
		return e.Code == codes.DeadlineExceeded
	case context.Canceled:
		return e.Code == codes.Canceled
	}
	return false
}

// Violation is one failed condition of an append.
type Violation struct {
	// Stream is the stream whose condition failed.
	Stream string
	// Expected is the condition the request carried.
	Expected Expected
	// ActualRevision is the revision of the stream's last event; meaningful only when
	// StreamExists.
	ActualRevision uint64
	// StreamExists is false when the stream has no events.
	StreamExists bool
	// Tombstoned is true when the stream is tombstoned.
	Tombstoned bool
	// Deleted is true when the stream is soft-deleted (ActualRevision is its last revision).
	Deleted bool
	// Metadata is true for a condition on the metadata revision (SetStreamMetadata):
	// ActualRevision is the latest metadata revision, StreamExists whether any is set.
	Metadata bool
}

// String describes the violation, e.g. `stream "orders-1": expected no-stream, actual revision 4`.
func (v Violation) String() string {
	actual := "no stream"
	switch {
	case v.Tombstoned:
		actual = "tombstoned"
	case v.Metadata && v.StreamExists:
		actual = fmt.Sprintf("metadata revision %d", v.ActualRevision)
	case v.Metadata:
		actual = "no metadata"
	case v.Deleted:
		actual = fmt.Sprintf("soft-deleted at revision %d", v.ActualRevision)
	case v.StreamExists:
		actual = fmt.Sprintf("revision %d", v.ActualRevision)
	}
	what := ""
	if v.Metadata {
		what = "metadata "
	}
	return fmt.Sprintf("stream %q: expected %s%s, actual %s", v.Stream, what, v.Expected, actual)
}

// WrongExpectedRevisionError details ErrWrongExpectedRevision and, for appends to tombstoned
// streams, ErrStreamTombstoned: it lists every violated condition of the request. It matches
// ErrWrongExpectedRevision when some violation is not a tombstone and ErrStreamTombstoned when
// some violation is one.
type WrongExpectedRevisionError struct {
	// Violations are the failed conditions, at least one.
	Violations []Violation
	status     *StatusError
}

// Error lists the violations.
func (e *WrongExpectedRevisionError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.String()
	}
	if len(parts) == 0 {
		return e.status.Error()
	}
	return "wrong expected revision: " + strings.Join(parts, "; ")
}

// Is reports whether target is ErrWrongExpectedRevision or ErrStreamTombstoned, as described on
// the type.
func (e *WrongExpectedRevisionError) Is(target error) bool {
	for _, v := range e.Violations {
		if (target == ErrStreamTombstoned && v.Tombstoned) || (target == ErrWrongExpectedRevision && !v.Tombstoned) {
			return true
		}
	}
	return false
}

// Unwrap returns the *StatusError.
func (e *WrongExpectedRevisionError) Unwrap() error { return e.status }

// EventIDConflictError details ErrEventIDConflict.
type EventIDConflictError struct {
	// Stream and EventID name the conflicting event, when the server could tell.
	Stream, EventID string
	// Reason says what conflicts.
	Reason string
	status *StatusError
}

// Error describes the conflict.
func (e *EventIDConflictError) Error() string {
	msg := "event id conflict"
	if e.Stream != "" {
		msg += fmt.Sprintf(": stream %q", e.Stream)
	}
	if e.EventID != "" {
		msg += ", event " + e.EventID
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Unwrap returns the *StatusError.
func (e *EventIDConflictError) Unwrap() error { return e.status }

// FieldViolation is one invalid field of a request.
type FieldViolation struct {
	// Field is the path of the field, e.g. "events[0].type".
	Field string
	// Reason is a stable code, e.g. "REQUIRED", "INVALID_UUID", "RESERVED_PREFIX".
	Reason string
	// Description explains it to a person.
	Description string
}

// InvalidArgumentError details ErrInvalidArgument. Field, Reason and Description are those of
// the first violation; Violations lists them all.
type InvalidArgumentError struct {
	Field, Reason, Description string
	Violations                 []FieldViolation
	status                     *StatusError
}

// Error lists the invalid fields.
func (e *InvalidArgumentError) Error() string {
	if len(e.Violations) == 0 {
		return e.status.Message
	}
	parts := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		parts = append(parts, v.Field+": "+v.Description)
	}
	return "invalid argument: " + strings.Join(parts, "; ")
}

// Unwrap returns the *StatusError.
func (e *InvalidArgumentError) Unwrap() error { return e.status }

// LimitError details ErrLimitExceeded.
type LimitError struct {
	// Limit names the limit: "event_bytes", "request_bytes", "events_per_append",
	// "filter_entries".
	Limit string
	// Max is the limit's value and Actual the request's.
	Max, Actual uint64
	// Field is the offending part of the request ("" for the whole request).
	Field  string
	status *StatusError
}

// Error describes the limit.
func (e *LimitError) Error() string {
	msg := fmt.Sprintf("%s limit exceeded: %d, max %d", e.Limit, e.Actual, e.Max)
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	return msg
}

// Unwrap returns the *StatusError.
func (e *LimitError) Unwrap() error { return e.status }

// NotLeaderError names the leader when a node could not serve a call itself: with ErrNotLeader
// (the call required the leader), or with ErrUnavailable (no leader known, forwarding failed).
// LeaderAddr is empty when no leader is known.
type NotLeaderError struct {
	LeaderID, LeaderAddr string
	status               *StatusError
}

// Error names the leader.
func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" {
		return e.status.Message + " (no leader known)"
	}
	return fmt.Sprintf("%s (leader is %s at %s)", e.status.Message, e.LeaderID, e.LeaderAddr)
}

// Unwrap returns the *StatusError.
func (e *NotLeaderError) Unwrap() error { return e.status }

// NotCaughtUpError details ErrNotCaughtUp.
type NotCaughtUpError struct {
	// NodeID is the node that refused the read.
	NodeID string
	// AppliedIndex is what it had applied; RequiredIndex what the read required.
	AppliedIndex, RequiredIndex uint64
	// LastContact is the time since it last heard from a leader; MaxStaleness the read's bound.
	LastContact, MaxStaleness time.Duration
	// TooStale is true when MaxStaleness was exceeded, false when RequiredIndex was not reached.
	TooStale bool
	status   *StatusError
}

// Error gives the numbers.
func (e *NotCaughtUpError) Error() string {
	if e.TooStale {
		return fmt.Sprintf("node %s is too stale: last leader contact %v ago, max staleness %v",
			e.NodeID, e.LastContact, e.MaxStaleness)
	}
	return fmt.Sprintf("node %s not caught up: applied index %d, required %d",
		e.NodeID, e.AppliedIndex, e.RequiredIndex)
}

// Unwrap returns the *StatusError.
func (e *NotCaughtUpError) Unwrap() error { return e.status }

// StreamNotFoundError details ErrStreamNotFound (and, with Tombstoned set, ErrStreamTombstoned
// for a read of a tombstoned stream).
type StreamNotFoundError struct {
	// Stream is the stream read.
	Stream string
	// Tombstoned is true when the stream exists but is tombstoned.
	Tombstoned bool
	status     *StatusError
}

// Error names the stream.
func (e *StreamNotFoundError) Error() string {
	if e.Tombstoned {
		return fmt.Sprintf("stream %q is tombstoned", e.Stream)
	}
	return fmt.Sprintf("stream %q not found", e.Stream)
}

// Unwrap returns the *StatusError.
func (e *StreamNotFoundError) Unwrap() error { return e.status }

// OutcomeUnknownError is returned when the client gave up on an append after an attempt whose
// outcome it could not learn (the answer was lost, the node crashed, the deadline passed): the
// append may or may not have been committed. It matches ErrOutcomeUnknown; Err is the last
// attempt's error. Retrying the append with the same event ids (AppendResult.EventIDs are lost,
// but the EventData you passed were filled in place? No: see Client.Append) is safe.
type OutcomeUnknownError struct {
	// EventIDs are the ids the append carried; retry with these ids.
	EventIDs []string
	// Attempts is the number of attempts made.
	Attempts int
	// Err is the last attempt's error.
	Err error
}

// Error says that the outcome is unknown and why.
func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("outcome unknown after %d attempt(s); retrying with the same event ids is safe: %v", e.Attempts, e.Err)
}

// Is reports whether target is ErrOutcomeUnknown.
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

// Unwrap returns the last attempt's error.
func (e *OutcomeUnknownError) Unwrap() error { return e.Err }

// decodeError turns the error of one gRPC call to addr into the client's error types. It is the
// one place where status codes and details are decoded. Non-status errors are returned as they
// are.
func decodeError(err error, addr string) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	se := &StatusError{Code: st.Code(), Message: st.Message(), Addr: addr, st: st}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			se.Reason, se.Metadata = info.GetReason(), info.GetMetadata()
			break
		}
	}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *cairnpb.WrongExpectedRevision:
			if len(d.GetViolations()) == 0 {
				continue
			}
			e := &WrongExpectedRevisionError{status: se, Violations: make([]Violation, len(d.GetViolations()))}
			for i, v := range d.GetViolations() {
				e.Violations[i] = Violation{
					Stream:         v.GetStream(),
					Expected:       expectedFromPB(v.GetExpected()),
					ActualRevision: v.GetActualRevision(),
					StreamExists:   v.GetStreamExists(),
					Tombstoned:     v.GetTombstoned(),
					Deleted:        v.GetDeleted(),
					Metadata:       v.GetMetadata(),
				}
			}
			return e
		case *cairnpb.EventIdConflict:
			return &EventIDConflictError{Stream: d.GetStream(), EventID: d.GetEventId(), Reason: d.GetReason(), status: se}
		case *cairnpb.NotLeader:
			return &NotLeaderError{LeaderID: d.GetLeaderId(), LeaderAddr: d.GetLeaderAddress(), status: se}
		case *cairnpb.NotCaughtUp:
			return &NotCaughtUpError{
				NodeID:        d.GetNodeId(),
				AppliedIndex:  d.GetAppliedIndex(),
				RequiredIndex: d.GetRequiredIndex(),
				LastContact:   durationFromPB(d.GetLastContact()),
				MaxStaleness:  durationFromPB(d.GetMaxStaleness()),
				TooStale:      se.Reason == reasonTooStale,
				status:        se,
			}
		case *cairnpb.LimitExceeded:
			return &LimitError{Limit: d.GetLimit(), Max: d.GetMax(), Actual: d.GetActual(), Field: se.Metadata["field"], status: se}
		case *errdetails.BadRequest:
			e := &InvalidArgumentError{status: se}
			for _, v := range d.GetFieldViolations() {
				e.Violations = append(e.Violations, FieldViolation{Field: v.GetField(), Reason: v.GetReason(), Description: v.GetDescription()})
			}
			if len(e.Violations) > 0 {
				e.Field, e.Reason, e.Description = e.Violations[0].Field, e.Violations[0].Reason, e.Violations[0].Description
			}
			return e
		case *errdetails.ResourceInfo:
			if d.GetResourceType() == "stream" && (se.Code == codes.NotFound || se.Code == codes.FailedPrecondition) {
				return &StreamNotFoundError{Stream: d.GetResourceName(), Tombstoned: se.Code == codes.FailedPrecondition, status: se}
			}
		}
	}
	return se
}

// invalidArg is the error of a request the client refuses before sending it; it matches
// ErrInvalidArgument and carries an *InvalidArgumentError, as the server's would.
func invalidArg(field, reason, description string) error {
	st := status.New(codes.InvalidArgument, "invalid argument: "+field+": "+description)
	se := &StatusError{Code: codes.InvalidArgument, Reason: reasonInvalidArgument, Message: st.Message(), st: st}
	v := FieldViolation{Field: field, Reason: reason, Description: description}
	return &InvalidArgumentError{Field: field, Reason: reason, Description: description, Violations: []FieldViolation{v}, status: se}
}
