package cluster

import "time"

// Consistency is the consistency level of a read (DESIGN §3).
type Consistency int

const (
	// Linearizable reads are served by the leader after it confirmed its leadership with a quorum
	// after the request arrived (read-index), once its state machine has applied the commit index
	// captured then. No lease shortcut.
	Linearizable Consistency = iota
	// Leader reads are served from the leader's local state without a quorum round; they may be
	// stale for a moment while a deposed leader has not noticed yet.
	Leader
	// Stale reads are served from any node's local state, optionally bounded by MinLogIndex and
	// MaxStaleness.
	Stale
)

func (c Consistency) String() string {
	switch c {
	case Linearizable:
		return "linearizable"
	case Leader:
		return "leader"
	case Stale:
		return "stale"
	}
	return "unknown"
}

// ReadOptions is a read's consistency request.
type ReadOptions struct {
	Consistency Consistency
	// MinLogIndex (Stale): wait, up to the context deadline, until this node applied this index.
	MinLogIndex uint64
	// MaxStaleness (Stale): refuse if this node has not heard from a leader within this duration.
	// Zero means no bound.
	MaxStaleness time.Duration
}

// ReadInfo says which node is serving a read and how fresh its state is.
type ReadInfo struct {
	NodeID       string
	AppliedIndex uint64
	// LastContact is the time since this node last heard from a leader; zero on the leader.
	LastContact time.Duration
	Leader      bool
}
