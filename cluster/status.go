package cluster

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
)

// Status reports this node's view of the cluster: its role, the leader, term, commit and applied
// indexes, last leader contact, and the members of the raft configuration with their gRPC
// addresses and gossip state. With withMemberLag, each member is asked for its own applied index
// (in parallel, one second at most) so lag can be shown.
func (n *Node) Status(ctx context.Context, withMemberLag bool) (*cairnpb.StatusResponse, error) {
	_, leaderID := n.raft.LeaderWithID()
	_, grpcLeader := n.Leader()
	info := n.readInfo()
	resp := &cairnpb.StatusResponse{
		NodeId:        n.cfg.NodeID,
		Role:          roleName(n.raft.State()),
		LeaderId:      string(leaderID),
		LeaderAddress: grpcLeader,
		Term:          n.raft.CurrentTerm(),
		CommitIndex:   n.raft.CommitIndex(),
		AppliedIndex:  info.AppliedIndex,
		LastLogIndex:  n.raft.LastIndex(),
		Version:       n.cfg.Version,
		Reclaim:       reclaimStatusPB(n.fsm.ReclaimStatus()),
	}
	if !info.Leader && info.LastContact < time.Duration(1<<62) {
		resp.LastContact = durationpb.New(info.LastContact)
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	servers := f.Configuration().Servers
	resp.Members = make([]*cairnpb.Member, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		meta, _ := n.members.get(string(s.ID))
		m := &cairnpb.Member{
			Id:          string(s.ID),
			RaftAddress: string(s.Address),
			GrpcAddress: meta.GRPCAddr,
			Suffrage:    suffrageName(s.Suffrage),
			Role:        "unknown",
			Gossip:      n.members.gossipState(string(s.ID)),
		}
		if string(s.ID) == n.cfg.NodeID {
			m.GrpcAddress, m.Role, m.AppliedIndex, m.Gossip = n.cfg.GRPCAdvertise, resp.Role, resp.AppliedIndex, "alive"
		} else if withMemberLag {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				st, err := n.peers.status(cctx, m.GrpcAddress)
				if err != nil {
					n.log.Debug("member status failed", "member", m.Id, "error", err)
					return
				}
				m.Role, m.AppliedIndex = st.GetRole(), st.GetAppliedIndex()
			}()
		}
		resp.Members[i] = m
	}
	wg.Wait()
	for _, m := range resp.Members {
		if m.Role != "unknown" && resp.CommitIndex > m.AppliedIndex {
			m.Lag = resp.CommitIndex - m.AppliedIndex
		}
	}
	return resp, nil
}

func roleName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Shutdown:
		return "shutdown"
	}
	return "unknown:" + strconv.Itoa(int(s))
}

func suffrageName(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return "voter"
	}
	return "nonvoter"
}

// Readiness says whether this node can do its job: a leader is known (it may be this node),
// this node is in the raft configuration, and its state machine is within maxLag entries of the
// commit index it knows. It returns the reason when not ready.
func (n *Node) Readiness(maxLag uint64) (bool, string) {
	_, leader := n.raft.LeaderWithID()
	_, err := n.server(n.cfg.NodeID)
	return readiness(leader != "", err == nil, n.fsm.AppliedIndex(), n.raft.CommitIndex(), maxLag)
}

func readiness(leaderKnown, member bool, applied, commit, maxLag uint64) (bool, string) {
	switch {
	case !leaderKnown:
		return false, "no leader known"
	case !member:
		return false, "not in the raft configuration"
	case applied+maxLag < commit:
		return false, fmt.Sprintf("catching up: applied %d of %d", applied, commit)
	}
	return true, ""
}
