package client

import (
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cairndb/cairn/api/cairnpb"
)

// expectedKind is the form of an Expected condition. The zero value is "any".
type expectedKind uint8

const (
	expectAny expectedKind = iota
	expectNoStream
	expectStreamExists
	expectExact
)

// Expected is the optimistic-concurrency condition of an append (DESIGN §2). Build one with
// Any, NoStream, StreamExists or Exact; the zero value is Any. The condition is checked inside
// the replicated state machine, so every node decides the same.
type Expected struct {
	kind     expectedKind
	revision uint64
}

// Any accepts any stream state except a tombstoned stream.
func Any() Expected { return Expected{kind: expectAny} }

// NoStream requires that the stream has no events.
func NoStream() Expected { return Expected{kind: expectNoStream} }

// StreamExists requires that the stream has at least one event.
func StreamExists() Expected { return Expected{kind: expectStreamExists} }

// Exact requires that the stream's last event has revision rev (revisions are 0-based, so
// Exact(0) means "the stream has exactly one event").
func Exact(rev uint64) Expected { return Expected{kind: expectExact, revision: rev} }

// IsAny reports whether e is the Any condition.
func (e Expected) IsAny() bool { return e.kind == expectAny }

// IsNoStream reports whether e is the NoStream condition.
func (e Expected) IsNoStream() bool { return e.kind == expectNoStream }

// IsStreamExists reports whether e is the StreamExists condition.
func (e Expected) IsStreamExists() bool { return e.kind == expectStreamExists }

// Revision returns the revision of an Exact condition, and false for the other forms.
func (e Expected) Revision() (uint64, bool) { return e.revision, e.kind == expectExact }

// String returns "any", "no-stream", "exists" or the decimal revision of an Exact condition
// (the forms cairnctl's --expected flag accepts).
func (e Expected) String() string {
	switch e.kind {
	case expectNoStream:
		return "no-stream"
	case expectStreamExists:
		return "exists"
	case expectExact:
		return strconv.FormatUint(e.revision, 10)
	}
	return "any"
}

func (e Expected) toPB() *cairnpb.ExpectedRevision {
	switch e.kind {
	case expectNoStream:
		return &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_NO_STREAM}
	case expectStreamExists:
		return &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_STREAM_EXISTS}
	case expectExact:
		return &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_EXACT, Revision: e.revision}
	}
	return &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_ANY}
}

func expectedFromPB(p *cairnpb.ExpectedRevision) Expected {
	switch p.GetKind() {
	case cairnpb.ExpectedRevision_KIND_NO_STREAM:
		return NoStream()
	case cairnpb.ExpectedRevision_KIND_STREAM_EXISTS:
		return StreamExists()
	case cairnpb.ExpectedRevision_KIND_EXACT:
		return Exact(p.GetRevision())
	}
	return Any()
}

// EventData is an event to append.
type EventData struct {
	// ID is the event's UUID in canonical text form. When empty, the client fills in a random
	// (version 4) UUID before the first attempt, so that every retry of the append carries the
	// same id and is recognised by the server as the same append (DESIGN §2). Set it yourself
	// when the append may be retried by a different process.
	ID string
	// Type is the event type; required. Types starting with '$' are reserved.
	Type string
	// ContentType describes Data, e.g. "application/json". Optional.
	ContentType string
	// Data is the event's payload.
	Data []byte
	// Metadata is optional user metadata.
	Metadata []byte
	// Tags are optional strings that ReadAll can filter on.
	Tags []string
}

// AppendResult describes a committed append or, when Idempotent, the original append that
// stored the same events earlier.
type AppendResult struct {
	// FirstRevision and LastRevision are the stream revisions of the first and last event.
	FirstRevision, LastRevision uint64
	// FirstPosition and LastPosition are the $all positions of the first and last event.
	FirstPosition, LastPosition uint64
	// LogIndex is the raft index of the committing entry: the read-your-writes token.
	LogIndex uint64
	// CommitTime is the leader-assigned commit timestamp.
	CommitTime time.Time
	// Idempotent is true when every event was already stored: nothing was written, and the
	// fields describe the original append.
	Idempotent bool
	// EventIDs are the ids the events were appended with, in request order (including the ids
	// the client filled in).
	EventIDs []string
}

// StreamAppend is one stream's part of an AppendMulti. A part without events is a check-only
// condition.
type StreamAppend struct {
	// Stream is the stream name.
	Stream string
	// Expected is the condition on the stream; the zero value is Any.
	Expected Expected
	// Events are the events to append to Stream; ids are filled in as for Append.
	Events []EventData
}

// StreamAppendResult is one part's outcome in an AppendMultiResult.
type StreamAppendResult struct {
	// Stream is the part's stream.
	Stream string
	// Count is the number of events the part wrote (0 for a check-only part).
	Count int
	// FirstRevision, LastRevision, FirstPosition and LastPosition are as in AppendResult. For a
	// check-only part the revisions are the stream's current revision.
	FirstRevision, LastRevision, FirstPosition, LastPosition uint64
	// EventIDs are the ids the part's events were appended with.
	EventIDs []string
}

// AppendMultiResult describes a committed multi-stream append.
type AppendMultiResult struct {
	// Results has one entry per part, in request order.
	Results []StreamAppendResult
	// LogIndex, CommitTime and Idempotent are as in AppendResult.
	LogIndex   uint64
	CommitTime time.Time
	Idempotent bool
}

// Direction is the direction of a read. The zero value is Forward.
type Direction int

const (
	// Forward reads towards higher revisions or positions.
	Forward Direction = iota
	// Backward reads towards lower revisions or positions.
	Backward
)

// String returns "forward" or "backward".
func (d Direction) String() string {
	if d == Backward {
		return "backward"
	}
	return "forward"
}

func (d Direction) toPB() cairnpb.Direction {
	if d == Backward {
		return cairnpb.Direction_DIRECTION_BACKWARD
	}
	return cairnpb.Direction_DIRECTION_FORWARD
}

// Consistency is the consistency of a read (DESIGN §3). The zero value is Linearizable.
type Consistency int

const (
	// Linearizable reads are served by the leader after it confirmed its leadership with a
	// quorum after the request arrived. The default.
	Linearizable Consistency = iota
	// Leader reads are served from the leader's local state without a quorum round; they may be
	// stale for a moment during a partition.
	Leader
	// Stale reads are served from any node's local state. The client sends its read-your-writes
	// token as the minimum log index, so they see the client's own writes and never go back in
	// time (see WithReadYourWrites).
	Stale
)

// String returns "linearizable", "leader" or "stale".
func (c Consistency) String() string {
	switch c {
	case Leader:
		return "leader"
	case Stale:
		return "stale"
	}
	return "linearizable"
}

func (c Consistency) toPB() cairnpb.Consistency {
	switch c {
	case Leader:
		return cairnpb.Consistency_CONSISTENCY_LEADER
	case Stale:
		return cairnpb.Consistency_CONSISTENCY_STALE
	}
	return cairnpb.Consistency_CONSISTENCY_LINEARIZABLE
}

// ReadOptions says what Read returns and how consistent it must be. The zero value reads a
// stream forwards from revision 0, at most the server's default number of events, linearizably.
type ReadOptions struct {
	// From is the first revision to return (inclusive). Ignored when FromEnd is set.
	From uint64
	// FromEnd starts at the stream's last event.
	FromEnd bool
	// FromTime, when not zero, starts a forward read at the stream's first event committed at or
	// after it (binary search over commit times on the server); it overrides From.
	FromTime time.Time
	// StopAtPosition and StopAtTime, when not zero, read the stream "as of" that point: only
	// events at or below the position of $all and committed at or before the time.
	StopAtPosition uint64
	StopAtTime     time.Time
	// Direction is the read direction.
	Direction Direction
	// Limit is the maximum number of events; 0 means the server default (100). The server caps
	// it (10,000 by default); EndOfStream says whether more events follow.
	Limit int
	// Consistency is the read's consistency level.
	Consistency Consistency
	// MinLogIndex (Stale only) makes the serving node wait, up to the call's deadline, until it
	// has applied this log index. The client sends the larger of it and its read-your-writes
	// token.
	MinLogIndex uint64
	// MaxStaleness (Stale only) refuses the read on a node that has not heard from a leader
	// within this duration (ErrNotCaughtUp). Zero means no bound.
	MaxStaleness time.Duration
}

// Filter selects events of ReadAll. Within a field any entry may match; every non-empty field
// must match. Entries must not be empty strings.
type Filter struct {
	// StreamPrefixes selects events whose stream name starts with one of the prefixes.
	StreamPrefixes []string
	// EventTypes selects events whose type is one of these.
	EventTypes []string
	// EventTypePrefixes selects events whose type starts with one of the prefixes.
	EventTypePrefixes []string
	// Tags selects events that carry every one of these tags.
	Tags []string
}

func (f Filter) toPB() *cairnpb.Filter {
	if len(f.StreamPrefixes)+len(f.EventTypes)+len(f.EventTypePrefixes)+len(f.Tags) == 0 {
		return nil
	}
	return &cairnpb.Filter{
		StreamPrefixes:    f.StreamPrefixes,
		EventTypes:        f.EventTypes,
		EventTypePrefixes: f.EventTypePrefixes,
		Tags:              f.Tags,
	}
}

// ReadAllOptions says what ReadAll returns and how consistent it must be. The zero value reads
// $all forwards from the start, at most the server's default number of events, linearizably.
type ReadAllOptions struct {
	// From is the first position to return (inclusive); positions start at 1, and 0 means the
	// start. Ignored when FromEnd is set.
	From uint64
	// FromEnd starts at the last event of the log.
	FromEnd bool
	// FromTime, StopAtPosition and StopAtTime are as in ReadOptions, over $all.
	FromTime       time.Time
	StopAtPosition uint64
	StopAtTime     time.Time
	// Direction is the read direction.
	Direction Direction
	// Limit is the maximum number of events; 0 means the server default.
	Limit int
	// Filter selects events; the zero value selects all.
	Filter Filter
	// Consistency, MinLogIndex and MaxStaleness are as in ReadOptions.
	Consistency  Consistency
	MinLogIndex  uint64
	MaxStaleness time.Duration
}

// RecordedEvent is a stored event.
type RecordedEvent struct {
	// ID is the event's UUID ("" for a tombstone record in $all).
	ID string
	// Stream is the event's stream.
	Stream string
	// Revision is the event's 0-based position in its stream.
	Revision uint64
	// Position is the event's 1-based position in $all.
	Position uint64
	// LogIndex is the raft index of the entry that committed the event.
	LogIndex uint64
	// Type, ContentType, Data, Metadata and Tags are as appended.
	Type        string
	ContentType string
	Data        []byte
	Metadata    []byte
	Tags        []string
	// CommitTime is the leader-assigned commit timestamp.
	CommitTime time.Time
}

// ServedBy says which node served a read and how fresh its state was.
type ServedBy struct {
	// NodeID is the serving node's id.
	NodeID string
	// AppliedIndex is the log index the node had applied when it served the read.
	AppliedIndex uint64
	// LastContact is the time since the node last heard from a leader; zero on the leader.
	LastContact time.Duration
	// Leader is true when the leader served the read.
	Leader bool
}

// ReadResult is the outcome of Read.
type ReadResult struct {
	// Events are the events read, in the read's direction.
	Events []RecordedEvent
	// ServedBy describes the serving node.
	ServedBy ServedBy
	// EndOfStream is true when the read stopped at the end (or, backwards, the beginning) of
	// the stream rather than at the limit.
	EndOfStream bool
}

// ReadAllResult is the outcome of ReadAll.
type ReadAllResult struct {
	// Events are the events read, in the read's direction.
	Events []RecordedEvent
	// ServedBy describes the serving node.
	ServedBy ServedBy
	// Checkpoint is the position scanned so far: continue a read from Checkpoint+1 (forwards)
	// or Checkpoint-1 (backwards). A filtered read may return few or no events with a
	// Checkpoint that still advanced.
	Checkpoint uint64
	// EndOfLog is true when the read reached the end (or, backwards, the beginning) of $all.
	EndOfLog bool
}

// Member is one server of the raft configuration, as a node sees it.
type Member struct {
	// ID is the member's node id.
	ID string
	// RaftAddress and GRPCAddress are the member's advertised addresses.
	RaftAddress, GRPCAddress string
	// Suffrage is "voter" or "nonvoter".
	Suffrage string
	// Role is "leader", "follower", "candidate", or "unknown" when the member was not asked or
	// could not be asked.
	Role string
	// AppliedIndex is the member's applied log index, when known.
	AppliedIndex uint64
	// Lag is the leader's commit index minus the member's applied index, when known.
	Lag uint64
	// Gossip is the member's gossip state: "alive", "suspect", "dead", "left" or "unknown".
	Gossip string
}

// Status is one node's view of the cluster.
type Status struct {
	// Addr is the address the status was asked at.
	Addr string
	// NodeID and Role ("leader", "follower", "candidate", ...) describe the node.
	NodeID, Role string
	// LeaderID and LeaderAddress name the leader the node knows of ("" when none).
	LeaderID, LeaderAddress string
	// Term is the node's raft term.
	Term uint64
	// CommitIndex, AppliedIndex and LastLogIndex are the node's raft indexes.
	CommitIndex, AppliedIndex, LastLogIndex uint64
	// LastContact is the time since the node last heard from a leader; zero on the leader and
	// when the node never heard from one (see HasContact).
	LastContact time.Duration
	// HasContact is false when the node reported no leader contact (it is the leader, or has
	// never heard from one).
	HasContact bool
	// Members are the servers of the raft configuration.
	Members []Member
	// Version is the node's software version.
	Version string
	// Reclaim is the node's space reclaim state (compaction's background pass).
	Reclaim ReclaimStatus
}

// ReclaimStatus is a node's space reclaim state: after a compaction is applied, every node
// rewrites its sealed segments without the events it made gone, in the background.
type ReclaimStatus struct {
	// Running reports a pass in progress.
	Running bool
	// Compactions is the number of compactions in the node's log when the last pass started.
	Compactions uint64
	// CoveredIndex: every compaction at or below this raft index has been reclaimed on the node.
	CoveredIndex uint64
	// Last is the last completed pass; Total sums the passes since the node started.
	Last, Total ReclaimStats
	// LastError says why the last pass ended early; empty if it completed.
	LastError string
}

func timeFromPB(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

func durationFromPB(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func servedByFromPB(s *cairnpb.ServedBy) ServedBy {
	return ServedBy{
		NodeID:       s.GetNodeId(),
		AppliedIndex: s.GetAppliedIndex(),
		LastContact:  durationFromPB(s.GetLastContact()),
		Leader:       s.GetLeader(),
	}
}

func eventsFromPB(evs []*cairnpb.RecordedEvent) []RecordedEvent {
	out := make([]RecordedEvent, len(evs))
	for i, e := range evs {
		out[i] = RecordedEvent{
			ID:          e.GetId(),
			Stream:      e.GetStream(),
			Revision:    e.GetRevision(),
			Position:    e.GetPosition(),
			LogIndex:    e.GetLogIndex(),
			Type:        e.GetType(),
			ContentType: e.GetContentType(),
			Data:        e.GetData(),
			Metadata:    e.GetMetadata(),
			Tags:        e.GetTags(),
			CommitTime:  timeFromPB(e.GetCommitTime()),
		}
	}
	return out
}

func statusFromPB(addr string, s *cairnpb.StatusResponse) *Status {
	out := &Status{
		Addr:          addr,
		NodeID:        s.GetNodeId(),
		Role:          s.GetRole(),
		LeaderID:      s.GetLeaderId(),
		LeaderAddress: s.GetLeaderAddress(),
		Term:          s.GetTerm(),
		CommitIndex:   s.GetCommitIndex(),
		AppliedIndex:  s.GetAppliedIndex(),
		LastLogIndex:  s.GetLastLogIndex(),
		LastContact:   durationFromPB(s.GetLastContact()),
		HasContact:    s.GetLastContact() != nil,
		Version:       s.GetVersion(),
		Members:       make([]Member, len(s.GetMembers())),
	}
	if r := s.GetReclaim(); r != nil {
		out.Reclaim = ReclaimStatus{Running: r.GetRunning(), Compactions: r.GetCompactions(),
			CoveredIndex: r.GetCoveredIndex(), Last: reclaimFromPB(r.GetLast()), Total: reclaimFromPB(r.GetTotal()),
			LastError: r.GetLastError()}
	}
	for i, m := range s.GetMembers() {
		out.Members[i] = Member{
			ID:           m.GetId(),
			RaftAddress:  m.GetRaftAddress(),
			GRPCAddress:  m.GetGrpcAddress(),
			Suffrage:     m.GetSuffrage(),
			Role:         m.GetRole(),
			AppliedIndex: m.GetAppliedIndex(),
			Lag:          m.GetLag(),
			Gossip:       m.GetGossip(),
		}
	}
	return out
}

// limitToPB converts a read limit; negative limits are refused by the caller.
func limitToPB(limit int) (uint32, error) {
	if limit < 0 {
		return 0, invalidArg("limit", "NEGATIVE", fmt.Sprintf("limit %d is negative", limit))
	}
	if limit > int(^uint32(0)>>1) {
		return ^uint32(0) >> 1, nil
	}
	return uint32(limit), nil
}

// timestampOrNil converts a time for a request; the zero time is "unset".
func timestampOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
