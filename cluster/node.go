package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// Node is one Cairn server: raft, its stores and transport, the state machine, gossip discovery,
// the proposal batcher and the read-consistency machinery. It is the one owner of *raft.Raft.
type Node struct {
	cfg Config
	log *slog.Logger

	fsm     *fsm.FSM
	raft    *raft.Raft
	store   *raftboltdb.BoltStore
	trans   *raft.NetworkTransport
	gossip  *memberlist.Memberlist
	keyring *memberlist.Keyring // gossip encryption keys; nil for plaintext gossip
	// gossipKeyMu serialises keyring changes (reload from the file, admin calls).
	gossipKeyMu sync.Mutex
	members     *memberTable
	verifier    *leaderVerifier
	peers       *peerClients
	delegate    *gossipDelegate
	// gossipAddr is read once at start: memberlist mutates its LocalNode in place on UpdateNode.
	gossipAddr string
	// metaHasState mirrors what we gossip as HasState; only the membership loop touches it
	// after Open.
	metaHasState bool
	// metaReady mirrors what we gossip as Ready (passed the start-up membership check).
	metaReady bool
	// nonce is this process's random bootstrap nonce (see memberMeta.Nonce).
	nonce string
	// clusterID is the id of the cluster whose data this node holds; "" until known.
	clusterMu sync.Mutex
	clusterID string
	// promoteAt holds, per non-voter id, when it was first seen healthy and caught up.
	promoteMu sync.Mutex
	promoteAt map[string]time.Time
	// refusedAt holds, per gossip member id, when the leader last refused to add it because it
	// did not prove its identity over mutual TLS (memberAnswersAs); touched only by the
	// membership loop.
	refusedAt map[string]time.Time
	// settings are the reloadable raft settings in force (raft has no getter for them).
	settingsMu sync.Mutex
	settings   RaftSettings

	proposals chan *proposal
	inflight  chan *inflightBatch
	slots     chan struct{} // one token per raft entry in flight (cfg.MaxInflightEntries)
	// readyTerm is the term in which this node, as leader, has passed a barrier: every entry of
	// earlier terms is committed and applied, so its commit index is a valid read index.
	readyTerm atomic.Uint64

	shutdownCh chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error
}

// Open starts a node: it opens the state machine and raft's stores, starts raft and gossip, and
// begins bootstrap or waits to be added, as the configuration says. It returns before a leader is
// known; WaitForLeader waits for one.
func Open(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:        cfg,
		log:        cfg.Logger.With("node", cfg.NodeID),
		proposals:  make(chan *proposal, 4*cfg.MaxBatchRequests),
		inflight:   make(chan *inflightBatch, cfg.MaxInflightEntries),
		slots:      make(chan struct{}, cfg.MaxInflightEntries),
		shutdownCh: make(chan struct{}),
	}
	ok := false
	defer func() {
		if !ok {
			n.closeResources()
		}
	}()
	if err := claimDataDir(cfg.DataDir, cfg.NodeID); err != nil {
		return nil, err
	}
	if n.clusterID, err = readClusterID(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("cluster: read cluster id: %w", err)
	}
	n.nonce = uuid.NewString()
	fcfg := cfg.FSM
	fcfg.Dir = filepath.Join(cfg.DataDir, "fsm")
	if fcfg.Logger == nil {
		fcfg.Logger = n.log
	}
	if n.fsm, err = fsm.Open(fcfg); err != nil {
		return nil, err
	}
	snaps, hl, err := n.openRaftStores()
	if err != nil {
		return nil, err
	}
	n.peers = newPeerClients(n.cfg.TLS)
	if err := n.openGossip(); err != nil {
		return nil, err
	}
	// Gossip first, raft second: a node without raft state must first make sure the cluster does
	// not already count it as a member (a wiped data dir), before raft can accept a single
	// AppendEntries or vote.
	if n.metaHasState {
		if err := n.refuseIfOtherCluster(); err != nil {
			return nil, err
		}
	} else {
		if err := n.refuseIfWiped(); err != nil {
			return nil, err
		}
		if err := n.gossipMeta(false, true); err != nil {
			n.log.Warn("announcing readiness over gossip failed", "error", err)
		}
		n.metaReady = true
	}
	if err := n.startRaft(snaps, hl); err != nil {
		return nil, err
	}
	n.verifier = &leaderVerifier{raft: n.raft}
	n.wg.Add(6)
	go n.compactLoop()
	go n.snapshotBytesLoop()
	go n.batchLoop()
	go n.resolveLoop()
	go n.leaderLoop()
	go n.membershipLoop()
	ok = true
	return n, nil
}

// openRaftStores opens raft's log and stable store, its snapshot store and its transport.
func (n *Node) openRaftStores() (raft.SnapshotStore, hclog.Logger, error) {
	dir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("cluster: create raft dir: %w", err)
	}
	hl := newHclog(n.log.With("component", "raft"), "raft", hclog.Info)
	var err error
	if n.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")}); err != nil {
		return nil, nil, fmt.Errorf("cluster: open raft log store: %w", err)
	}
	// The state machine's own store: a snapshot is a manifest plus hard links to segment files,
	// so taking one does not copy the data (DESIGN §8); full bytes stream only to a follower.
	snaps, err := fsm.NewSnapshotStore(filepath.Join(dir, "snapshots"), 2, n.log)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	layer, err := newStreamLayer(n.cfg.RaftBind, n.cfg.RaftAdvertise, n.cfg.Dial, n.cfg.TLS, n.log.With("component", "raft-transport"))
	if err != nil {
		return nil, nil, err
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: hl,
	})
	return snaps, hl, nil
}

// startRaft configures and starts raft over the opened stores.
func (n *Node) startRaft(snaps raft.SnapshotStore, hl hclog.Logger) error {
	cache, err := raft.NewLogCache(512, n.store)
	if err != nil {
		return fmt.Errorf("cluster: log cache: %w", err)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeID)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.MaxAppendEntries = n.cfg.MaxAppendEntries
	// BatchApplyCh stays off, against raft-lessons §2.1: with it, raft buffers Apply calls in
	// a channel that it never drains on shutdown, so futures still in the buffer never resolve
	// and our resolve loop (and Close) would hang; found by a client test killing a leader under
	// load. Throughput does not need it: our batcher packs queued requests into each entry while
	// raft.Apply blocks, and raft's leader loop still group-commits whatever is waiting.
	rc.BatchApplyCh = false
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.TrailingLogs = n.cfg.SnapshotThreshold * 5 / 4
	rc.Logger = hl
	n.settings = RaftSettings{TrailingLogs: rc.TrailingLogs, SnapshotInterval: rc.SnapshotInterval,
		SnapshotThreshold: rc.SnapshotThreshold, HeartbeatTimeout: rc.HeartbeatTimeout, ElectionTimeout: rc.ElectionTimeout}
	// Boot decision (raft-lessons §2.3, §4.3): if the state machine's own data already covers
	// the newest snapshot, do not restore it; raft then replays only later entries, and the FSM
	// skips those at or below the index it recovered from its data.
	if list, err := snaps.List(); err != nil {
		return fmt.Errorf("cluster: list snapshots: %w", err)
	} else if len(list) > 0 && n.fsm.AppliedIndex() >= list[0].Index {
		rc.NoSnapshotRestoreOnStart = true
	}
	if n.raft, err = raft.NewRaft(rc, n.fsm, cache, n.store, snaps, n.trans); err != nil {
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	n.log.Info("raft started", "raft_addr", n.trans.LocalAddr(), "applied_index", n.fsm.AppliedIndex(),
		"skip_snapshot_restore", rc.NoSnapshotRestoreOnStart)
	return nil
}

// claimDataDir refuses a data dir that belongs to another node id, and marks a new one as ours.
func claimDataDir(dir, id string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cluster: create data dir: %w", err)
	}
	path := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if got := strings.TrimSpace(string(b)); got != id {
			return fmt.Errorf("cluster: data dir %s belongs to node %q, not %q: use that node id or another data dir", dir, got, id)
		}
		return nil
	case errors.Is(err, os.ErrNotExist):
		return os.WriteFile(path, []byte(id+"\n"), 0o644)
	default:
		return fmt.Errorf("cluster: read %s: %w", path, err)
	}
}

// ID returns this node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// FSM returns the local state machine, for reads after ReadFence.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// RaftAddr returns the address raft advertises.
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// GossipAddr returns the address memberlist advertises.
func (n *Node) GossipAddr() string { return n.gossipAddr }

// IsLeader reports whether this node is the raft leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's id and gRPC address (empty when unknown).
func (n *Node) Leader() (id, grpcAddr string) {
	_, lid := n.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	if string(lid) == n.cfg.NodeID {
		return n.cfg.NodeID, n.cfg.GRPCAdvertise
	}
	m, _ := n.members.get(string(lid))
	return string(lid), m.GRPCAddr
}

func (n *Node) notLeader() error {
	id, addr := n.Leader()
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// WaitForLeader waits until some node is leader, or ctx ends.
func (n *Node) WaitForLeader(ctx context.Context) (string, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if _, id := n.raft.LeaderWithID(); id != "" {
			return string(id), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("cluster: waiting for a leader: %w", ctx.Err())
		case <-n.shutdownCh:
			return "", ErrShutdown
		case <-t.C:
		}
	}
}

// Close stops the node gracefully: a leader first transfers leadership, then the node leaves
// gossip, stops raft and closes its stores. Proposals still waiting fail with ErrShutdown or,
// when already in raft, ErrOutcomeUnknown.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		leaveGossip := func() {
			if n.gossip != nil {
				if err := n.gossip.Leave(time.Second); err != nil {
					n.log.Warn("leaving gossip failed", "error", err)
				}
			}
		}
		if n.raft != nil && n.cfg.LeaveOnClose {
			// Leave gossip first: while this node still gossips as alive, the leader's
			// reconciler would add it straight back after the removal.
			leaveGossip()
			n.leave()
		} else {
			if n.raft != nil && n.raft.State() == raft.Leader && n.voterCount() > 1 {
				if err := n.raft.LeadershipTransfer().Error(); err != nil {
					n.log.Warn("leadership transfer before shutdown failed", "error", err)
				}
			}
			leaveGossip()
		}
		close(n.shutdownCh)
		n.closeErr = n.closeResources()
	})
	return n.closeErr
}

// Kill stops the node abruptly, without leadership transfer or a gossip leave, as a crash would
// look to the others (the data on disk is what a clean stop leaves, minus nothing fsync-relevant).
// For tests.
func (n *Node) Kill() error {
	n.closeOnce.Do(func() {
		close(n.shutdownCh)
		n.closeErr = n.closeResources()
	})
	return n.closeErr
}

func (n *Node) closeResources() error {
	var errs []error
	if n.gossip != nil {
		errs = append(errs, n.gossip.Shutdown())
	}
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown().Error())
	}
	select {
	case <-n.shutdownCh:
	default:
		close(n.shutdownCh)
	}
	n.wg.Wait()
	if n.peers != nil {
		n.peers.close()
	}
	if n.trans != nil {
		errs = append(errs, n.trans.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.fsm != nil {
		errs = append(errs, n.fsm.Close())
	}
	return errors.Join(errs...)
}

func (n *Node) voterCount() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}

// leaderLoop runs a barrier whenever this node becomes leader, so linearizable reads can start
// without paying for it (Consul's pastBarrier). ReadFence runs the barrier itself if this loop has
// not got there yet, so a missed or coalesced signal only costs latency.
func (n *Node) leaderLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.shutdownCh:
			return
		case isLeader := <-n.raft.LeaderCh():
			if !isLeader {
				continue
			}
			if err := n.ensureBarrier(n.cfg.ApplyTimeout); err != nil {
				n.log.Warn("barrier after winning the election failed", "error", err)
				continue
			}
			n.log.Info("leader ready", "term", n.raft.CurrentTerm())
		}
	}
}

// ensureBarrier makes sure this leader has committed and applied an entry of its current term.
//
// The barrier is an empty command, not raft.Barrier: raft hands neither its LogNoop nor
// LogBarrier entries to a BatchingFSM, so after them the FSM's applied watermark would sit below
// the commit index and a read-index wait would never end. An empty command moves the watermark
// past the term's no-op; from then on every entry up to the commit index is one the FSM sees
// (commands and configuration changes), so WaitApplied(CommitIndex()) always terminates.
func (n *Node) ensureBarrier(timeout time.Duration) error {
	term := n.raft.CurrentTerm()
	if n.readyTerm.Load() == term {
		return nil
	}
	if err := n.raft.Apply(emptyCommand, timeout).Error(); err != nil {
		return err
	}
	if n.raft.CurrentTerm() != term {
		return raft.ErrLeadershipLost
	}
	n.readyTerm.Store(term)
	return nil
}

// emptyCommand is a Command without requests: it changes no state and writes no record.
var emptyCommand = func() []byte {
	b, err := fsm.EncodeCommand(&fsmpb.Command{})
	if err != nil {
		panic(err) // a constant message always encodes
	}
	return b
}()

// snapshotBytesLoop takes a snapshot whenever SnapshotBytes of segment data were written since
// the last one this loop took (raft's own triggers count entries and time, not bytes). Every node
// snapshots on its own, as raft does.
func (n *Node) snapshotBytesLoop() {
	defer n.wg.Done()
	if n.cfg.SnapshotBytes < 0 {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := n.fsm.Storage().Bytes
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-t.C:
		}
		written := n.fsm.Storage().Bytes
		if written < last {
			last = written // a restore replaced the data
		}
		if written-last < n.cfg.SnapshotBytes {
			continue
		}
		if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			n.log.Warn("size-triggered snapshot failed", "bytes_since_last", written-last, "error", err)
			continue
		}
		n.log.Info("size-triggered snapshot", "bytes_since_last", written-last)
		last = written
	}
}
