package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// memberMeta is what a node gossips about itself (memberlist node meta, ≤ 512 bytes).
type memberMeta struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft"`
	GRPCAddr string `json:"grpc"`
	Voter    bool   `json:"voter"`
	Version  string `json:"v,omitempty"`
	// HasState is true once the node has raft state (bootstrapped or joined): a cluster exists, so
	// no node that sees it may bootstrap another one.
	HasState bool `json:"state,omitempty"`
	// Ready is true once the node passed its start-up membership check (a node with raft state
	// needs none). The leader adds only ready members: adding one still being checked would make
	// its check find itself listed and take it for a wiped member.
	Ready bool `json:"ready,omitempty"`
	// Cluster is the id of the cluster whose data this node holds ("" until it has one).
	Cluster string `json:"cluster,omitempty"`
	// Nonce is random per process: the bootstrapping voters derive the new cluster's id from
	// their nonces (the smallest), so they agree on it without another round.
	Nonce string `json:"nonce,omitempty"`
}

// memberTable is the gossip view: a hint about who exists and where, never the truth about
// membership (that is the raft configuration).
type memberTable struct {
	mu      sync.RWMutex
	members map[string]memberEntry
	changed chan struct{} // buffered 1: a membership change to react to
}

type memberEntry struct {
	meta  memberMeta
	state memberlist.NodeStateType
}

func newMemberTable() *memberTable {
	return &memberTable{members: map[string]memberEntry{}, changed: make(chan struct{}, 1)}
}

// set records a member's metadata and state. The state comes from which callback fired:
// memberlist v0.7.0 does not fill the Node.State it passes to event delegates (it keeps states in
// its own table), so reading node.State would leave every member that ever joined "alive"
// forever — jepsen-lite found the leader flapping membership after a node was replaced.
func (t *memberTable) set(node *memberlist.Node, state memberlist.NodeStateType, log *slog.Logger) {
	var m memberMeta
	if err := json.Unmarshal(node.Meta, &m); err != nil || m.ID == "" {
		log.Warn("ignoring gossip member with unreadable metadata", "member", node.Name, "error", err)
		return
	}
	t.mu.Lock()
	t.members[m.ID] = memberEntry{meta: m, state: state}
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *memberTable) get(id string) (memberMeta, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.members[id]
	return e.meta, ok
}

// alive returns the members gossip currently considers alive, sorted by id.
func (t *memberTable) alive() []memberMeta {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []memberMeta
	for _, e := range t.members {
		if e.state == memberlist.StateAlive {
			out = append(out, e.meta)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// GossipMembers returns the ids of the members gossip currently considers alive, this node
// included, sorted. A hint, not the raft configuration: with an encrypted gossip, a node without
// the key never appears here.
func (n *Node) GossipMembers() []string {
	var ids []string
	for _, m := range n.members.alive() {
		ids = append(ids, m.ID)
	}
	return ids
}

func (t *memberTable) gossipState(id string) string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.members[id]
	if !ok {
		return "unknown"
	}
	switch e.state {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}

// gossipDelegate feeds memberlist our metadata and memberlist events into the member table.
type gossipDelegate struct {
	mu   sync.Mutex
	meta []byte
	t    *memberTable
	log  *slog.Logger
}

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta
}

func (d *gossipDelegate) setMeta(b []byte) {
	d.mu.Lock()
	d.meta = b
	d.mu.Unlock()
}

// The rest of memberlist.Delegate and memberlist.EventDelegate. The gossip state comes from
// which event fired (see memberTable.set).
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}
func (d *gossipDelegate) NotifyJoin(n *memberlist.Node)              { d.t.set(n, memberlist.StateAlive, d.log) }
func (d *gossipDelegate) NotifyLeave(n *memberlist.Node)             { d.t.set(n, memberlist.StateDead, d.log) }
func (d *gossipDelegate) NotifyUpdate(n *memberlist.Node)            { d.t.set(n, memberlist.StateAlive, d.log) }

func (n *Node) openGossip() error {
	n.members = newMemberTable()
	has, err := raft.HasExistingState(n.store, n.store, noSnapshots{})
	if err != nil {
		return fmt.Errorf("cluster: inspect raft state: %w", err)
	}
	meta, err := n.encodeMeta(has, has)
	if err != nil {
		return err
	}
	host, port, err := splitHostPort(n.cfg.GossipBind)
	if err != nil {
		return fmt.Errorf("cluster: gossip bind address: %w", err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = n.cfg.NodeID
	mc.BindAddr, mc.BindPort = host, port
	if n.cfg.GossipAdvertise != "" {
		// memberlist wants an IP: resolve a host name (a compose service name) once, at start.
		a, err := net.ResolveTCPAddr("tcp", n.cfg.GossipAdvertise)
		if err != nil {
			return fmt.Errorf("cluster: gossip advertise address %q: %w", n.cfg.GossipAdvertise, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = a.IP.String(), a.Port
	}
	if n.cfg.GossipKeyFile != "" {
		primary, keys, err := tlsutil.LoadGossipKeys(n.cfg.GossipKeyFile)
		if err != nil {
			return fmt.Errorf("cluster: gossip keyring: %w", err)
		}
		if mc.Keyring, err = memberlist.NewKeyring(keys, primary); err != nil {
			return fmt.Errorf("cluster: gossip keyring: %w", err)
		}
		n.keyring = mc.Keyring
		// Both default to true already; set them so that nobody relaxes them by accident: a
		// member without the key can neither read our gossip nor inject its own.
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	d := &gossipDelegate{meta: meta, t: n.members, log: n.log}
	n.delegate, n.metaHasState, n.metaReady = d, has, has
	mc.Delegate, mc.Events = d, d
	mc.Logger = slog.NewLogLogger(n.log.With("component", "memberlist").Handler(), slog.LevelDebug)
	if n.gossip, err = memberlist.Create(mc); err != nil {
		return fmt.Errorf("cluster: start gossip: %w", err)
	}
	n.gossipAddr = n.gossip.LocalNode().Address()
	n.log.Info("gossip started", "gossip_addr", n.gossipAddr)
	return nil
}

// ReloadGossipKeys re-reads Config.GossipKeyFile and makes memberlist's keyring match it: every
// key listed is installed, the first becomes primary, keys no longer listed are removed. On error
// the keyring is left as it was. A node started without a key file cannot start encrypting
// (memberlist fixes that at start): that is ErrGossipPlaintext.
func (n *Node) ReloadGossipKeys() error {
	n.gossipKeyMu.Lock()
	defer n.gossipKeyMu.Unlock()
	if n.cfg.GossipKeyFile == "" || n.keyring == nil {
		return ErrGossipPlaintext
	}
	primary, keys, err := tlsutil.LoadGossipKeys(n.cfg.GossipKeyFile)
	if err != nil {
		n.log.Error("gossip key reload failed; keeping the current keyring", "error", err)
		return fmt.Errorf("cluster: reload gossip keys: %w", err)
	}
	if err := n.applyKeyring(primary, keys); err != nil {
		return err
	}
	n.log.Info("gossip keyring reloaded", "keys", len(keys), "primary", GossipKeyFingerprint(primary))
	return nil
}

// applyKeyring makes the live keyring hold exactly keys with primary first. Keys are validated
// before anything changes, so an error leaves the keyring as it was. Caller holds gossipKeyMu.
func (n *Node) applyKeyring(primary []byte, keys [][]byte) error {
	for _, k := range keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("cluster: gossip key: %w", err)
		}
	}
	kr := n.keyring
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("cluster: install gossip key: %w", err)
		}
	}
	if err := kr.UseKey(primary); err != nil {
		return fmt.Errorf("cluster: use gossip key: %w", err)
	}
	keep := map[string]bool{}
	for _, k := range keys {
		keep[string(k)] = true
	}
	// A copy: RemoveKey compacts the keyring's slice in place, under an iteration over it.
	for _, k := range slices.Clone(kr.GetKeys()) {
		if !keep[string(k)] {
			if err := kr.RemoveKey(k); err != nil {
				return fmt.Errorf("cluster: remove gossip key: %w", err)
			}
		}
	}
	return nil
}

// GossipKeyOp is an operation of ChangeGossipKeys.
type GossipKeyOp int

// Gossip keyring operations.
const (
	// GossipKeyList changes nothing.
	GossipKeyList GossipKeyOp = iota
	// GossipKeyInstall adds a key as secondary (decrypts only); a present key is a no-op.
	GossipKeyInstall
	// GossipKeyUse makes an installed key primary (encrypts what this node sends).
	GossipKeyUse
	// GossipKeyPrune removes every key but the primary.
	GossipKeyPrune
)

// GossipKeyring is a node's gossip keyring as fingerprints (GossipKeyFingerprint): keys never
// leave the node.
type GossipKeyring struct {
	// Primary is the fingerprint of the key that encrypts.
	Primary string
	// Keys are the fingerprints of every key, primary first.
	Keys []string
}

// GossipKeyFingerprint identifies a gossip key without revealing it: the first 8 bytes of its
// SHA-256, in hex.
func GossipKeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// ChangeGossipKeys applies op (with key for Install and Use) to this node's keyring and writes
// the result to Config.GossipKeyFile first, so a restart keeps it and the file watcher agrees.
// It returns the keyring afterwards. Errors: ErrGossipPlaintext (no keyring),
// ErrGossipKeyNotInstalled (Use of an unknown key), ErrGossipKeyFile (the file cannot be
// written; nothing changed).
func (n *Node) ChangeGossipKeys(op GossipKeyOp, key []byte) (GossipKeyring, error) {
	n.gossipKeyMu.Lock()
	defer n.gossipKeyMu.Unlock()
	if n.cfg.GossipKeyFile == "" || n.keyring == nil {
		return GossipKeyring{}, ErrGossipPlaintext
	}
	keys := slices.Clone(n.keyring.GetKeys())
	primary := keys[0]
	has := slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, key) })
	changed := false
	switch op {
	case GossipKeyList:
	case GossipKeyInstall:
		if err := memberlist.ValidateKey(key); err != nil {
			return GossipKeyring{}, fmt.Errorf("cluster: gossip key: %w", err)
		}
		if !has {
			keys, changed = append(keys, key), true
		}
	case GossipKeyUse:
		if !has {
			return GossipKeyring{}, ErrGossipKeyNotInstalled
		}
		changed = !bytes.Equal(primary, key)
		primary = key
	case GossipKeyPrune:
		changed = len(keys) > 1
		keys = [][]byte{primary}
	default:
		return GossipKeyring{}, fmt.Errorf("cluster: unknown gossip key operation %d", op)
	}
	if changed {
		ordered := [][]byte{primary}
		for _, k := range keys {
			if !bytes.Equal(k, primary) {
				ordered = append(ordered, k)
			}
		}
		if err := tlsutil.WriteGossipKeys(n.cfg.GossipKeyFile, ordered); err != nil {
			n.log.Error("gossip keyring change refused: cannot write the key file", "error", err)
			return GossipKeyring{}, fmt.Errorf("%w: %w", ErrGossipKeyFile, err)
		}
		if err := n.applyKeyring(primary, ordered); err != nil {
			n.log.Error("gossip keyring change failed after writing the key file", "error", err)
			return GossipKeyring{}, err
		}
		n.log.Info("gossip keyring changed", "op", op, "keys", len(ordered), "primary", GossipKeyFingerprint(primary))
	}
	ring := GossipKeyring{Primary: GossipKeyFingerprint(n.keyring.GetPrimaryKey())}
	for _, k := range n.keyring.GetKeys() {
		ring.Keys = append(ring.Keys, GossipKeyFingerprint(k))
	}
	return ring, nil
}

func (n *Node) encodeMeta(hasState, ready bool) ([]byte, error) {
	meta, err := json.Marshal(memberMeta{ID: n.cfg.NodeID, RaftAddr: n.RaftAddr(), GRPCAddr: n.cfg.GRPCAdvertise,
		Voter: !n.cfg.NonVoter, Version: n.cfg.Version, HasState: hasState, Ready: ready,
		Cluster: n.ClusterID(), Nonce: n.nonce})
	if err != nil {
		return nil, fmt.Errorf("cluster: encode gossip metadata: %w", err)
	}
	if len(meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("cluster: gossip metadata is %d bytes, memberlist allows %d", len(meta), memberlist.MetaMaxSize)
	}
	return meta, nil
}

// announceState gossips that this node now has raft state, once, and adopts the cluster's id
// from the members that have state when this node has none recorded (it joined an existing
// cluster, or its data predates cluster ids).
func (n *Node) announceState() {
	if n.metaHasState && n.ClusterID() == "" {
		if id := n.membersCluster(); id != "" {
			if err := n.setClusterID(id); err != nil {
				n.log.Warn("recording the cluster id failed", "error", err)
			} else if err := n.gossipMeta(true, n.metaReady); err != nil {
				n.log.Warn("announcing the cluster id failed", "error", err)
			}
		}
	}
	if n.metaHasState {
		return
	}
	if has, err := raft.HasExistingState(n.store, n.store, noSnapshots{}); err != nil || !has {
		return
	}
	if err := n.gossipMeta(true, n.metaReady); err != nil {
		n.log.Warn("announcing raft state over gossip failed; will retry", "error", err)
		return
	}
	n.metaHasState = true
}

// gossipMeta publishes new metadata for this node and waits (briefly) for it to spread.
func (n *Node) gossipMeta(hasState, ready bool) error {
	meta, err := n.encodeMeta(hasState, ready)
	if err != nil {
		return err
	}
	n.delegate.setMeta(meta)
	return n.gossip.UpdateNode(time.Second)
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, port, nil
}

// membershipLoop joins gossip through the seeds, bootstraps the cluster when BootstrapExpect
// voters see each other and nobody has state yet, and, while leader, adds gossip members that
// are not in the raft configuration as non-voters and promotes caught-up ones (DESIGN §9).
// The same loop runs on first boot, restart and scale-up: that is what makes one command line
// serve all three.
func (n *Node) membershipLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	joined := len(n.cfg.Join) == 0
	for {
		if !joined {
			joined = n.joinSeeds()
		}
		n.announceState()
		if n.raft.State() == raft.Leader {
			n.reconcile()
		} else if n.cfg.BootstrapExpect > 0 {
			n.maybeBootstrap()
		}
		select {
		case <-n.shutdownCh:
			return
		case <-n.members.changed:
		case <-tick.C:
		}
	}
}

func (n *Node) joinSeeds() bool {
	var seeds []string
	for _, s := range n.cfg.Join {
		if s != n.GossipAddr() {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return true
	}
	got, err := n.gossip.Join(seeds)
	if got > 0 {
		n.log.Info("joined gossip", "contacted", got)
		return true
	}
	n.log.Debug("gossip join failed; retrying", "seeds", seeds, "error", err)
	return false
}

// maybeBootstrap bootstraps raft with the first BootstrapExpect alive voters (by id) once this
// node sees that many, if this node has no raft state and no leader is known. Every node that sees
// the same members computes the same configuration, and raft accepts identical bootstraps.
func (n *Node) maybeBootstrap() {
	if _, lid := n.raft.LeaderWithID(); lid != "" {
		return
	}
	if has, err := raft.HasExistingState(n.store, n.store, noSnapshots{}); err != nil || has {
		return
	}
	voters := []memberMeta{}
	for _, m := range n.members.alive() {
		if m.HasState {
			return // a cluster already exists: wait to be added to it
		}
		// Only members past their start-up check: a node still checking that it is not a wiped
		// member would find itself in our bootstrap configuration and refuse to start.
		if m.Voter && (m.Ready || m.ID == n.cfg.NodeID) {
			voters = append(voters, m)
		}
	}
	if len(voters) < n.cfg.BootstrapExpect {
		return
	}
	voters = voters[:n.cfg.BootstrapExpect]
	if n.ClusterID() == "" {
		id := ""
		for _, m := range voters {
			if m.Nonce != "" && (id == "" || m.Nonce < id) {
				id = m.Nonce
			}
		}
		if err := n.setClusterID(id); err != nil {
			n.log.Warn("recording the cluster id failed; not bootstrapping", "error", err)
			return
		}
	}
	cfg := raft.Configuration{}
	self := false
	for _, m := range voters {
		cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr), Suffrage: raft.Voter})
		self = self || m.ID == n.cfg.NodeID
	}
	if !self {
		return // a later node: it will be added by the leader
	}
	if err := n.raft.BootstrapCluster(cfg).Error(); err != nil {
		n.log.Warn("bootstrap failed", "error", err)
		return
	}
	n.log.Info("bootstrapped cluster", "voters", len(cfg.Servers), "cluster_id", n.ClusterID())
}

// noSnapshots lets HasExistingState look only at the log and stable store: a node that has
// snapshots also has a non-zero term in its stable store.
type noSnapshots struct{ raft.SnapshotStore }

func (noSnapshots) List() ([]*raft.SnapshotMeta, error) { return nil, nil }

// reconcile (leader only) brings gossip members into the raft configuration as non-voters and
// promotes voters-to-be once they are caught up. It never removes a voter because gossip says it
// is dead: that is an operator's decision (DESIGN §9).
func (n *Node) reconcile() {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		n.log.Warn("reading the raft configuration failed", "error", err)
		return
	}
	servers := map[string]raft.Server{}
	for _, s := range f.Configuration().Servers {
		servers[string(s.ID)] = s
	}
	for _, m := range n.members.alive() {
		s, ok := servers[m.ID]
		switch {
		case !ok && !m.Ready:
			continue // still checking that it is not a wiped member; it says when it is done
		case !ok && m.Cluster != "" && m.Cluster != n.ClusterID():
			n.log.Warn("not adding a member that holds another cluster's data", "id", m.ID, "its_cluster", m.Cluster,
				"cluster", n.ClusterID())
			continue
		case !ok && n.cfg.TLS != nil && !n.memberAnswersAs(m):
			continue // logged there; retried at the next reconcile
		case !ok:
			// A node re-using an address under a new id replaces the old entry first (rqlite #2778).
			for _, old := range servers {
				if string(old.Address) == m.RaftAddr {
					n.log.Info("removing server whose address a new node now uses", "old_id", old.ID, "new_id", m.ID)
					if err := n.raft.RemoveServer(old.ID, 0, 0).Error(); err != nil {
						n.log.Warn("removing stale server failed", "id", old.ID, "error", err)
						return
					}
				}
			}
			if err := n.raft.AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, 0).Error(); err != nil {
				n.log.Warn("adding non-voter failed", "id", m.ID, "error", err)
				continue
			}
			n.log.Info("added non-voter", "id", m.ID, "raft_addr", m.RaftAddr)
		case string(s.Address) != m.RaftAddr && s.Suffrage == raft.Nonvoter:
			if err := n.raft.AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, 0).Error(); err != nil {
				n.log.Warn("updating non-voter address failed", "id", m.ID, "error", err)
			}
		case s.Suffrage == raft.Nonvoter && m.Voter:
			n.maybePromote(m)
		}
	}
}

// memberAnswersAs reports whether the member answers its gRPC Status over mutual TLS with a
// node certificate issued for its own id. The handshake proves the certificate chains to this
// cluster's CA and names this cluster; the name in it must be the id the member gossips. Gossip
// alone is not enough to enter raft: the gossip key is shared by every node, so anyone holding a
// copy could announce themselves.
//
// A refused member is asked again only after refuseRecheck, so a stray node holding the gossip
// key costs one handshake and one warning per interval, not one per membership tick.
func (n *Node) memberAnswersAs(m memberMeta) bool {
	if t, ok := n.refusedAt[m.ID]; ok && time.Since(t) < refuseRecheck {
		return false
	}
	ok := n.checkMemberIdentity(m)
	if ok {
		delete(n.refusedAt, m.ID)
	} else {
		if n.refusedAt == nil {
			n.refusedAt = map[string]time.Time{}
		}
		n.refusedAt[m.ID] = time.Now()
	}
	return ok
}

// refuseRecheck is how long the leader waits before asking a refused gossip member again.
const refuseRecheck = 10 * time.Second

func (n *Node) checkMemberIdentity(m memberMeta) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := n.peers.client(m.GRPCAddr)
	var p peer.Peer
	if err == nil {
		_, err = c.Status(ctx, &cairnpb.StatusRequest{}, grpc.Peer(&p))
	}
	if err != nil {
		n.log.Warn("not adding gossip member: it does not answer over mutual TLS", "id", m.ID, "grpc_addr", m.GRPCAddr, "error", err)
		return false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		n.log.Warn("not adding gossip member: no TLS peer certificate", "id", m.ID)
		return false
	}
	id, err := tlsutil.ParseIdentity(info.State.PeerCertificates[0])
	if err != nil || id.Role != tlsutil.RoleNode || id.Name != m.ID {
		n.log.Warn("not adding gossip member: its certificate is not issued for its id", "id", m.ID,
			"certificate", id.String(), "error", err)
		return false
	}
	return true
}

// ErrWipedMember: this node has no raft state, yet the cluster's configuration already lists its
// id. Its data dir was wiped (or it is a copy): letting it take part would let an empty voter
// vote and lose committed entries.
var ErrWipedMember = errors.New("this node id is already a member of the cluster, but this node has no raft state")

// refuseIfWiped runs before raft starts on a node without raft state. If gossip shows members
// that have state (an existing cluster), it asks them, over their gRPC Status, whether the raft
// configuration already lists this node's id, and refuses to start if so. A fresh cluster (no
// member has state yet) skips the check; if no member with state answers within a few seconds,
// the node starts with a warning rather than never.
func (n *Node) refuseIfWiped() error {
	if len(n.cfg.Join) > 0 {
		n.joinSeeds()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var withState []memberMeta
		for _, m := range n.members.alive() {
			if m.HasState && m.ID != n.cfg.NodeID {
				withState = append(withState, m)
			}
		}
		if len(withState) == 0 {
			return nil // a new cluster, or nobody known yet: nothing can list us
		}
		for _, m := range withState {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := n.peers.status(ctx, m.GRPCAddr)
			cancel()
			if err != nil {
				continue
			}
			for _, member := range st.GetMembers() {
				if member.GetId() == n.cfg.NodeID {
					n.log.Error("refusing to start: the cluster already lists this node id, but this data dir has no raft state",
						"asked", m.ID, "suffrage", member.GetSuffrage(), "data_dir", n.cfg.DataDir)
					return fmt.Errorf("cluster: %w (asked %s): if the data dir was wiped, remove the old member first "+
						"(cairnctl remove %s) or start this node with a new --node-id", ErrWipedMember, m.ID, n.cfg.NodeID)
				}
			}
			return nil // a member answered without listing us: we are new
		}
		if time.Now().After(deadline) {
			n.log.Warn("no member with raft state answered; starting without the wiped-data-dir check")
			return nil
		}
		time.Sleep(100 * time.Millisecond) // waiting for a member's gRPC to answer, bounded
	}
}

// ErrOtherCluster: this node's data belongs to another cluster than the members it found.
var ErrOtherCluster = errors.New("this data dir belongs to another cluster")

const clusterIDFile = "cluster-id"

// ClusterID returns the id of the cluster whose data this node holds, "" before it has one.
func (n *Node) ClusterID() string {
	n.clusterMu.Lock()
	defer n.clusterMu.Unlock()
	return n.clusterID
}

// setClusterID records the cluster id in the data dir (fsynced) and in memory.
func (n *Node) setClusterID(id string) error {
	if id == "" {
		return errors.New("cluster: empty cluster id")
	}
	if err := writeFileAtomic(filepath.Join(n.cfg.DataDir, clusterIDFile), []byte(id+"\n")); err != nil {
		return fmt.Errorf("cluster: record cluster id: %w", err)
	}
	n.clusterMu.Lock()
	n.clusterID = id
	n.clusterMu.Unlock()
	n.log.Info("cluster id recorded", "cluster_id", id)
	return nil
}

func readClusterID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, clusterIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// membersCluster returns the cluster id the alive members with state agree on most.
func (n *Node) membersCluster() string {
	count := map[string]int{}
	best := ""
	for _, m := range n.members.alive() {
		if m.HasState && m.Cluster != "" && m.ID != n.cfg.NodeID {
			count[m.Cluster]++
			if count[m.Cluster] > count[best] {
				best = m.Cluster
			}
		}
	}
	return best
}

// refuseIfOtherCluster runs before raft starts on a node that has raft state and a recorded
// cluster id: if the members with state that it finds through its join seeds all belong to
// another cluster, this node's data dir is another cluster's (a copied or mixed-up volume), and
// joining would corrupt both. Joining exchanges the full member list, so one look after the join
// is enough; without seeds, or with nobody answering, the node starts.
func (n *Node) refuseIfOtherCluster() error {
	own := n.ClusterID()
	if own == "" || len(n.cfg.Join) == 0 || !n.joinSeeds() {
		return nil
	}
	other := ""
	for _, m := range n.members.alive() {
		if m.ID == n.cfg.NodeID || !m.HasState || m.Cluster == "" {
			continue
		}
		if m.Cluster == own {
			return nil // at least one member of our own cluster
		}
		other = m.Cluster
	}
	if other == "" {
		return nil
	}
	n.log.Error("refusing to start: this data dir belongs to another cluster than the members found",
		"data_cluster", own, "members_cluster", other, "data_dir", n.cfg.DataDir)
	return fmt.Errorf("cluster: %w: the data is of cluster %s, the members found are of cluster %s; "+
		"point this node at its own cluster, or give it an empty data dir and a new --node-id", ErrOtherCluster, own, other)
}

// writeFileAtomic writes data to path through a fsynced temporary file, a rename and a fsync of
// the directory: after a crash the file holds the old content or the new, never a part.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
