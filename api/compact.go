package api

import (
	"context"

	"google.golang.org/grpc"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
)

// Compactor is what the Compact call needs from the node (cluster.Node implements it). Like
// Admin it is found with a type assertion; a node without it answers UNIMPLEMENTED. Compact fails
// with *cluster.NotLeaderError on a follower, which then forwards the call to the leader.
type Compactor interface {
	Compact(ctx context.Context, wait bool) (cluster.CompactInfo, error)
}

// Compact implements cairnpb.ClusterServer: the leader proposes a compaction and, unless no_wait,
// answers once its own reclaim covering it finished; a follower forwards the call.
func (s *Service) Compact(ctx context.Context, req *cairnpb.CompactRequest) (*cairnpb.CompactResponse, error) {
	c, ok := s.node.(Compactor)
	if !ok {
		return nil, s.fail(ctx, "compact", errNoAdmin)
	}
	info, err := c.Compact(ctx, !req.GetNoWait())
	if err != nil {
		if addr, ok := s.forwardTarget(ctx, "compact", err, false); ok {
			resp, ferr := forwardConn(ctx, s, "compact", addr, true, func(ctx context.Context, cc grpc.ClientConnInterface) (*cairnpb.CompactResponse, error) {
				return cairnpb.NewClusterClient(cc).Compact(ctx, req)
			})
			if ferr != nil {
				return nil, s.fail(ctx, "compact", ferr)
			}
			return resp, nil
		}
		return nil, s.fail(ctx, "compact", err)
	}
	status, reclaim := "done", info.Reclaim.Covering
	if !info.Waited {
		status, reclaim = "pending", info.Reclaim.Last
	}
	return &cairnpb.CompactResponse{LogIndex: info.LogIndex, Position: info.Position, NodeId: s.node.ID(),
		Status: status, Reclaim: cluster.ReclaimStatsPB(reclaim), Total: cluster.ReclaimStatsPB(info.Reclaim.Total)}, nil
}
