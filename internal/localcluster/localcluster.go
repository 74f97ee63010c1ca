// Package localcluster runs a Cairn cluster as real cairnd processes on loopback, for system
// tests, benchmarks and jepsen-lite's local driver. It starts, signals (kill -9, SIGSTOP,
// SIGTERM), restarts and reaps the processes, and keeps each node's data dir and log across
// restarts.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// Options configures a cluster.
type Options struct {
	// Binary is the path of the cairnd executable (see Build).
	Binary string
	// Dir holds one sub-directory per node (data and log).
	Dir string
	// Nodes is the cluster size.
	Nodes int
	// ExtraArgs are appended to every node's command line (e.g. faster raft timeouts).
	ExtraArgs []string
	// Token, when set, is sent as a bearer token on every call of the nodes' connections
	// (Conn, Events, Cluster, Status, WaitLeader): the admin token of a cluster started with
	// --auth.
	Token string
	// TLS runs the nodes with mutual TLS and gossip encryption, from material Start writes into
	// <Dir>/tls (tlsutil.WriteDev: cluster "local", a node certificate per node, a client
	// "admin" that Conn uses). Without it the nodes run with --dev-insecure.
	TLS bool
}

// TLSClusterName is the cluster name of a TLS local cluster.
const TLSClusterName = "local"

// bearer is per-RPC credentials sending a bearer token over a plaintext loopback connection.
type bearer string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: loopback needs no TLS.
func (bearer) RequireTransportSecurity() bool { return false }

// Node is one cairnd process slot: its addresses and data survive restarts.
type Node struct {
	ID                         string
	GRPCAddr, RaftAddr, Gossip string
	DataDir, LogPath           string
	args                       []string
	binary                     string
	token                      string
	creds                      credentials.TransportCredentials

	paused atomic.Bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
	conn    *grpc.ClientConn
}

// Cluster is a set of nodes.
type Cluster struct {
	// Nodes are the node slots, in start order. AddNode appends to it: goroutines other than
	// the one that calls AddNode must use Members instead.
	Nodes []*Node
	opts  Options
	join  []string
	mu    sync.Mutex // guards Nodes against AddNode
}

// Members returns a copy of the node list, safe to use while another goroutine calls AddNode.
func (c *Cluster) Members() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.Nodes...)
}

// Build compiles cairnd (static, like the release build) into dir and returns its path.
func Build(ctx context.Context, moduleDir, dir string) (string, error) {
	out := filepath.Join(dir, "cairnd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/node")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("localcluster: build cairnd: %w\n%s", err, b)
	}
	return out, nil
}

// freePorts reserves n distinct loopback TCP ports that are also free for UDP (gossip uses both).
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken for UDP: keep the TCP one reserved and try another
		}
		u.Close()
		ports = append(ports, port)
	}
	return ports, nil
}

// Start launches the cluster: every node with the same join list and bootstrap-expect.
func Start(opts Options) (*Cluster, error) {
	ports, err := freePorts(3 * opts.Nodes)
	if err != nil {
		return nil, fmt.Errorf("localcluster: reserve ports: %w", err)
	}
	c := &Cluster{opts: opts}
	for i := range opts.Nodes {
		c.join = append(c.join, fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]))
	}
	if opts.TLS {
		var ids []string
		for i := range opts.Nodes {
			ids = append(ids, fmt.Sprintf("n%d", i+1))
		}
		if err := c.writeTLS(ids...); err != nil {
			return nil, err
		}
	}
	for i := range opts.Nodes {
		n, err := c.newNode(fmt.Sprintf("n%d", i+1), ports[3*i:3*i+3], opts.Nodes)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// TLSDir is the folder of the cluster's TLS material ("" without TLS).
func (c *Cluster) TLSDir() string {
	if !c.opts.TLS {
		return ""
	}
	return filepath.Join(c.opts.Dir, "tls")
}

// writeTLS issues node certificates for ids (and the admin client's) from the cluster's CA,
// creating the CA and gossip key on first use.
func (c *Cluster) writeTLS(ids ...string) error {
	err := tlsutil.WriteDev(tlsutil.DevOptions{Dir: c.TLSDir(), Cluster: TLSClusterName, Nodes: ids,
		Hosts: []string{"127.0.0.1"}, Clients: []string{"admin"}})
	if err != nil {
		return fmt.Errorf("localcluster: TLS material: %w", err)
	}
	return nil
}

// securityArgs returns node id's TLS flags, or --dev-insecure.
func (c *Cluster) securityArgs(id string) []string {
	if !c.opts.TLS {
		return []string{"--dev-insecure"}
	}
	f := tlsutil.NodeFiles(c.TLSDir(), id)
	return []string{"--tls-ca", f.CA, "--tls-cert", f.Cert, "--tls-key", f.Key, "--cluster-name", TLSClusterName,
		"--gossip-key-file", filepath.Join(c.TLSDir(), tlsutil.GossipKeyFile)}
}

// clientCreds returns the transport credentials of Conn: the admin client certificate with
// TLS, plaintext without.
func (c *Cluster) clientCreds() (credentials.TransportCredentials, error) {
	if !c.opts.TLS {
		return insecure.NewCredentials(), nil
	}
	l, err := tlsutil.Load(tlsutil.ClientFiles(c.TLSDir(), "admin"), TLSClusterName, nil)
	if err != nil {
		return nil, fmt.Errorf("localcluster: client TLS: %w", err)
	}
	return credentials.NewTLS(l.ClientConfig(tlsutil.ProtoGRPC, tlsutil.RoleNode)), nil
}

func (c *Cluster) newNode(id string, ports []int, bootstrapExpect int, extra ...string) (*Node, error) {
	dir := filepath.Join(c.opts.Dir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	creds, err := c.clientCreds()
	if err != nil {
		return nil, err
	}
	n := &Node{
		ID: id, binary: c.opts.Binary, token: c.opts.Token, creds: creds,
		GRPCAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		RaftAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		Gossip:   fmt.Sprintf("127.0.0.1:%d", ports[2]),
		DataDir:  filepath.Join(dir, "data"), LogPath: filepath.Join(dir, "cairnd.log"),
	}
	n.args = append([]string{
		"--node-id", id, "--data-dir", n.DataDir,
		"--grpc-bind", n.GRPCAddr, "--raft-bind", n.RaftAddr, "--gossip-bind", n.Gossip,
		"--join", strings.Join(c.join, ","), "--bootstrap-expect", fmt.Sprint(bootstrapExpect),
		"--log-format", "json",
	}, c.securityArgs(id)...)
	n.args = append(n.args, c.opts.ExtraArgs...)
	n.args = append(n.args, extra...)
	return n, nil
}

// AddNode starts one more node with the cluster's join list and no bootstrap: the scale-up path,
// where the leader adds it as a non-voter and promotes it once caught up.
func (c *Cluster) AddNode(extraArgs ...string) (*Node, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("n%d", len(c.Nodes)+1)
	if c.opts.TLS {
		if err := c.writeTLS(id); err != nil {
			return nil, err
		}
	}
	n, err := c.newNode(id, ports, 0, extraArgs...)
	if err != nil {
		return nil, err
	}
	if err := n.Start(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.Nodes = append(c.Nodes, n)
	c.mu.Unlock()
	return n, nil
}

// Start (re)starts the node's process; its log is appended to LogPath.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && !n.exitedLocked() {
		return fmt.Errorf("localcluster: %s is already running", n.ID)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(n.binary, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, so signals to the test runner do not reach the nodes and a kill reaps all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("localcluster: start %s: %w", n.ID, err)
	}
	exited := make(chan struct{})
	n.cmd, n.exited, n.exitErr = cmd, exited, nil
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		n.exitErr = err
		n.mu.Unlock()
		close(exited)
	}()
	return nil
}

func (n *Node) exitedLocked() bool {
	select {
	case <-n.exited:
		return true
	default:
		return false
	}
}

// Running reports whether the process is alive (possibly paused).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil && !n.exitedLocked()
}

func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.exitedLocked() {
		return fmt.Errorf("localcluster: %s is not running", n.ID)
	}
	return n.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL (kill -9) and waits for the process to be reaped.
func (n *Node) Kill() error {
	if err := n.signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-n.exitCh()
	return nil
}

// Stop sends SIGTERM (graceful shutdown) and waits up to timeout, then kills.
func (n *Node) Stop(timeout time.Duration) error {
	if err := n.signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-n.exitCh():
		return nil
	case <-time.After(timeout):
		_ = n.Kill()
		return fmt.Errorf("localcluster: %s did not stop within %v; killed", n.ID, timeout)
	}
}

// Wait waits up to timeout for the process to exit by itself and returns its exit error (nil for
// a clean exit); err is set when it is still running at the deadline.
func (n *Node) Wait(timeout time.Duration) (exitErr, err error) {
	select {
	case <-n.exitCh():
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.exitErr, nil
	case <-time.After(timeout):
		return nil, fmt.Errorf("localcluster: %s still running after %v", n.ID, timeout)
	}
}

// Pause freezes the process (SIGSTOP); Resume thaws it (SIGCONT).
func (n *Node) Pause() error {
	err := n.signal(syscall.SIGSTOP)
	if err == nil {
		n.paused.Store(true)
	}
	return err
}

// Resume thaws a paused process (SIGCONT).
func (n *Node) Resume() error {
	n.paused.Store(false)
	return n.signal(syscall.SIGCONT)
}

// Paused reports whether the process was frozen with Pause and not resumed since.
func (n *Node) Paused() bool { return n.paused.Load() }

func (n *Node) exitCh() chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exited
}

// Conn returns a gRPC connection to the node's API (kept across restarts).
func (n *Node) Conn() (*grpc.ClientConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn == nil {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(n.creds)}
		if n.token != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(bearer(n.token)))
		}
		cc, err := grpc.NewClient(n.GRPCAddr, opts...)
		if err != nil {
			return nil, err
		}
		n.conn = cc
	}
	return n.conn, nil
}

// Events returns an Events client for the node.
func (n *Node) Events() cairnpb.EventsClient {
	cc, err := n.Conn()
	if err != nil {
		panic(err) // NewClient only fails on malformed targets, which we build ourselves
	}
	return cairnpb.NewEventsClient(cc)
}

// Cluster returns a Cluster (admin) client for the node.
func (n *Node) Cluster() cairnpb.ClusterClient {
	cc, err := n.Conn()
	if err != nil {
		panic(err) // NewClient only fails on malformed targets, which we build ourselves
	}
	return cairnpb.NewClusterClient(cc)
}

// Status asks the node for its status.
func (n *Node) Status(ctx context.Context) (*cairnpb.StatusResponse, error) {
	cc, err := n.Conn()
	if err != nil {
		return nil, err
	}
	return cairnpb.NewClusterClient(cc).Status(ctx, &cairnpb.StatusRequest{})
}

// WaitLeader waits until every running, unpaused node in nodes reports the same leader, and
// returns that leader.
func (c *Cluster) WaitLeader(ctx context.Context, nodes ...*Node) (*Node, error) {
	if len(nodes) == 0 {
		nodes = c.Nodes
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		leader, err := c.agreedLeader(ctx, nodes)
		if err == nil {
			return leader, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("localcluster: no agreed leader: %w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func (c *Cluster) agreedLeader(ctx context.Context, nodes []*Node) (*Node, error) {
	var leaderID string
	for _, n := range nodes {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := n.Status(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.ID, err)
		}
		if st.GetLeaderId() == "" || (leaderID != "" && st.GetLeaderId() != leaderID) {
			return nil, fmt.Errorf("%s sees leader %q", n.ID, st.GetLeaderId())
		}
		leaderID = st.GetLeaderId()
	}
	for _, n := range nodes {
		if n.ID == leaderID {
			return n, nil
		}
	}
	return nil, fmt.Errorf("leader %q is not among the nodes asked", leaderID)
}

// Close kills every process and closes connections.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.Nodes {
		if n.Running() {
			errs = append(errs, n.Kill())
		}
		n.mu.Lock()
		if n.conn != nil {
			errs = append(errs, n.conn.Close())
			n.conn = nil
		}
		n.mu.Unlock()
	}
	return errors.Join(errs...)
}
