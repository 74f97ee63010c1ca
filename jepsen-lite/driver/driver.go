// Package driver runs the cluster under test for jepsen-lite and injects process and network
// faults into it. Two drivers exist: Local (cairnd processes on loopback, every raft and
// forwarding link through the in-harness proxy, so faults are per directed link) and Compose (the
// repository's docker-compose cluster, faults through docker: kill, pause, network disconnect).
// Both start, reap and clean up everything they start, also when the run fails.
package driver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/jepsen-lite/proxy"
)

// ErrUnsupported is returned for a fault the driver cannot inject.
var ErrUnsupported = errors.New("driver: fault not supported by this driver")

// Caps says which faults a driver can inject beyond kill, pause and isolate.
type Caps struct {
	// Links: per directed link faults (one-way cuts, partial partitions, delay, loss).
	Links bool
	// AddNode: start a new node that joins the running cluster (scale-up).
	AddNode bool
	// Replace: wipe a node and restart it under a new id at the same address.
	Replace bool
}

// Driver is a cluster under test. Node ids are the cairnd --node-id values. Methods are safe for
// concurrent use.
type Driver interface {
	// Name is "local" or "compose".
	Name() string
	Caps() Caps
	// Start starts the cluster and returns once every node agrees on a leader.
	Start(ctx context.Context) error
	// Nodes lists the current node ids, sorted.
	Nodes() []string
	// Conn is a gRPC connection to node's client address (it reconnects across restarts).
	Conn(node string) *grpc.ClientConn
	// Kill sends SIGKILL to the node and waits until it is gone.
	Kill(node string) error
	// StartNode starts a killed or stopped node again.
	StartNode(node string) error
	// Pause freezes the node (SIGSTOP / cgroup freeze); Resume thaws it.
	Pause(node string) error
	Resume(node string) error
	// Running reports whether the node's process exists (possibly paused).
	Running(node string) bool
	// SetLink sets the fault of bytes flowing from src to dst (Caps.Links).
	SetLink(src, dst string, f proxy.Fault) error
	// Isolate cuts node off from every other node, both directions; Rejoin undoes it.
	Isolate(node string) error
	Rejoin(node string) error
	// HealNetwork removes every network fault.
	HealNetwork() error
	// AddNode starts a new node that joins the cluster (Caps.AddNode) and returns its id.
	AddNode(ctx context.Context) (string, error)
	// Replace kills node, wipes its data and starts it under a new id at the same address
	// (Caps.Replace); it returns the new id.
	Replace(ctx context.Context, node string) (string, error)
	// LogPaths maps node ids to log files (complete after Collect).
	LogPaths() map[string]string
	// Collect copies or finalises node logs into the run directory.
	Collect(ctx context.Context) error
	// Close stops everything the driver started and removes what it created (keeping logs);
	// keepData keeps the node data directories (for post-mortems of invalid runs).
	Close(keepData bool) error
}

// conns keeps one gRPC connection per node address, with a short reconnect backoff so that a
// restarted node is reachable again within a second.
type conns struct {
	// creds are the connections' transport credentials; nil means plaintext (dev-insecure nodes).
	creds credentials.TransportCredentials
	mu    sync.Mutex
	m     map[string]*grpc.ClientConn
}

func (c *conns) get(addr string) *grpc.ClientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*grpc.ClientConn{}
	}
	if cc, ok := c.m[addr]; ok {
		return cc
	}
	bc := backoff.DefaultConfig
	bc.BaseDelay, bc.MaxDelay = 50*time.Millisecond, 300*time.Millisecond
	creds := c.creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		panic(fmt.Sprintf("driver: grpc.NewClient(%q): %v", addr, err)) // only malformed targets fail
	}
	c.m[addr] = cc
	return cc
}

func (c *conns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a, cc := range c.m {
		_ = cc.Close()
		delete(c.m, a)
	}
}

// Status asks one node for its status within timeout.
func Status(ctx context.Context, d Driver, node string, timeout time.Duration) (*cairnpb.StatusResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := cairnpb.NewClusterClient(d.Conn(node)).Status(cctx, &cairnpb.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", node, err)
	}
	return st, nil
}

// Leader returns the leader that the answering nodes among nodes (all if empty) agree on, by
// highest term; "" when none is known. Nodes that do not answer within timeout are skipped.
func Leader(ctx context.Context, d Driver, timeout time.Duration, nodes ...string) (string, uint64) {
	if len(nodes) == 0 {
		nodes = d.Nodes()
	}
	type ans struct {
		leader string
		term   uint64
	}
	ch := make(chan ans, len(nodes))
	for _, n := range nodes {
		go func() {
			st, err := Status(ctx, d, n, timeout)
			if err != nil {
				ch <- ans{}
				return
			}
			ch <- ans{st.GetLeaderId(), st.GetTerm()}
		}()
	}
	var best ans
	for range nodes {
		a := <-ch
		if a.leader != "" && a.term > best.term {
			best = a
		}
	}
	return best.leader, best.term
}

// WaitLeader waits until every node in nodes (all if empty) answers and names the same leader.
func WaitLeader(ctx context.Context, d Driver, nodes ...string) (string, error) {
	if len(nodes) == 0 {
		nodes = d.Nodes()
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		leader := ""
		last = nil
		for _, n := range nodes {
			st, err := Status(ctx, d, n, time.Second)
			if err != nil {
				last = err
				break
			}
			if st.GetLeaderId() == "" || leader != "" && st.GetLeaderId() != leader {
				last = fmt.Errorf("%s sees leader %q", n, st.GetLeaderId())
				break
			}
			leader = st.GetLeaderId()
		}
		if last == nil && leader != "" {
			return leader, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("driver: no agreed leader among %v: %w (last: %v)", nodes, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
