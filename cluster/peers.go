package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// peerClients keeps one gRPC connection per member address, for status and promotion checks.
// With TLS they are mutual TLS and accept only node certificates of this cluster; without,
// plaintext (dev mode).
type peerClients struct {
	creds credentials.TransportCredentials
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerClients(tl *tlsutil.Loader) *peerClients {
	creds := insecure.NewCredentials()
	if tl != nil {
		creds = credentials.NewTLS(tl.ClientConfig(tlsutil.ProtoGRPC, tlsutil.RoleNode))
	}
	return &peerClients{creds: creds, conns: map[string]*grpc.ClientConn{}}
}

// client returns the Cluster service client of the member at addr.
func (p *peerClients) client(addr string) (cairnpb.ClusterClient, error) {
	if addr == "" {
		return nil, fmt.Errorf("cluster: member has no gRPC address")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cc, ok := p.conns[addr]
	if !ok {
		var err error
		cc, err = grpc.NewClient(addr, grpc.WithTransportCredentials(p.creds))
		if err != nil {
			return nil, fmt.Errorf("cluster: dial member %s: %w", addr, err)
		}
		p.conns[addr] = cc
	}
	return cairnpb.NewClusterClient(cc), nil
}

func (p *peerClients) status(ctx context.Context, addr string) (*cairnpb.StatusResponse, error) {
	c, err := p.client(addr)
	if err != nil {
		return nil, err
	}
	return c.Status(ctx, &cairnpb.StatusRequest{})
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

// leave removes this node from the raft configuration before a graceful Close (LeaveOnClose): a
// leader first hands leadership over, then the (new) leader is asked to remove this node. It
// gives up after a few seconds; the operator can still run cairnctl remove.
func (n *Node) leave() {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if n.raft.State() == raft.Leader {
			if n.voterCount() <= 1 {
				n.log.Warn("not leaving: this is the only voter")
				return
			}
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer before leaving failed", "error", err)
			}
			continue
		}
		_, addr := n.Leader()
		if addr == "" {
			time.Sleep(100 * time.Millisecond) // waiting for a leader, bounded by the deadline
			continue
		}
		c, err := n.peers.client(addr)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err = c.RemoveServer(ctx, &cairnpb.RemoveServerRequest{Id: n.cfg.NodeID})
			cancel()
		}
		if err == nil {
			n.log.Info("left the cluster: removed from the raft configuration")
			return
		}
		n.log.Warn("asking the leader to remove this node failed; retrying", "leader_addr", addr, "error", err)
		time.Sleep(200 * time.Millisecond) // retry backoff, bounded by the deadline
	}
	n.log.Error("could not leave the cluster; remove this node with cairnctl remove", "id", n.cfg.NodeID)
}
