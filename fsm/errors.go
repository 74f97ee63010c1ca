package fsm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cairndb/cairn/fsm/fsmpb"
)

// Sentinel errors. They are defined here, where they arise, and mapped to gRPC status codes at the
// api edge. Typed errors below wrap them, so callers test with errors.Is and read details with
// errors.As.
var (
	// ErrWrongExpectedRevision: an append's or tombstone's expected revision did not hold.
	ErrWrongExpectedRevision = errors.New("wrong expected revision")
	// ErrStreamTombstoned: the stream was tombstoned and can never be written again.
	ErrStreamTombstoned = errors.New("stream tombstoned")
	// ErrStreamNotFound: a read or soft delete named a stream that has no events, or a read named
	// a soft-deleted one.
	ErrStreamNotFound = errors.New("stream not found")
	// ErrEventIDConflict: some, but not all, of an append's event ids are already stored (a
	// partial overlap), or they are stored in another stream or another order. Retrying an append
	// whose events are all stored, as they were appended, is not a conflict: it returns the
	// original result.
	ErrEventIDConflict = errors.New("event id conflict")
	// ErrInvalidCommand: a command could not be decoded or breaks a rule the api layer should have
	// enforced (empty stream name, malformed id, record too large). The FSM rejects it the same way
	// on every node and writes nothing.
	ErrInvalidCommand = errors.New("invalid command")
	// ErrClosed: the FSM was closed.
	ErrClosed = errors.New("fsm closed")
)

// Violation is one failed condition of an append or tombstone.
type Violation struct {
	// Stream is the stream whose condition failed.
	Stream string
	// Expected is the condition the request carried.
	Expected Expected
	// ActualRevision is the revision of the stream's last event; meaningful only when
	// StreamExists is true.
	ActualRevision uint64
	// StreamExists reports whether the stream had at least one event.
	StreamExists bool
	// Tombstoned reports that the stream is tombstoned (the violation is then ErrStreamTombstoned).
	Tombstoned bool
	// Deleted reports that the stream is soft-deleted (ActualRevision is its last revision).
	Deleted bool
	// Metadata reports a condition on the stream's metadata revision (SetMetadata):
	// ActualRevision is the latest metadata revision and StreamExists says whether any is set.
	Metadata bool
}

// Err returns the sentinel that describes the violation.
func (v Violation) Err() error {
	if v.Tombstoned {
		return ErrStreamTombstoned
	}
	return ErrWrongExpectedRevision
}

func (v Violation) String() string {
	if v.Tombstoned {
		return fmt.Sprintf("stream %q is tombstoned", v.Stream)
	}
	if v.Metadata {
		actual := "no metadata"
		if v.StreamExists {
			actual = fmt.Sprintf("metadata revision %d", v.ActualRevision)
		}
		return fmt.Sprintf("stream %q: expected metadata %s, actual %s", v.Stream, v.Expected, actual)
	}
	actual := "no stream"
	switch {
	case v.Deleted:
		actual = fmt.Sprintf("soft-deleted at revision %d", v.ActualRevision)
	case v.StreamExists:
		actual = fmt.Sprintf("revision %d", v.ActualRevision)
	}
	return fmt.Sprintf("stream %q: expected %s, actual %s", v.Stream, v.Expected, actual)
}

// ConditionError reports every violated condition of one request at once (DESIGN §2: AppendMulti
// reports all of them). errors.Is matches ErrWrongExpectedRevision and/or ErrStreamTombstoned,
// depending on the violations it holds.
type ConditionError struct {
	Violations []Violation
}

func (e *ConditionError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.String()
	}
	return "condition failed: " + strings.Join(parts, "; ")
}

// Is reports whether any violation is target.
func (e *ConditionError) Is(target error) bool {
	for _, v := range e.Violations {
		if v.Err() == target {
			return true
		}
	}
	return false
}

// EventIDConflictError details an ErrEventIDConflict.
type EventIDConflictError struct {
	// Stream is the stream the request meant to append to.
	Stream string
	// ID is the first conflicting event id.
	ID [16]byte
	// Reason says why the ids do not match an earlier append.
	Reason string
}

func (e *EventIDConflictError) Error() string {
	return fmt.Sprintf("event id conflict on stream %q, id %s: %s", e.Stream, formatUUID(e.ID), e.Reason)
}

// Unwrap returns ErrEventIDConflict.
func (e *EventIDConflictError) Unwrap() error { return ErrEventIDConflict }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidCommand}, args...)...)
}

// Expected is the decoded form of an expected-revision condition.
type Expected struct {
	Kind     fsmpb.ExpectedRevision_Kind
	Revision uint64
}

func (e Expected) String() string {
	switch e.Kind {
	case fsmpb.ExpectedRevision_KIND_ANY:
		return "any"
	case fsmpb.ExpectedRevision_KIND_NO_STREAM:
		return "no stream"
	case fsmpb.ExpectedRevision_KIND_STREAM_EXISTS:
		return "stream exists"
	case fsmpb.ExpectedRevision_KIND_EXACT:
		return fmt.Sprintf("revision %d", e.Revision)
	default:
		return "unspecified"
	}
}

func formatUUID(id [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", id[0:4], id[4:6], id[6:8], id[8:10], id[10:16])
}
