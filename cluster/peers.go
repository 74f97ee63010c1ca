package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairndb/cairn/api/cairnpb"
)

// peerClients keeps one gRPC connection per member address, for status and promotion checks.
// TLS comes with the security work; until then connections are plaintext on the cluster network.
type peerClients struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerClients() *peerClients { return &peerClients{conns: map[string]*grpc.ClientConn{}} }

func (p *peerClients) status(ctx context.Context, addr string) (*cairnpb.StatusResponse, error) {
	if addr == "" {
		return nil, fmt.Errorf("cluster: member has no gRPC address")
	}
	p.mu.Lock()
	cc, ok := p.conns[addr]
	if !ok {
		var err error
		cc, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			p.mu.Unlock()
			return nil, fmt.Errorf("cluster: dial member %s: %w", addr, err)
		}
		p.conns[addr] = cc
	}
	p.mu.Unlock()
	return cairnpb.NewClusterClient(cc).Status(ctx, &cairnpb.StatusRequest{})
}

func (p *peerClients) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, cc := range p.conns {
		_ = cc.Close()
		delete(p.conns, addr)
	}
}

func (n *Node) promoteSince(id string, t time.Time) {
	n.promoteMu.Lock()
	defer n.promoteMu.Unlock()
	if n.promoteAt == nil {
		n.promoteAt = map[string]time.Time{}
	}
	if t.IsZero() {
		delete(n.promoteAt, id)
	} else if _, ok := n.promoteAt[id]; !ok {
		n.promoteAt[id] = t
	}
}

// maybePromote makes a non-voter a voter once it has stayed within MaxPromoteLag of the leader's
// commit index for PromoteAfter (raft-autopilot's stabilization rule, simplified). Progress is
// read from the member's own Status over gRPC: raft does not expose follower match indexes.
func (n *Node) maybePromote(m memberMeta) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := n.peers.status(ctx, m.GRPCAddr)
	if err != nil {
		n.log.Debug("cannot read non-voter progress", "id", m.ID, "error", err)
		n.promoteSince(m.ID, time.Time{})
		return
	}
	if st.GetNodeId() != m.ID {
		// Another process answers at that address (a node replaced under a new id): its
		// progress says nothing about m.
		n.log.Warn("not promoting: another node answers at its address", "id", m.ID, "answered_by", st.GetNodeId())
		n.promoteSince(m.ID, time.Time{})
		return
	}
	if commit := n.raft.CommitIndex(); st.GetAppliedIndex()+n.cfg.MaxPromoteLag < commit {
		n.promoteSince(m.ID, time.Time{})
		return
	}
	n.promoteSince(m.ID, time.Now())
	n.promoteMu.Lock()
	since := n.promoteAt[m.ID]
	n.promoteMu.Unlock()
	if time.Since(since) < n.cfg.PromoteAfter {
		return
	}
	if err := n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, 0).Error(); err != nil {
		n.log.Warn("promoting non-voter failed", "id", m.ID, "error", err)
		return
	}
	n.promoteSince(m.ID, time.Time{})
	n.log.Info("promoted non-voter to voter", "id", m.ID, "applied_index", st.GetAppliedIndex())
}
