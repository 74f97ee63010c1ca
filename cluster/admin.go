package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Membership and maintenance operations for operators (cairnctl). Membership changes run on the
// leader: on a follower they fail with *NotLeaderError, which the api forwards. They never happen
// behind the operator's back except through the documented reconciler (gossip members are added
// as non-voters and promoted when caught up; voters are never removed automatically).

// ErrUnknownServer: the server id is not in the raft configuration.
var ErrUnknownServer = errors.New("server not in the raft configuration")

// ErrNothingToSnapshot: nothing was applied since the last snapshot.
var ErrNothingToSnapshot = errors.New("nothing new to snapshot since the last one")

// adminTimeout bounds one raft configuration change.
const adminTimeout = 10 * time.Second

func (n *Node) requireLeader() error {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	return nil
}

func (n *Node) server(id string) (raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Server{}, err
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return s, nil
		}
	}
	return raft.Server{}, fmt.Errorf("%w: %q", ErrUnknownServer, id)
}

func (n *Node) configChange(op, id string, f raft.IndexFuture) error {
	if err := f.Error(); err != nil {
		n.log.Warn("membership change failed", "op", op, "server", id, "error", err)
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return n.notLeader()
		}
		return fmt.Errorf("cluster: %s %s: %w", op, id, err)
	}
	n.log.Info("membership changed", "op", op, "server", id, "index", f.Index())
	return nil
}

// AddServer adds a server to the raft configuration: as a non-voter, or directly as a voter
// when voter is set (use that only for a node that is already caught up). Adding a server that is
// present updates its address.
func (n *Node) AddServer(ctx context.Context, id, raftAddr string, voter bool) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	if id == "" || raftAddr == "" {
		return errors.New("cluster: add server needs an id and a raft address")
	}
	if voter {
		return n.configChange("add-voter", id, n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeoutFrom(ctx, adminTimeout)))
	}
	return n.configChange("add-nonvoter", id, n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeoutFrom(ctx, adminTimeout)))
}

// RemoveServer removes a server from the raft configuration. Removing the leader itself makes it
// step down once the change is committed.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	if _, err := n.server(id); err != nil {
		return err
	}
	n.promoteSince(id, time.Time{})
	return n.configChange("remove", id, n.raft.RemoveServer(raft.ServerID(id), 0, timeoutFrom(ctx, adminTimeout)))
}

// Promote makes a non-voter a voter now, caught up or not.
func (n *Node) Promote(ctx context.Context, id string) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	s, err := n.server(id)
	if err != nil {
		return err
	}
	return n.configChange("promote", id, n.raft.AddVoter(s.ID, s.Address, 0, timeoutFrom(ctx, adminTimeout)))
}

// Demote makes a voter a non-voter (it keeps replicating). The reconciler does not promote it
// back while its gossip metadata says it is a read replica; otherwise it does once caught up, so
// demote a node you mean to remove or run it with --non-voter.
func (n *Node) Demote(ctx context.Context, id string) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	if _, err := n.server(id); err != nil {
		return err
	}
	return n.configChange("demote", id, n.raft.DemoteVoter(raft.ServerID(id), 0, timeoutFrom(ctx, adminTimeout)))
}

// TransferLeadership hands leadership to the voter with id toID, or to the most up-to-date voter
// when toID is empty.
func (n *Node) TransferLeadership(ctx context.Context, toID string) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	var f raft.Future
	if toID == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		s, err := n.server(toID)
		if err != nil {
			return err
		}
		f = n.raft.LeadershipTransferToServer(s.ID, s.Address)
	}
	if err := f.Error(); err != nil {
		n.log.Warn("leadership transfer failed", "to", toID, "error", err)
		return fmt.Errorf("cluster: transfer leadership: %w", err)
	}
	n.log.Info("leadership transferred", "to", toID)
	return nil
}

// SnapshotInfo describes a snapshot just taken.
type SnapshotInfo struct {
	ID           string
	Index, Term  uint64
	Size         int64
	Duration     time.Duration
	TrailingLogs uint64
}

// TakeSnapshot makes this node snapshot its state now and compact its log up to TrailingLogs
// entries behind the snapshot.
func (n *Node) TakeSnapshot(ctx context.Context) (SnapshotInfo, error) {
	start := time.Now()
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return SnapshotInfo{}, ErrNothingToSnapshot
		}
		n.log.Warn("snapshot failed", "error", err)
		return SnapshotInfo{}, fmt.Errorf("cluster: snapshot: %w", err)
	}
	meta, rc, err := f.Open()
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("cluster: open snapshot: %w", err)
	}
	rc.Close()
	info := SnapshotInfo{ID: meta.ID, Index: meta.Index, Term: meta.Term, Size: meta.Size, Duration: time.Since(start),
		TrailingLogs: n.RaftSettings().TrailingLogs}
	n.log.Info("snapshot taken", "id", info.ID, "index", info.Index, "bytes", info.Size, "duration", info.Duration)
	return info, nil
}

// RaftSettings are the raft settings that can change at run time (raft.ReloadableConfig).
type RaftSettings struct {
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
}

// RaftSettings returns this node's current reloadable raft settings.
func (n *Node) RaftSettings() RaftSettings {
	n.settingsMu.Lock()
	defer n.settingsMu.Unlock()
	return n.settings
}

// SetRaftSettings changes this node's reloadable raft settings (each node has its own; set them
// on every node). Zero fields keep their current value.
func (n *Node) SetRaftSettings(s RaftSettings) (RaftSettings, error) {
	n.settingsMu.Lock()
	defer n.settingsMu.Unlock()
	next := n.settings
	if s.TrailingLogs > 0 {
		next.TrailingLogs = s.TrailingLogs
	}
	if s.SnapshotInterval > 0 {
		next.SnapshotInterval = s.SnapshotInterval
	}
	if s.SnapshotThreshold > 0 {
		next.SnapshotThreshold = s.SnapshotThreshold
	}
	if s.HeartbeatTimeout > 0 {
		next.HeartbeatTimeout = s.HeartbeatTimeout
	}
	if s.ElectionTimeout > 0 {
		next.ElectionTimeout = s.ElectionTimeout
	}
	err := n.raft.ReloadConfig(raft.ReloadableConfig{
		TrailingLogs: next.TrailingLogs, SnapshotInterval: next.SnapshotInterval, SnapshotThreshold: next.SnapshotThreshold,
		HeartbeatTimeout: next.HeartbeatTimeout, ElectionTimeout: next.ElectionTimeout,
	})
	if err != nil {
		return n.settings, fmt.Errorf("cluster: reload raft config: %w", err)
	}
	n.log.Info("raft settings changed", "trailing_logs", next.TrailingLogs, "snapshot_interval", next.SnapshotInterval,
		"snapshot_threshold", next.SnapshotThreshold, "heartbeat_timeout", next.HeartbeatTimeout, "election_timeout", next.ElectionTimeout)
	n.settings = next
	return next, nil
}
