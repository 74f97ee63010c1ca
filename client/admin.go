package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
)

// Operator calls. Membership changes (AddServer, RemoveServer, Promote, Demote, TransferLeader)
// run on the leader: they go to the leader when the client knows it, and a follower forwards
// them. Snapshot and the raft settings concern the node that receives the call: pass ToAddress
// to choose it. A node not in the configuration is ErrServerNotFound.

// admin makes one operator call with the client's retry rules.
func (c *Client) admin(ctx context.Context, op string, opts []CallOption, attempt func(context.Context, cairnpb.ClusterClient) error) error {
	err := c.invoke(ctx, call{route: routeLeader, attempt: func(ctx context.Context, cc *grpc.ClientConn) error {
		return attempt(ctx, cairnpb.NewClusterClient(cc))
	}}, c.callConfig(opts))
	if err != nil {
		return fmt.Errorf("cairn: %s: %w", op, err)
	}
	return nil
}

// AddServer adds a server to the raft configuration as a non-voter, or as a voter when voter is
// set (only for a node already caught up). Nodes started with --join are added by the leader on
// their own; this is for nodes that cannot gossip with the cluster.
func (c *Client) AddServer(ctx context.Context, id, raftAddr string, voter bool, opts ...CallOption) error {
	return c.admin(ctx, "add server "+id, opts, func(ctx context.Context, cl cairnpb.ClusterClient) error {
		_, err := cl.AddServer(ctx, &cairnpb.AddServerRequest{Id: id, RaftAddress: raftAddr, Voter: voter})
		return err
	})
}

// RemoveServer removes a server from the raft configuration: the only way a dead voter leaves.
func (c *Client) RemoveServer(ctx context.Context, id string, opts ...CallOption) error {
	return c.admin(ctx, "remove server "+id, opts, func(ctx context.Context, cl cairnpb.ClusterClient) error {
		_, err := cl.RemoveServer(ctx, &cairnpb.RemoveServerRequest{Id: id})
		return err
	})
}

// Promote makes a non-voter a voter.
func (c *Client) Promote(ctx context.Context, id string, opts ...CallOption) error {
	return c.admin(ctx, "promote "+id, opts, func(ctx context.Context, cl cairnpb.ClusterClient) error {
		_, err := cl.Promote(ctx, &cairnpb.PromoteRequest{Id: id})
		return err
	})
}

// Demote makes a voter a non-voter.
func (c *Client) Demote(ctx context.Context, id string, opts ...CallOption) error {
	return c.admin(ctx, "demote "+id, opts, func(ctx context.Context, cl cairnpb.ClusterClient) error {
		_, err := cl.Demote(ctx, &cairnpb.DemoteRequest{Id: id})
		return err
	})
}

// TransferLeader hands leadership to the voter toID, or to the most up-to-date voter when toID is
// empty. The client forgets the leader it knew.
func (c *Client) TransferLeader(ctx context.Context, toID string, opts ...CallOption) error {
	err := c.admin(ctx, "transfer leadership", opts, func(ctx context.Context, cl cairnpb.ClusterClient) error {
		_, err := cl.TransferLeader(ctx, &cairnpb.TransferLeaderRequest{ToId: toID})
		return err
	})
	if err == nil {
		c.forgetLeader("")
	}
	return err
}

// SnapshotInfo describes a snapshot a node took.
type SnapshotInfo struct {
	ID          string
	Index, Term uint64
	SizeBytes   int64
	Duration    time.Duration
}

// Snapshot makes a node (ToAddress, else the leader) snapshot its state and compact its log.
func (c *Client) Snapshot(ctx context.Context, opts ...CallOption) (*SnapshotInfo, error) {
	var out *SnapshotInfo
	err := c.admin(ctx, "snapshot", opts, func(ctx context.Context, cl cairnpb.ClusterClient) error {
		r, err := cl.Snapshot(ctx, &cairnpb.SnapshotRequest{})
		if err == nil {
			out = &SnapshotInfo{ID: r.GetId(), Index: r.GetIndex(), Term: r.GetTerm(), SizeBytes: r.GetSizeBytes(),
				Duration: r.GetDuration().AsDuration()}
		}
		return err
	})
	return out, err
}

// RaftConfig holds a node's reloadable raft settings.
type RaftConfig struct {
	NodeID            string
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
}

func raftConfigFromPB(id string, c *cairnpb.RaftConfig) *RaftConfig {
	return &RaftConfig{NodeID: id, TrailingLogs: c.GetTrailingLogs(), SnapshotInterval: c.GetSnapshotInterval().AsDuration(),
		SnapshotThreshold: c.GetSnapshotThreshold(), HeartbeatTimeout: c.GetHeartbeatTimeout().AsDuration(),
		ElectionTimeout: c.GetElectionTimeout().AsDuration()}
}

// GetRaftConfig returns a node's (ToAddress, else the leader's) reloadable raft settings.
func (c *Client) GetRaftConfig(ctx context.Context, opts ...CallOption) (*RaftConfig, error) {
	var out *RaftConfig
	err := c.admin(ctx, "get raft config", opts, func(ctx context.Context, cl cairnpb.ClusterClient) error {
		r, err := cl.GetRaftConfig(ctx, &cairnpb.GetRaftConfigRequest{})
		if err == nil {
			out = raftConfigFromPB(r.GetNodeId(), r.GetConfig())
		}
		return err
	})
	return out, err
}

// SetRaftConfig changes a node's reloadable raft settings (zero fields keep their value) and
// returns the settings now in force. Each node has its own: set them on every node.
func (c *Client) SetRaftConfig(ctx context.Context, set RaftConfig, opts ...CallOption) (*RaftConfig, error) {
	dur := func(d time.Duration) *durationpb.Duration {
		if d == 0 {
			return nil
		}
		return durationpb.New(d)
	}
	req := &cairnpb.SetRaftConfigRequest{Config: &cairnpb.RaftConfig{TrailingLogs: set.TrailingLogs,
		SnapshotInterval: dur(set.SnapshotInterval), SnapshotThreshold: set.SnapshotThreshold,
		HeartbeatTimeout: dur(set.HeartbeatTimeout), ElectionTimeout: dur(set.ElectionTimeout)}}
	var out *RaftConfig
	err := c.admin(ctx, "set raft config", opts, func(ctx context.Context, cl cairnpb.ClusterClient) error {
		r, err := cl.SetRaftConfig(ctx, req)
		if err == nil {
			out = raftConfigFromPB(r.GetNodeId(), r.GetConfig())
		}
		return err
	})
	return out, err
}

// GossipKeyOp is an operation on a node's gossip keyring (see GossipKey).
type GossipKeyOp int

// Gossip keyring operations.
const (
	// GossipKeyList changes nothing.
	GossipKeyList GossipKeyOp = iota
	// GossipKeyInstall adds the key as secondary: the node decrypts with it, does not encrypt.
	GossipKeyInstall
	// GossipKeyUse makes the installed key primary: the node encrypts with it.
	GossipKeyUse
	// GossipKeyPrune removes every key but the primary.
	GossipKeyPrune
)

// GossipKeyring is a node's gossip keyring as fingerprints (first 8 bytes of SHA-256, hex).
type GossipKeyring struct {
	NodeID  string
	Primary string
	Keys    []string
}

// GossipKey applies op to the gossip keyring of the node that receives the call (pass
// ToAddress to choose it) and returns the keyring afterwards; key (base64, 16/24/32 bytes) is
// needed by Install and Use. The node also rewrites its gossip key file, so a restart keeps the
// change. A cluster-wide rotation installs the new key on every node, then uses it on every node,
// then prunes on every node (cairnctl tls rotate-gossip-key). A node without gossip encryption,
// a Use of a key not installed, or a key file that cannot be written fail with a
// FAILED_PRECONDITION StatusError of reason GOSSIP_KEYRING.
func (c *Client) GossipKey(ctx context.Context, op GossipKeyOp, key string, opts ...CallOption) (*GossipKeyring, error) {
	pbOp := map[GossipKeyOp]cairnpb.GossipKeyOp{
		GossipKeyList: cairnpb.GossipKeyOp_GOSSIP_KEY_OP_LIST, GossipKeyInstall: cairnpb.GossipKeyOp_GOSSIP_KEY_OP_INSTALL,
		GossipKeyUse: cairnpb.GossipKeyOp_GOSSIP_KEY_OP_USE, GossipKeyPrune: cairnpb.GossipKeyOp_GOSSIP_KEY_OP_PRUNE,
	}[op]
	var out *GossipKeyring
	err := c.admin(ctx, "gossip key", opts, func(ctx context.Context, cl cairnpb.ClusterClient) error {
		r, err := cl.GossipKey(ctx, &cairnpb.GossipKeyRequest{Op: pbOp, Key: key})
		if err == nil {
			out = &GossipKeyring{NodeID: r.GetNodeId(), Primary: r.GetPrimary(), Keys: r.GetKeys()}
		}
		return err
	})
	return out, err
}
