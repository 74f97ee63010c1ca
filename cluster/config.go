package cluster

import (
	"errors"
	"log/slog"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// Config configures a Node. Every node of a cluster runs with the same Join seeds and
// BootstrapExpect; first boot, restart and scale-up behave the same (DESIGN §9).
type Config struct {
	// NodeID is this node's stable, unique id. A data dir belongs to one node id.
	NodeID string
	// DataDir holds raft/ (log and stable store, snapshots) and fsm/ (segment files).
	DataDir string

	// RaftBind is the TCP address raft listens on ("127.0.0.1:0" picks a port).
	RaftBind string
	// RaftAdvertise is the address other nodes dial; RaftBind's when empty.
	RaftAdvertise string
	// GRPCAdvertise is this node's client-facing gRPC address, gossiped so that followers can
	// forward to the leader and clients can be redirected.
	GRPCAdvertise string
	// GossipBind is the memberlist address ("127.0.0.1:0" picks a port).
	GossipBind string
	// GossipAdvertise is the memberlist address other nodes use; GossipBind's when empty.
	GossipAdvertise string
	// Join lists gossip addresses of other nodes to join through; any one reachable is enough.
	Join []string
	// BootstrapExpect, when > 0, makes the first N voters that see each other bootstrap one
	// cluster together. 0 means never bootstrap: wait to be added by an existing leader.
	BootstrapExpect int
	// NonVoter makes this node a read replica: it is added as a non-voter and never promoted.
	NonVoter bool

	// LeaveOnClose makes a graceful Close remove this node from the raft configuration (after
	// handing over leadership), for nodes that leave for good, e.g. when scaling down. Off by
	// default: a node that restarts (rolling upgrade) must stay a member.
	LeaveOnClose bool

	// Dial opens raft connections; nil means plain TCP. The seam for fault injection; with TLS
	// the handshake runs over the connection it returns.
	Dial DialFunc

	// TLS, when set, puts raft and this node's gRPC calls to other members (status, promotion,
	// leave) under mutual TLS 1.3: peers must present a node certificate of the cluster CA that
	// names the same cluster (internal/tlsutil). The leader also adds a gossip member to raft
	// only after that member answered over mutual TLS under its own id. Nil means plaintext
	// (development only: cairnd requires --dev-insecure for that).
	TLS *tlsutil.Loader
	// GossipKeyFile, when set, encrypts and authenticates memberlist traffic (AES-GCM) with the
	// keyring it holds (tlsutil.LoadGossipKeys: first key primary); ReloadGossipKeys re-reads
	// it. Empty means plaintext gossip.
	GossipKeyFile string

	// HeartbeatTimeout and ElectionTimeout (default 1 s each); tests use ~100-300 ms.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// LeaderLeaseTimeout is raft's step-down timer (default 500 ms); never used as a read lease.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is the idle AppendEntries interval (default 50 ms).
	CommitTimeout time.Duration
	// SnapshotThreshold (default 8192) and SnapshotInterval (default 30 s) trigger snapshots;
	// TrailingLogs is derived: 1.25 × SnapshotThreshold (raft-lessons §1.7).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// SnapshotBytes triggers a snapshot once this many bytes of segment data were written since
	// the last one (default 256 MiB; negative disables): many large events can fill the disk and
	// the raft log long before SnapshotThreshold entries (rqlite's WAL-size trigger).
	SnapshotBytes int64
	// CompactInterval is the compaction policy: every interval the leader proposes a compaction
	// if some stream hides events no compaction made gone yet (space reclaim, fsm/compact.go).
	// 0 or negative disables the policy; compactions then happen only on request (Compact).
	CompactInterval time.Duration
	// MaxAppendEntries bounds entries per AppendEntries, per FSM batch and per group commit
	// (default 512).
	MaxAppendEntries int
	// MaxBatchRequests bounds how many client requests one raft entry carries (default 256);
	// MaxBatchBytes bounds its size (default 4 MiB).
	MaxBatchRequests int
	MaxBatchBytes    int
	// MaxInflightEntries bounds the raft entries of proposals that are in raft but not yet
	// answered (default 2). While the window is full, proposals queue and go out together in the
	// next entry: group commit. Every raft entry costs a log commit (two fdatasyncs through
	// raft-boltdb) on the leader and on each follower, in CPU as well as time, so fewer, larger
	// entries make each append cheaper; a lone proposal still goes out at once. See
	// docs/performance.md for the measurements behind the default.
	MaxInflightEntries int
	// ApplyTimeout bounds how long a proposal may wait to enter raft (default 10 s).
	ApplyTimeout time.Duration
	// MaxCatchUpWait bounds how long a STALE read waits for its min_log_index before answering
	// ErrNotCaughtUp (default 1 s); the caller's deadline bounds it too.
	MaxCatchUpWait time.Duration
	// PromoteAfter is how long a non-voter must be healthy and caught up before promotion
	// (default 5 s); MaxPromoteLag is how far behind the leader's commit index it may be (256).
	PromoteAfter  time.Duration
	MaxPromoteLag uint64

	// FSM configures the state machine; its Dir is set from DataDir.
	FSM fsm.Config
	// Version is gossiped and reported by Status.
	Version string
	// Logger receives the node's logs (raft's and memberlist's too); nil means slog.Default().
	Logger *slog.Logger
	// OnBatch, if set, is called for every raft entry the proposal batcher sends, with the
	// number of client requests it packs and its size in bytes (metrics). Keep it cheap.
	OnBatch func(requests, bytes int)
}

func (c Config) withDefaults() (Config, error) {
	if c.NodeID == "" {
		return c, errors.New("cluster: NodeID is required")
	}
	if c.DataDir == "" {
		return c, errors.New("cluster: DataDir is required")
	}
	if c.RaftBind == "" {
		return c, errors.New("cluster: RaftBind is required")
	}
	if c.GossipBind == "" {
		return c, errors.New("cluster: GossipBind is required")
	}
	if c.BootstrapExpect < 0 {
		return c, errors.New("cluster: BootstrapExpect must be >= 0")
	}
	if c.NonVoter && c.BootstrapExpect > 0 {
		return c, errors.New("cluster: a non-voter cannot take part in bootstrap (BootstrapExpect > 0)")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, time.Second)
	def(&c.ElectionTimeout, time.Second)
	def(&c.LeaderLeaseTimeout, 500*time.Millisecond)
	def(&c.CommitTimeout, 50*time.Millisecond)
	def(&c.SnapshotInterval, 30*time.Second)
	def(&c.ApplyTimeout, 10*time.Second)
	def(&c.PromoteAfter, 5*time.Second)
	def(&c.MaxCatchUpWait, time.Second)
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		c.LeaderLeaseTimeout = c.HeartbeatTimeout
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = 256 << 20
	}
	if c.MaxAppendEntries <= 0 {
		c.MaxAppendEntries = 512
	}
	if c.MaxBatchRequests <= 0 {
		c.MaxBatchRequests = 256
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 4 << 20
	}
	if c.MaxInflightEntries <= 0 {
		c.MaxInflightEntries = 2
	}
	if c.MaxPromoteLag == 0 {
		c.MaxPromoteLag = 256
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
