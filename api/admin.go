package api

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
)

// Admin is what the Cluster service's operator calls need from the node. It is separate from
// Node so a node without administration (a test fake) still serves the rest; the service finds
// it with a type assertion and answers UNIMPLEMENTED without it. Membership calls fail with
// *cluster.NotLeaderError on a follower and are then forwarded to the leader.
type Admin interface {
	AddServer(ctx context.Context, id, raftAddr string, voter bool) error
	RemoveServer(ctx context.Context, id string) error
	Promote(ctx context.Context, id string) error
	Demote(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, toID string) error
	TakeSnapshot(ctx context.Context) (cluster.SnapshotInfo, error)
	RaftSettings() cluster.RaftSettings
	SetRaftSettings(cluster.RaftSettings) (cluster.RaftSettings, error)
}

var errNoAdmin = errors.New("this node does not offer cluster administration")

func (s *Service) admin() (Admin, error) {
	a, ok := s.node.(Admin)
	if !ok {
		return nil, errNoAdmin
	}
	return a, nil
}

func invalidField(field, reason string) error {
	var b badRequest
	b.add(field, violationRequired, "%s", reason)
	return b.err()
}

// membership runs one leader-only change, forwarding it from a follower.
func membership[T interface {
	*R
	proto.Message
}, R any](ctx context.Context, s *Service, op string, change func(Admin) error,
	call func(context.Context, cairnpb.ClusterClient) (T, error)) (T, error) {
	a, err := s.admin()
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	if err := change(a); err != nil {
		if addr, ok := s.forwardTarget(ctx, op, err, false); ok {
			resp, ferr := forwardConn(ctx, s, op, addr, true, func(ctx context.Context, cc grpc.ClientConnInterface) (T, error) {
				return call(ctx, cairnpb.NewClusterClient(cc))
			})
			if ferr != nil {
				return nil, s.fail(ctx, op, ferr)
			}
			return resp, nil
		}
		return nil, s.fail(ctx, op, err)
	}
	return T(new(R)), nil
}

// AddServer implements cairnpb.ClusterServer.
func (s *Service) AddServer(ctx context.Context, req *cairnpb.AddServerRequest) (*cairnpb.AddServerResponse, error) {
	if strings.TrimSpace(req.GetId()) == "" || strings.TrimSpace(req.GetRaftAddress()) == "" {
		return nil, s.fail(ctx, "add_server", invalidField("id, raft_address", "a server id and its raft address are required"))
	}
	return membership(ctx, s, "add_server",
		func(a Admin) error { return a.AddServer(ctx, req.GetId(), req.GetRaftAddress(), req.GetVoter()) },
		func(ctx context.Context, c cairnpb.ClusterClient) (*cairnpb.AddServerResponse, error) {
			return c.AddServer(ctx, req)
		})
}

// RemoveServer implements cairnpb.ClusterServer.
func (s *Service) RemoveServer(ctx context.Context, req *cairnpb.RemoveServerRequest) (*cairnpb.RemoveServerResponse, error) {
	if req.GetId() == "" {
		return nil, s.fail(ctx, "remove_server", invalidField("id", "a server id is required"))
	}
	return membership(ctx, s, "remove_server",
		func(a Admin) error { return a.RemoveServer(ctx, req.GetId()) },
		func(ctx context.Context, c cairnpb.ClusterClient) (*cairnpb.RemoveServerResponse, error) {
			return c.RemoveServer(ctx, req)
		})
}

// Promote implements cairnpb.ClusterServer.
func (s *Service) Promote(ctx context.Context, req *cairnpb.PromoteRequest) (*cairnpb.PromoteResponse, error) {
	if req.GetId() == "" {
		return nil, s.fail(ctx, "promote", invalidField("id", "a server id is required"))
	}
	return membership(ctx, s, "promote",
		func(a Admin) error { return a.Promote(ctx, req.GetId()) },
		func(ctx context.Context, c cairnpb.ClusterClient) (*cairnpb.PromoteResponse, error) {
			return c.Promote(ctx, req)
		})
}

// Demote implements cairnpb.ClusterServer.
func (s *Service) Demote(ctx context.Context, req *cairnpb.DemoteRequest) (*cairnpb.DemoteResponse, error) {
	if req.GetId() == "" {
		return nil, s.fail(ctx, "demote", invalidField("id", "a server id is required"))
	}
	return membership(ctx, s, "demote",
		func(a Admin) error { return a.Demote(ctx, req.GetId()) },
		func(ctx context.Context, c cairnpb.ClusterClient) (*cairnpb.DemoteResponse, error) {
			return c.Demote(ctx, req)
		})
}

// TransferLeader implements cairnpb.ClusterServer.
func (s *Service) TransferLeader(ctx context.Context, req *cairnpb.TransferLeaderRequest) (*cairnpb.TransferLeaderResponse, error) {
	return membership(ctx, s, "transfer_leader",
		func(a Admin) error { return a.TransferLeadership(ctx, req.GetToId()) },
		func(ctx context.Context, c cairnpb.ClusterClient) (*cairnpb.TransferLeaderResponse, error) {
			return c.TransferLeader(ctx, req)
		})
}

// Snapshot implements cairnpb.ClusterServer: the receiving node snapshots (no forwarding).
func (s *Service) Snapshot(ctx context.Context, _ *cairnpb.SnapshotRequest) (*cairnpb.SnapshotResponse, error) {
	a, err := s.admin()
	if err != nil {
		return nil, s.fail(ctx, "snapshot", err)
	}
	info, err := a.TakeSnapshot(ctx)
	if err != nil {
		return nil, s.fail(ctx, "snapshot", err)
	}
	return &cairnpb.SnapshotResponse{Id: info.ID, Index: info.Index, Term: info.Term, SizeBytes: info.Size,
		Duration: durationpb.New(info.Duration)}, nil
}

func raftConfigPB(c cluster.RaftSettings) *cairnpb.RaftConfig {
	return &cairnpb.RaftConfig{TrailingLogs: c.TrailingLogs, SnapshotInterval: durationpb.New(c.SnapshotInterval),
		SnapshotThreshold: c.SnapshotThreshold, HeartbeatTimeout: durationpb.New(c.HeartbeatTimeout),
		ElectionTimeout: durationpb.New(c.ElectionTimeout)}
}

// GetRaftConfig implements cairnpb.ClusterServer.
func (s *Service) GetRaftConfig(ctx context.Context, _ *cairnpb.GetRaftConfigRequest) (*cairnpb.GetRaftConfigResponse, error) {
	a, err := s.admin()
	if err != nil {
		return nil, s.fail(ctx, "get_raft_config", err)
	}
	return &cairnpb.GetRaftConfigResponse{NodeId: s.node.ID(), Config: raftConfigPB(a.RaftSettings())}, nil
}

// SetRaftConfig implements cairnpb.ClusterServer.
func (s *Service) SetRaftConfig(ctx context.Context, req *cairnpb.SetRaftConfigRequest) (*cairnpb.SetRaftConfigResponse, error) {
	a, err := s.admin()
	if err != nil {
		return nil, s.fail(ctx, "set_raft_config", err)
	}
	c := req.GetConfig()
	for field, d := range map[string]*durationpb.Duration{"config.snapshot_interval": c.GetSnapshotInterval(),
		"config.heartbeat_timeout": c.GetHeartbeatTimeout(), "config.election_timeout": c.GetElectionTimeout()} {
		if d != nil && (d.CheckValid() != nil || d.AsDuration() < 0) {
			return nil, s.fail(ctx, "set_raft_config", invalidField(field, fmt.Sprintf("not a valid non-negative duration: %v", d)))
		}
	}
	next, err := a.SetRaftSettings(cluster.RaftSettings{TrailingLogs: c.GetTrailingLogs(),
		SnapshotInterval: c.GetSnapshotInterval().AsDuration(), SnapshotThreshold: c.GetSnapshotThreshold(),
		HeartbeatTimeout: c.GetHeartbeatTimeout().AsDuration(), ElectionTimeout: c.GetElectionTimeout().AsDuration()})
	if err != nil {
		return nil, s.fail(ctx, "set_raft_config", err)
	}
	return &cairnpb.SetRaftConfigResponse{NodeId: s.node.ID(), Config: raftConfigPB(next)}, nil
}
