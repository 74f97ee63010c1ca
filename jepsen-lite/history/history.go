// Package history is jepsen-lite's record of a run: every client operation as an invoke record
// followed by its completion (ok, fail or info), and every fault the nemesis started and stopped,
// all timestamped with one monotonic clock. Checkers read nothing else, so a stored history can
// be checked again (`jepsen-lite check <dir>`).
//
// The vocabulary follows Jepsen: ok means the operation took effect (or a read returned this),
// fail means it definitely did not take effect, info means the outcome is unknown. A process is
// one logical client doing one operation at a time; after an info it is retired and a fresh
// process takes its place, so no process ever has two operations in flight.
package history

import (
	"fmt"
	"math"
	"sort"
)

// Type is the kind of an op record.
type Type string

// Record types.
const (
	// Invoke starts an operation.
	Invoke Type = "invoke"
	// OK completes an operation that took effect (writes) or returned a result (reads).
	OK Type = "ok"
	// Fail completes an operation that definitely did not take effect.
	Fail Type = "fail"
	// Info completes an operation whose outcome is unknown; nemesis records are info too.
	Info Type = "info"
)

// Operation names (Op.F).
const (
	// Append appends Events to Stream if Expected holds.
	Append = "append"
	// Read is a LINEARIZABLE read of a whole stream.
	Read = "read"
	// Head is a LINEARIZABLE read of a stream's last event (Version, LastID).
	Head = "head"
	// FollowerRead is a STALE read of a whole stream on one node, optionally with MinLogIndex.
	FollowerRead = "follower-read"
	// ReadAll is one page of the global log read by a tailer, from position From.
	ReadAll = "read-all"
	// Tail is a LINEARIZABLE read of the global log's last position (Version).
	Tail = "tail"
	// FinalRead is the LINEARIZABLE read of a whole stream after the final heal; it defines the
	// stream's truth for the checkers.
	FinalRead = "final-read"
	// Drain is the final read of the whole global log from one node (Records).
	Drain = "drain"
	// Digest is a node's Cluster.Digest after the final heal.
	Digest = "digest"
	// Nemesis marks a fault starting or stopping (Process is NemesisProcess).
	Nemesis = "nemesis"
)

// NemesisProcess is the Process of nemesis records.
const NemesisProcess = -1

// ExpectAny is the Expected value of an append without a condition.
const ExpectAny int64 = -1

// Never is the Return of an operation that never completed (or completed with info): for the
// linearizability checker it may take effect at any time after its call.
const Never int64 = math.MaxInt64

// Record is one event of the global log as a read returned it.
type Record struct {
	ID       uint64 `json:"id"`
	Stream   string `json:"s"`
	Revision uint64 `json:"r"`
	Position uint64 `json:"p"`
}

// Op is one line of history.jsonl. Invoke records carry an operation's inputs; completions
// repeat F, Node and Stream and carry its outputs. Zero fields are omitted in JSON, and zero is
// each field's natural "none" (a stream of length 0 reads as Version 0).
type Op struct {
	// Index is the record's position in the history, from 0.
	Index int `json:"i"`
	// Time is nanoseconds since the start of the run on the harness's monotonic clock.
	Time int64 `json:"t"`
	// Process is the logical client (NemesisProcess for faults).
	Process int  `json:"p"`
	Type    Type `json:"type"`
	// F is the operation name (Append, Read, ...).
	F string `json:"f"`
	// Node is the node the request was sent to.
	Node   string `json:"node,omitempty"`
	Stream string `json:"stream,omitempty"`

	// Expected is the stream length an append requires: ExpectAny, 0 for "no stream", n for
	// "the last event has revision n-1".
	Expected int64 `json:"expected,omitempty"`
	// Events are an append's event ids (invoke), or the ids a stream read returned, in revision
	// order from revision From (completion).
	Events []uint64 `json:"events,omitempty"`
	// Attempt counts retries of the same event ids: 0 is the first try.
	Attempt int `json:"attempt,omitempty"`
	// From is the first revision (stream reads) or position (read-all) requested.
	From uint64 `json:"from,omitempty"`
	// MinLogIndex is the read-your-writes token of a follower read.
	MinLogIndex uint64 `json:"min_log_index,omitempty"`

	// Version is a completion's stream length: after an ok append, the current one reported by
	// a conflict (-1 if unknown), the one a stream read or head saw; for Tail the last position.
	Version int64 `json:"version,omitempty"`
	// LastID is the id of the event at Version-1 (Head).
	LastID uint64 `json:"last_id,omitempty"`
	// Positions are an ok append's first and last global positions.
	Positions []uint64 `json:"pos,omitempty"`
	// LogIndex is an ok append's raft index (its read-your-writes token).
	LogIndex uint64 `json:"log_index,omitempty"`
	// Idempotent is set when the server answered an append with the original result of an
	// earlier attempt.
	Idempotent bool `json:"idempotent,omitempty"`
	// Records are what a read-all page or a drain returned.
	Records []Record `json:"records,omitempty"`
	// End reports that a read reached the end of the stream or log.
	End bool `json:"end,omitempty"`
	// ServedBy, Applied and LastContact describe the node that served a read.
	ServedBy    string `json:"served_by,omitempty"`
	Applied     uint64 `json:"applied,omitempty"`
	LastContact int64  `json:"last_contact_ns,omitempty"`
	// Digest is a Digest completion's hex SHA-256 (Version holds its last position, LogIndex
	// its applied index).
	Digest string `json:"digest,omitempty"`
	// Error is the reason of a fail or info: the Cairn ErrorInfo reason, or the gRPC code when
	// there is none ("transport: ..." for errors without a status).
	Error string `json:"error,omitempty"`

	// Fault, Action, FaultID and Targets describe a nemesis record: which fault, "start" or
	// "stop", the id pairing a start with its stop, and the nodes it touched.
	Fault   string   `json:"fault,omitempty"`
	Action  string   `json:"action,omitempty"`
	FaultID int      `json:"fault_id,omitempty"`
	Targets []string `json:"targets,omitempty"`
	// Value is free text (nemesis details, harness notes).
	Value string `json:"value,omitempty"`
	// Final marks operations of the final phase (after the last heal).
	Final bool `json:"final,omitempty"`
}

// Operation is an invoke paired with its completion.
type Operation struct {
	Inv  *Op
	Comp *Op // nil when the operation never completed
	// Type is the completion's type; Info when it never completed.
	Type Type
	// Call and Return are the invoke and completion times; Return is Never when there was no
	// completion.
	Call, Return int64
}

// F is the operation name (the invoke's).
func (o Operation) F() string { return o.Inv.F }

// Process is the logical client that ran the operation.
func (o Operation) Process() int { return o.Inv.Process }

// Node is the node the request was sent to.
func (o Operation) Node() string { return o.Inv.Node }

// Stream is the stream the operation was about ("" for $all operations).
func (o Operation) Stream() string { return o.Inv.Stream }

// Out returns the completion, or an empty Op when there is none, so outputs can be read without
// nil checks.
func (o Operation) Out() *Op {
	if o.Comp == nil {
		return &Op{}
	}
	return o.Comp
}

// Window is one fault, from its start to its stop.
type Window struct {
	ID      int      `json:"id"`
	Fault   string   `json:"fault"`
	Targets []string `json:"targets,omitempty"`
	Value   string   `json:"value,omitempty"`
	Start   int64    `json:"start_ns"`
	// Stop is the stop record's time, or the last record's time for a fault never stopped.
	Stop int64 `json:"stop_ns"`
}

// Pair pairs every client invoke with the next record of the same process. It returns the
// operations in invoke order and the fault windows in start order. An invoke whose process
// invokes again before completing, or a completion without an invoke, is an error: the harness
// never writes such histories.
func Pair(ops []Op) ([]Operation, []Window, error) {
	var out []Operation
	open := map[int]int{} // process -> index in out
	wins := map[int]*Window{}
	var winOrder []int
	var last int64
	for i := range ops {
		op := &ops[i]
		last = max(last, op.Time)
		if op.Process == NemesisProcess || op.F == Nemesis {
			w, ok := wins[op.FaultID]
			switch op.Action {
			case "start":
				if !ok {
					w = &Window{ID: op.FaultID, Fault: op.Fault, Targets: op.Targets, Value: op.Value, Start: op.Time, Stop: -1}
					wins[op.FaultID] = w
					winOrder = append(winOrder, op.FaultID)
				}
				if len(op.Targets) > 0 {
					w.Targets = op.Targets
				}
				if op.Value != "" {
					w.Value = op.Value
				}
			case "stop":
				if ok && w.Stop < 0 {
					w.Stop = op.Time
				}
			}
			continue
		}
		if op.Type == Invoke {
			if j, busy := open[op.Process]; busy {
				return nil, nil, fmt.Errorf("history: record %d: process %d invokes while op %d is open", op.Index, op.Process, out[j].Inv.Index)
			}
			open[op.Process] = len(out)
			out = append(out, Operation{Inv: op, Type: Info, Call: op.Time, Return: Never})
			continue
		}
		j, ok := open[op.Process]
		if !ok {
			return nil, nil, fmt.Errorf("history: record %d: %s completion of process %d without an invoke", op.Index, op.Type, op.Process)
		}
		delete(open, op.Process)
		out[j].Comp, out[j].Type = op, op.Type
		if op.Type != Info {
			out[j].Return = op.Time
		}
	}
	windows := make([]Window, 0, len(winOrder))
	for _, id := range winOrder {
		w := *wins[id]
		if w.Stop < 0 {
			w.Stop = last
		}
		windows = append(windows, w)
	}
	sort.SliceStable(windows, func(a, b int) bool { return windows[a].Start < windows[b].Start })
	return out, windows, nil
}

// Error reasons the harness records in Op.Error. The Cairn ones are the server's ErrorInfo
// reasons (api/errors.go; copied, not imported, so the harness does not link the server).
const (
	ReasonWrongExpectedRevision = "WRONG_EXPECTED_REVISION"
	ReasonStreamTombstoned      = "STREAM_TOMBSTONED"
	ReasonStreamNotFound        = "STREAM_NOT_FOUND"
	ReasonEventIDConflict       = "EVENT_ID_CONFLICT"
	ReasonInvalidArgument       = "INVALID_ARGUMENT"
	ReasonInvalidCommand        = "INVALID_COMMAND"
	ReasonLimitExceeded         = "LIMIT_EXCEEDED"
	ReasonNotLeader             = "NOT_LEADER"
	ReasonNoLeader              = "NO_LEADER"
	ReasonOutcomeUnknown        = "OUTCOME_UNKNOWN"
	ReasonNotCaughtUp           = "NOT_CAUGHT_UP"
	ReasonTooStale              = "TOO_STALE"
	ReasonShuttingDown          = "SHUTTING_DOWN"
	ReasonForwardFailed         = "FORWARD_FAILED"
	ReasonDeadlineExceeded      = "DEADLINE_EXCEEDED"
	ReasonCanceled              = "CANCELED"
	ReasonInternal              = "INTERNAL"
	// ReasonTransport prefixes errors that reached the client without a Cairn ErrorInfo
	// ("transport:Unavailable", "transport:DeadlineExceeded"): the request may or may not have
	// been processed.
	ReasonTransport = "transport:"
	// ReasonIncomplete marks a read that returned only part of what it asked for.
	ReasonIncomplete = "incomplete"
)
