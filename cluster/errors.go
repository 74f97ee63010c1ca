package cluster

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors of the cluster layer. They are defined once, here, and mapped to gRPC status
// codes in one place in package api.
var (
	// ErrNotLeader: the operation needs the leader and this node is not it. Returned wrapped in a
	// *NotLeaderError that names the leader when one is known.
	ErrNotLeader = errors.New("not leader")
	// ErrNoLeader: no leader is known (election in progress or quorum lost).
	ErrNoLeader = errors.New("no leader")
	// ErrOutcomeUnknown: the request was proposed but leadership was lost before its outcome was
	// known. It may or may not be committed; retrying with the same event ids is safe.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrNotCaughtUp: a STALE read's min_log_index was not applied on this node before the
	// deadline. Wrapped in a *StalenessError.
	ErrNotCaughtUp = errors.New("not caught up to the requested log index")
	// ErrTooStale: this node has not heard from a leader within a STALE read's max_staleness.
	// Wrapped in a *StalenessError.
	ErrTooStale = errors.New("staler than the requested max staleness")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("node shutting down")
	// ErrGossipPlaintext: the gossip keyring cannot be reloaded because the node started
	// without a gossip key file (memberlist decides on encryption at start).
	ErrGossipPlaintext = errors.New("gossip runs without encryption: no key file at start")
	// ErrGossipKeyNotInstalled: a gossip key was to become primary before being installed.
	ErrGossipKeyNotInstalled = errors.New("gossip key is not installed on this node: install it first")
	// ErrGossipKeyFile: the gossip key file could not be written, so the keyring was not
	// changed (a restart would otherwise undo the change).
	ErrGossipKeyFile = errors.New("cannot write the gossip key file")
)

// NotLeaderError details ErrNotLeader.
type NotLeaderError struct {
	// LeaderID and LeaderAddr (the leader's gRPC address) are empty when no leader is known.
	LeaderID, LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "not leader; no leader known"
	}
	return fmt.Sprintf("not leader; leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Unwrap returns ErrNotLeader.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// StalenessError details ErrNotCaughtUp and ErrTooStale.
type StalenessError struct {
	Err           error // ErrNotCaughtUp or ErrTooStale
	NodeID        string
	AppliedIndex  uint64
	RequiredIndex uint64
	LastContact   time.Duration
	MaxStaleness  time.Duration
}

func (e *StalenessError) Error() string {
	return fmt.Sprintf("%v: node %s applied %d (required %d), last leader contact %v ago (max %v)",
		e.Err, e.NodeID, e.AppliedIndex, e.RequiredIndex, e.LastContact, e.MaxStaleness)
}

// Unwrap returns the sentinel.
func (e *StalenessError) Unwrap() error { return e.Err }
