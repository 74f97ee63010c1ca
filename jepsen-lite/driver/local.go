package driver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/cairndb/cairn/jepsen-lite/proxy"
)

// LocalOptions configure the local driver.
type LocalOptions struct {
	// Binary is the cairnd executable.
	Binary string
	// Dir is the run directory; node n keeps its data and log in Dir/nodes/<n>/.
	Dir string
	// Nodes is the initial cluster size.
	Nodes int
	// ExtraArgs are appended to every node's command line (raft timings, snapshot settings).
	ExtraArgs []string
	// Env is added to every node's environment (CAIRN_BUG=... for canaries).
	Env []string
	// Seed drives the proxies' loss and jitter draws.
	Seed uint64
}

// Loopback layout: a run takes the block 127.A.B.0/24 (A, B random, so concurrent runs do not
// collide); node i binds every listener on 127.A.B.i, and its two proxies listen on the same IP.
const (
	portGRPC        = 7101
	portRaft        = 7201
	portGossip      = 7301
	portGRPCProxy   = 8101
	portRaftProxy   = 8201
	maxLocalNodes   = 9
	stopGracePeriod = 10 * time.Second
)

type localNode struct {
	id, ip                string
	grpc, raft, gossip    string
	raftProxy, grpcProxy  *proxy.Proxy
	dir, dataDir, logPath string
	bootstrapExpect       int
	proc                  *process
}

// Local runs cairnd processes on loopback behind per-link proxies.
type Local struct {
	opts  LocalOptions
	net   *proxy.Net
	conns conns
	block string // "127.A.B."

	mu      sync.Mutex
	nodes   map[string]*localNode
	order   []string
	nextIdx int
	closed  bool
}

// NewLocal prepares a local cluster; Start launches it.
func NewLocal(opts LocalOptions) (*Local, error) {
	if opts.Nodes < 1 || opts.Nodes > maxLocalNodes-2 {
		return nil, fmt.Errorf("driver: local cluster size %d: want 1..%d", opts.Nodes, maxLocalNodes-2)
	}
	if opts.Binary == "" || opts.Dir == "" {
		return nil, errors.New("driver: LocalOptions.Binary and Dir are required")
	}
	l := &Local{opts: opts, net: proxy.NewNet(opts.Seed), nodes: map[string]*localNode{}}
	var err error
	if l.block, err = pickBlock(); err != nil {
		return nil, err
	}
	return l, nil
}

// pickBlock finds a 127.A.B.0/24 block whose node ports are free.
func pickBlock() (string, error) {
	var b [2]byte
	for attempt := 0; attempt < 20; attempt++ {
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("driver: %w", err)
		}
		block := fmt.Sprintf("127.%d.%d.", 1+int(b[0])%254, 1+int(b[1])%254)
		free := true
		for i := 1; i <= maxLocalNodes && free; i++ {
			for _, port := range []int{portGRPC, portRaft, portGossip, portGRPCProxy, portRaftProxy} {
				ln, err := net.Listen("tcp", fmt.Sprintf("%s%d:%d", block, i, port))
				if err != nil {
					free = false
					break
				}
				ln.Close()
			}
		}
		if free {
			return block, nil
		}
	}
	return "", errors.New("driver: no free loopback block found")
}

// Name implements Driver.
func (l *Local) Name() string { return "local" }

// Caps implements Driver.
func (l *Local) Caps() Caps { return Caps{Links: true, AddNode: true, Replace: true} }

func (l *Local) seeds() string {
	var s []string
	for i := 1; i <= l.opts.Nodes; i++ {
		s = append(s, fmt.Sprintf("%s%d:%d", l.block, i, portGossip))
	}
	return strings.Join(s, ",")
}

// newNode allocates slot idx (1-based) to a node id and starts its proxies.
func (l *Local) newNode(id string, idx, bootstrapExpect int) (*localNode, error) {
	ip := fmt.Sprintf("%s%d", l.block, idx)
	n := &localNode{id: id, ip: ip,
		grpc: fmt.Sprintf("%s:%d", ip, portGRPC), raft: fmt.Sprintf("%s:%d", ip, portRaft),
		gossip: fmt.Sprintf("%s:%d", ip, portGossip), bootstrapExpect: bootstrapExpect}
	n.dir = filepath.Join(l.opts.Dir, "nodes", id)
	n.dataDir, n.logPath = filepath.Join(n.dir, "data"), filepath.Join(n.dir, "cairnd.log")
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	l.net.SetNodeIP(id, ip)
	var err error
	if n.raftProxy, err = l.net.Listen(id, fmt.Sprintf("%s:%d", ip, portRaftProxy), n.raft); err != nil {
		return nil, err
	}
	if n.grpcProxy, err = l.net.Listen(id, fmt.Sprintf("%s:%d", ip, portGRPCProxy), n.grpc); err != nil {
		return nil, err
	}
	return n, nil
}

func (l *Local) args(n *localNode) []string {
	a := []string{
		"--node-id", n.id, "--data-dir", n.dataDir,
		"--grpc-bind", n.grpc, "--grpc-advertise", n.grpcProxy.Addr(),
		"--raft-bind", n.raft, "--raft-advertise", n.raftProxy.Addr(),
		"--gossip-bind", n.gossip,
		"--join", l.seeds(), "--bootstrap-expect", fmt.Sprint(n.bootstrapExpect),
		"--log-format", "json",
		// Plaintext on purpose: jepsen-lite checks consistency under faults, and its proxies and
		// history need no TLS. Mutual TLS has its own tests (api/tls_test.go, systemtest).
		"--dev-insecure",
	}
	return append(a, l.opts.ExtraArgs...)
}

// Start implements Driver.
func (l *Local) Start(ctx context.Context) error {
	l.mu.Lock()
	for i := 1; i <= l.opts.Nodes; i++ {
		id := fmt.Sprintf("n%d", i)
		n, err := l.newNode(id, i, l.opts.Nodes)
		if err != nil {
			l.mu.Unlock()
			return err
		}
		l.nodes[id], l.order = n, append(l.order, id)
	}
	l.nextIdx = l.opts.Nodes + 1
	l.mu.Unlock()
	for _, id := range l.Nodes() {
		if err := l.StartNode(id); err != nil {
			return err
		}
	}
	if _, err := WaitLeader(ctx, l); err != nil {
		return fmt.Errorf("driver: cluster did not elect a leader: %w", err)
	}
	return nil
}

func (l *Local) node(id string) (*localNode, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.nodes[id]
	if !ok {
		return nil, fmt.Errorf("driver: no node %q", id)
	}
	return n, nil
}

// Nodes implements Driver.
func (l *Local) Nodes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]string(nil), l.order...)
	sort.Strings(out)
	return out
}

// Conn implements Driver: clients talk to the node directly, not through its proxy.
func (l *Local) Conn(id string) *grpc.ClientConn {
	n, err := l.node(id)
	if err != nil {
		return l.conns.get("127.0.0.1:1") // unknown node: a connection that never works
	}
	return l.conns.get(n.grpc)
}

// StartNode implements Driver.
func (l *Local) StartNode(id string) error {
	n, err := l.node(id)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("driver: closed")
	}
	if n.proc != nil && n.proc.alive() {
		return fmt.Errorf("driver: %s is already running", id)
	}
	p, err := startProcess(l.opts.Binary, l.args(n), l.opts.Env, n.logPath)
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

func (l *Local) proc(id string) (*process, error) {
	n, err := l.node(id)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n.proc == nil {
		return nil, fmt.Errorf("driver: %s was never started", id)
	}
	return n.proc, nil
}

// Kill implements Driver.
func (l *Local) Kill(id string) error {
	p, err := l.proc(id)
	if err != nil {
		return err
	}
	return p.kill()
}

// Pause implements Driver.
func (l *Local) Pause(id string) error {
	p, err := l.proc(id)
	if err != nil {
		return err
	}
	return p.pause()
}

// Resume implements Driver.
func (l *Local) Resume(id string) error {
	p, err := l.proc(id)
	if err != nil {
		return err
	}
	return p.resume()
}

// Running implements Driver.
func (l *Local) Running(id string) bool {
	p, err := l.proc(id)
	return err == nil && p.alive()
}

// Paused reports whether the node is frozen.
func (l *Local) Paused(id string) bool {
	p, err := l.proc(id)
	return err == nil && p.isPaused()
}

// SetLink implements Driver.
func (l *Local) SetLink(src, dst string, f proxy.Fault) error {
	l.net.Set(src, dst, f)
	return nil
}

// Isolate implements Driver.
func (l *Local) Isolate(id string) error {
	for _, o := range l.Nodes() {
		if o != id {
			l.net.Set(id, o, proxy.Fault{Blackhole: true})
			l.net.Set(o, id, proxy.Fault{Blackhole: true})
		}
	}
	return nil
}

// Rejoin implements Driver.
func (l *Local) Rejoin(id string) error {
	for _, o := range l.Nodes() {
		if o != id {
			l.net.Set(id, o, proxy.Fault{})
			l.net.Set(o, id, proxy.Fault{})
		}
	}
	return nil
}

// HealNetwork implements Driver.
func (l *Local) HealNetwork() error {
	l.net.HealAll()
	return nil
}

// LinkFaults returns the active link faults, keyed "src->dst".
func (l *Local) LinkFaults() map[string]proxy.Fault { return l.net.Faults() }

// AddNode implements Driver: a new node with the same join list and no bootstrap, which the
// leader adds as a non-voter and promotes once caught up.
func (l *Local) AddNode(ctx context.Context) (string, error) {
	l.mu.Lock()
	if l.nextIdx > maxLocalNodes {
		l.mu.Unlock()
		return "", fmt.Errorf("driver: at most %d local nodes", maxLocalNodes)
	}
	idx := l.nextIdx
	l.nextIdx++
	id := fmt.Sprintf("n%d", idx)
	n, err := l.newNode(id, idx, 0)
	if err != nil {
		l.mu.Unlock()
		return "", err
	}
	l.nodes[id], l.order = n, append(l.order, id)
	l.mu.Unlock()
	return id, l.StartNode(id)
}

// Replace implements Driver: the node is killed, its data wiped, and it starts again as
// <id>r<k> on the same addresses (proxies included); the leader then removes the old id
// (same raft address) and adds the new one as a non-voter.
func (l *Local) Replace(ctx context.Context, id string) (string, error) {
	n, err := l.node(id)
	if err != nil {
		return "", err
	}
	if err := l.Kill(id); err != nil {
		return "", err
	}
	if err := os.RemoveAll(n.dataDir); err != nil {
		return "", fmt.Errorf("driver: wipe %s: %w", id, err)
	}
	l.mu.Lock()
	base, k := id, 1
	if i := strings.Index(id, "r"); i > 0 {
		base = id[:i]
		fmt.Sscanf(id[i+1:], "%d", &k)
		k++
	}
	newID := fmt.Sprintf("%sr%d", base, k)
	nn := *n
	nn.id, nn.bootstrapExpect, nn.proc = newID, 0, nil
	nn.dir = filepath.Join(l.opts.Dir, "nodes", newID)
	nn.dataDir, nn.logPath = filepath.Join(nn.dir, "data"), filepath.Join(nn.dir, "cairnd.log")
	if err := os.MkdirAll(nn.dir, 0o755); err != nil {
		l.mu.Unlock()
		return "", fmt.Errorf("driver: %w", err)
	}
	delete(l.nodes, id)
	for i, o := range l.order {
		if o == id {
			l.order = append(l.order[:i:i], l.order[i+1:]...)
			break
		}
	}
	l.nodes[newID], l.order = &nn, append(l.order, newID)
	l.net.SetNodeIP(newID, nn.ip)
	nn.raftProxy.SetDst(newID)
	nn.grpcProxy.SetDst(newID)
	l.mu.Unlock()
	return newID, l.StartNode(newID)
}

// LogPaths implements Driver (including nodes that were replaced).
func (l *Local) LogPaths() map[string]string {
	out := map[string]string{}
	entries, _ := os.ReadDir(filepath.Join(l.opts.Dir, "nodes"))
	for _, e := range entries {
		p := filepath.Join(l.opts.Dir, "nodes", e.Name(), "cairnd.log")
		if _, err := os.Stat(p); err == nil {
			out[e.Name()] = p
		}
	}
	return out
}

// Collect implements Driver: logs are written in place.
func (l *Local) Collect(context.Context) error { return nil }

// Close implements Driver.
func (l *Local) Close(keepData bool) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	nodes := make([]*localNode, 0, len(l.nodes))
	for _, n := range l.nodes {
		nodes = append(nodes, n)
	}
	l.mu.Unlock()
	var (
		errs []error
		emu  sync.Mutex
		wg   sync.WaitGroup
	)
	for _, n := range nodes {
		if n.proc != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := n.proc.kill(); err != nil {
					emu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", n.id, err))
					emu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	l.conns.closeAll()
	errs = append(errs, l.net.Close())
	if !keepData {
		entries, _ := os.ReadDir(filepath.Join(l.opts.Dir, "nodes"))
		for _, e := range entries {
			errs = append(errs, os.RemoveAll(filepath.Join(l.opts.Dir, "nodes", e.Name(), "data")))
		}
	}
	return errors.Join(errs...)
}
