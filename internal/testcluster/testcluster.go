// Package testcluster runs a real Cairn cluster inside a test process: for each node a
// cluster.Node (raft, gossip, state machine) on loopback with raft timeouts shortened for tests,
// and a gRPC server with the api.Service in front of it. The client and cairnctl tests use it to
// talk to real nodes over real gRPC without building binaries.
package testcluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/cluster"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// apiNode adapts *cluster.Node to api.Node: the cluster exposes its state machine as FSM(), the
// api wants it as a Store.
type apiNode struct{ *cluster.Node }

// Store returns the node's state machine.
func (a apiNode) Store() api.Store { return a.FSM() }

// Node is one in-process node.
type Node struct {
	*cluster.Node
	// Addr is the node's gRPC address.
	Addr string
	// Service is the node's API service.
	Service *api.Service
	// TLS is the node's TLS material, nil without TLS.
	TLS *tlsutil.Loader

	server   *grpc.Server
	stopOnce sync.Once
	served   chan struct{}
	stopped  atomic.Bool
}

// Kill stops the node abruptly, as a crash would: raft and gossip stop without a leadership
// transfer or a gossip leave, and the gRPC server closes its listener and connections. It is
// idempotent.
func (n *Node) Kill() {
	n.stopOnce.Do(func() {
		n.stopped.Store(true)
		_ = n.Node.Kill()
		n.server.Stop()
		<-n.served
		_ = n.Service.Close()
	})
}

// Stopped reports whether Kill was called.
func (n *Node) Stopped() bool { return n.stopped.Load() }

// Cluster is a set of in-process nodes.
type Cluster struct {
	Nodes []*Node
	// TLSDir holds the cluster's TLS material (tlsutil.WriteDev layout) when it runs with TLS.
	TLSDir string

	opts   Options
	logger *slog.Logger
	base   string
	seeds  []string
}

// ClusterName is the cluster name in the certificates of a TLS test cluster.
const ClusterName = "test"

// Options tunes a cluster; the zero value is the default.
type Options struct {
	// API configures every node's service; zero fields take api.DefaultConfig values.
	API api.Config
	// LogLevel is the level of the nodes' logs, written to the test's output (default warn).
	LogLevel slog.Level
	// TLS runs every channel under mutual TLS with gossip encryption, from material New writes
	// into Cluster.TLSDir: nodes node1..nodeN and a client "admin" (ClientTLS).
	TLS bool
	// Logs, when set, also receives every node's log lines (text format) until the test ends.
	Logs io.Writer
}

// Security is the TLS material of one node; the zero value means plaintext (dev mode).
type Security struct {
	// Files are the node's CA, certificate and key.
	Files tlsutil.Files
	// Cluster is the cluster name its peers must carry (empty: the one in its certificate).
	Cluster string
	// GossipKeyFile is its gossip keyring.
	GossipKeyFile string
}

// New starts size nodes that bootstrap one cluster through gossip, waits until every node agrees
// on a leader and knows its gRPC address, and stops everything when the test ends.
func New(t testing.TB, size int) *Cluster {
	t.Helper()
	return NewWithOptions(t, size, Options{LogLevel: slog.LevelWarn})
}

// NewWithOptions is New with options.
func NewWithOptions(t testing.TB, size int, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{opts: opts, logger: testLogger(t, opts.LogLevel, opts.Logs), base: t.TempDir()}
	if opts.TLS {
		c.TLSDir = filepath.Join(c.base, "tls")
		var ids []string
		for i := range size {
			ids = append(ids, fmt.Sprintf("node%d", i+1))
		}
		if err := tlsutil.WriteDev(tlsutil.DevOptions{Dir: c.TLSDir, Cluster: ClusterName, Nodes: ids,
			Hosts: []string{"127.0.0.1"}, Clients: []string{"admin"}}); err != nil {
			t.Fatalf("TLS material: %v", err)
		}
	}
	for i := range size {
		id := fmt.Sprintf("node%d", i+1)
		n := c.StartNode(t, id, size, c.NodeSecurity(id))
		if i == 0 {
			c.seeds = []string{n.GossipAddr()}
		}
		c.Nodes = append(c.Nodes, n)
	}
	c.WaitLeader(t)
	return c
}

// NodeSecurity returns the material of node id in TLSDir (zero without TLS).
func (c *Cluster) NodeSecurity(id string) Security {
	if c.TLSDir == "" {
		return Security{}
	}
	return Security{Files: tlsutil.NodeFiles(c.TLSDir, id), Cluster: ClusterName,
		GossipKeyFile: filepath.Join(c.TLSDir, tlsutil.GossipKeyFile)}
}

// ClientTLS returns the TLS configuration of the cluster's "admin" client certificate, for
// client.WithTLS or grpc credentials.
func (c *Cluster) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	f := tlsutil.ClientFiles(c.TLSDir, "admin")
	l, err := tlsutil.Load(f, ClusterName, c.logger)
	if err != nil {
		t.Fatalf("client TLS: %v", err)
	}
	return l.ClientConfig(tlsutil.ProtoGRPC, tlsutil.RoleNode)
}

// StartNode starts one node with id, joining through the cluster's first node (if any), with
// bootstrapExpect (0: wait to be added) and sec (zero: plaintext). It is stopped when the test
// ends. The returned node is not added to c.Nodes: New does that for its own nodes, and tests
// use StartNode directly for extra or impostor nodes.
func (c *Cluster) StartNode(t testing.TB, id string, bootstrapExpect int, sec Security) *Node {
	t.Helper()
	var tl *tlsutil.Loader
	if sec.Files.Any() {
		var err error
		if tl, err = tlsutil.Load(sec.Files, sec.Cluster, c.logger.With("node", id, "component", "tls")); err != nil {
			t.Fatalf("node %s TLS: %v", id, err)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	cn, err := cluster.Open(cluster.Config{
		NodeID:             id,
		DataDir:            filepath.Join(c.base, id),
		RaftBind:           "127.0.0.1:0",
		GossipBind:         "127.0.0.1:0",
		GRPCAdvertise:      lis.Addr().String(),
		Join:               c.seeds,
		BootstrapExpect:    bootstrapExpect,
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 300 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		Logger:             c.logger,
		TLS:                tl,
		GossipKeyFile:      sec.GossipKeyFile,
	})
	if err != nil {
		_ = lis.Close()
		t.Fatalf("open node %s: %v", id, err)
	}
	cfg := c.opts.API
	var srvOpts []grpc.ServerOption
	if tl != nil {
		cfg.Dialer = api.SecureDialer(cfg, nil, tl.GRPCClientCredentials())
		srvOpts = append(srvOpts, grpc.Creds(tl.GRPCServerCredentials(tlsutil.RoleNode, tlsutil.RoleClient)))
	}
	svc := api.NewService(apiNode{cn}, cfg, c.logger)
	srv := grpc.NewServer(append(svc.ServerOptions(), srvOpts...)...)
	svc.Register(srv)
	n := &Node{Node: cn, Addr: lis.Addr().String(), Service: svc, TLS: tl, server: srv, served: make(chan struct{})}
	go func() {
		defer close(n.served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(n.Kill)
	return n
}

// testLogger writes to the test's output until the test's cleanups are done, and nowhere after,
// so that a log line from a goroutine that outlives the test cannot fail it.
func testLogger(t testing.TB, level slog.Level, also io.Writer) *slog.Logger {
	w := &gateWriter{w: t.Output()}
	if also != nil {
		w.w = io.MultiWriter(w.w, also)
	}
	t.Cleanup(w.close) // registered first, so it runs after every node is stopped
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type gateWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

// Write passes p on until close, and drops it after.
func (g *gateWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gateWriter) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Addrs returns the gRPC addresses of every node, killed ones included.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Live returns the nodes not killed.
func (c *Cluster) Live() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if !n.Stopped() {
			out = append(out, n)
		}
	}
	return out
}

// WaitLeader waits (15 s at most) until every live node agrees on one leader and knows its gRPC
// address, and returns that leader.
func (c *Cluster) WaitLeader(t testing.TB) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if l := c.agreedLeader(); l != nil {
			return l
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no leader agreed on by all live nodes within 15s")
			return nil
		case <-tick.C:
		}
	}
}

func (c *Cluster) agreedLeader() *Node {
	live := c.Live()
	var leader *Node
	for _, n := range live {
		if n.IsLeader() {
			leader = n
		}
	}
	if leader == nil {
		return nil
	}
	for _, n := range live {
		if id, addr := n.Leader(); id != leader.ID() || addr != leader.Addr {
			return nil
		}
	}
	return leader
}

// Followers returns the live nodes other than leader.
func (c *Cluster) Followers(leader *Node) []*Node {
	var out []*Node
	for _, n := range c.Live() {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}
