package api

import (
	"context"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// Node is what the API service needs from the cluster layer. It is declared here, where it is
// used, so the service can be tested with a fake and never touches *raft.Raft.
type Node interface {
	// ID is this node's id.
	ID() string
	// Propose replicates one request through raft and returns its result once the entry is
	// committed and applied. It fails with an error wrapping cluster.ErrNotLeader (as a
	// *cluster.NotLeaderError) on a follower, cluster.ErrNoLeader, cluster.ErrOutcomeUnknown when
	// leadership was lost after proposing, or the context's error. The request's own outcome
	// (wrong expected revision, conflict, ...) is in the Result's Err.
	Propose(ctx context.Context, req *fsmpb.Request) (fsm.Result, error)
	// ReadFence returns once this node's local state may serve a read with the given options, or
	// an error: *cluster.NotLeaderError for Linearizable and Leader reads on a follower,
	// *cluster.StalenessError for Stale reads that cannot be served here.
	ReadFence(ctx context.Context, opts cluster.ReadOptions) (cluster.ReadInfo, error)
	// Store is the local state machine, read after ReadFence.
	Store() Store
	// Leader returns the current leader's id and gRPC address, empty when unknown.
	Leader() (id, grpcAddr string)
	// Status reports this node's view of the cluster.
	Status(ctx context.Context, withMemberLag bool) (*cairnpb.StatusResponse, error)
}

// Store is the read side of the local state machine (*fsm.FSM implements it). Returned records
// are owned by the caller.
type Store interface {
	// ReadStream returns up to limit visible events of a stream from revision from (inclusive;
	// fsm.Start and fsm.End are sentinels) in direction dir, skipping the prefix its lifecycle
	// hides. It fails with fsm.ErrStreamNotFound for a stream without events or soft-deleted and
	// fsm.ErrStreamTombstoned for a tombstoned one.
	ReadStream(name string, from uint64, dir fsm.Direction, limit int) ([]fsm.RecordedEvent, error)
	// ReadAll returns up to limit records of the global log from position from (inclusive;
	// sentinels as above), every record included, hidden or not (lifecycle records have Kind
	// fsm.KindTombstone, fsm.KindSoftDelete or fsm.KindMetadata).
	ReadAll(from uint64, dir fsm.Direction, limit int) ([]fsm.RecordedEvent, error)
	// Hidden returns a predicate saying whether a record from ReadAll is hidden at Unix-ns time
	// now (an event its stream's lifecycle hides, or a metadata record). $all reads and
	// subscriptions skip such records but count them as scanned.
	Hidden(now int64) func(*fsm.RecordedEvent) bool
	// StreamMetadata returns the stream's latest metadata (Exists false when none was set).
	StreamMetadata(ctx context.Context, name string) (fsm.StreamMetadata, error)
	// StreamRevisionAtTime returns the stream's first revision committed at or after ts (Unix
	// nanoseconds), or its next revision when there is none.
	StreamRevisionAtTime(name string, ts int64) uint64
	// Stream returns the stream's current state.
	Stream(name string) fsm.StreamInfo
	// AppliedIndex returns the raft index up to which this node's state is applied and readable.
	AppliedIndex() uint64
	// PositionAtTime returns the first readable position whose commit time is at or after ts
	// (Unix nanoseconds), or one past the last readable position when there is none.
	PositionAtTime(ts int64) uint64
	// Watch returns the applied watermark with a channel closed when it next moves (a batch
	// applied, a snapshot restored, the store closed); subscriptions follow the log with it. It
	// fails with fsm.ErrClosed once the store is closed.
	Watch() (fsm.Watermark, error)
	// Digest hashes every record up to position upTo (0: all) canonically, so replicas that
	// applied the same log agree; it returns the last position covered.
	Digest(upTo uint64) (last uint64, sha256 string, err error)
	// Compactions counts the compactions applied so far; reads of records before a compaction
	// may change when it is applied (its events are then redacted), so caches key on it.
	Compactions() uint64
}
