package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("cairn: client closed")

// Client is a connection to a Cairn cluster. It is safe for concurrent use, and is meant to be
// created once and shared: it keeps one gRPC connection per node address, the leader's address
// once known, and the read-your-writes token of everything done through it.
type Client struct {
	addrs []string
	cfg   config

	mu        sync.Mutex
	conns     map[string]*grpc.ClientConn
	closed    bool
	leader    string            // gRPC address of the leader, "" when unknown
	nodeAddrs map[string]string // node id -> gRPC address, learned from Status

	next  atomic.Uint64 // round-robin cursor over addrs
	token atomic.Uint64 // highest log index seen: the read-your-writes token
}

// New returns a Client for the cluster whose nodes listen at addrs (host:port gRPC addresses; one
// reachable node is enough, more make the client resilient to node failures). New does no
// network I/O: connections are opened lazily, on first use. Without WithTransportCredentials the
// connections are plaintext.
func New(addrs []string, opts ...Option) (*Client, error) {
	var clean []string
	seen := make(map[string]bool)
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if a == "" || seen[a] {
			continue
		}
		seen[a] = true
		clean = append(clean, a)
	}
	if len(clean) == 0 {
		return nil, errors.New("cairn: client needs at least one node address")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	return &Client{
		addrs:     clean,
		cfg:       cfg,
		conns:     make(map[string]*grpc.ClientConn),
		nodeAddrs: make(map[string]string),
	}, nil
}

// Close closes every connection. Calls in flight fail; later calls fail with ErrClosed. Close is
// idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	conns := c.conns
	c.conns, c.closed = nil, true
	c.mu.Unlock()
	var errs []error
	for addr, cc := range conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cairn: close connection to %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// Addrs returns the node addresses the client was created with.
func (c *Client) Addrs() []string { return append([]string(nil), c.addrs...) }

// Leader returns the gRPC address of the leader as the client last learned it, or "" when it
// does not know one.
func (c *Client) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// SeenLogIndex returns the client's read-your-writes token: the highest log index it has seen
// in append results and read responses.
func (c *Client) SeenLogIndex() uint64 { return c.token.Load() }

// ObserveLogIndex raises the read-your-writes token to idx (if it is higher), for instance to
// carry a token from another client or process: later Stale reads then see everything up to
// idx.
func (c *Client) ObserveLogIndex(idx uint64) {
	for {
		cur := c.token.Load()
		if idx <= cur || c.token.CompareAndSwap(cur, idx) {
			return
		}
	}
}

// conn returns the connection to addr, creating it (without I/O) on first use.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	creds := c.cfg.creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)),
	}
	opts = append(opts, c.cfg.dialOpts...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("cairn: connection to %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// setLeader records the leader's address.
func (c *Client) setLeader(addr string) {
	if addr == "" || !c.cfg.leaderRouting {
		return
	}
	c.mu.Lock()
	c.leader = addr
	c.mu.Unlock()
}

// forgetLeader forgets the leader if it is addr ("" forgets any).
func (c *Client) forgetLeader(addr string) {
	c.mu.Lock()
	if addr == "" || c.leader == addr {
		c.leader = ""
	}
	c.mu.Unlock()
}

// learnLeaderByID records the leader when a node with a known address says it is the leader.
func (c *Client) learnLeaderByID(id string) {
	c.mu.Lock()
	addr := c.nodeAddrs[id]
	c.mu.Unlock()
	c.setLeader(addr)
}

// learnStatus records the leader and the members' addresses from a Status answer.
func (c *Client) learnStatus(s *Status) {
	c.mu.Lock()
	for _, m := range s.Members {
		if m.ID != "" && m.GRPCAddress != "" {
			c.nodeAddrs[m.ID] = m.GRPCAddress
		}
	}
	c.mu.Unlock()
	c.setLeader(s.LeaderAddress)
}

// route says where a call's attempts go.
type route int

const (
	// routeLeader: the leader when known, else the addresses in turn (the server forwards).
	routeLeader route = iota
	// routeStale: WithStaleReadAddress's address, else the addresses in turn.
	routeStale
)

// pick returns the address for the next attempt. avoid is the address the previous attempt
// failed at; it is skipped when another choice exists.
func (c *Client) pick(r route, pinned, avoid string) string {
	if pinned != "" {
		return pinned
	}
	switch r {
	case routeLeader:
		if l := c.Leader(); l != "" && l != avoid {
			return l
		}
	case routeStale:
		if c.cfg.staleAddr != "" && c.cfg.staleAddr != avoid {
			return c.cfg.staleAddr
		}
	}
	i := c.next.Add(1) - 1
	addr := c.addrs[i%uint64(len(c.addrs))]
	if addr == avoid && len(c.addrs) > 1 {
		addr = c.addrs[(i+1)%uint64(len(c.addrs))]
	}
	return addr
}

// call is one logical operation.
type call struct {
	route route
	// write marks an append: an attempt whose answer was lost leaves its outcome unknown.
	write bool
	// eventIDs are a write's event ids, reported in an OutcomeUnknownError.
	eventIDs []string
	// settled, when set, replaces definitive: it reports whether a write's final error settles
	// its outcome despite an earlier attempt whose answer was lost.
	settled func(error) bool
	// attempt makes one attempt at addr over cc; it returns the raw gRPC error.
	attempt func(ctx context.Context, cc *grpc.ClientConn) error
}

func (c *Client) callConfig(opts []CallOption) callConfig {
	cc := callConfig{maxAttempts: c.cfg.maxAttempts}
	for _, o := range opts {
		o(&cc)
	}
	return cc
}

// verdict is what one failed attempt means for the next.
type verdict struct {
	retry     bool
	ambiguous bool   // a write may have been committed by this attempt
	redirect  string // the next attempt goes here, without waiting
	avoid     bool   // the next attempt should go elsewhere
}

// classify decides whether a failed attempt at addr is retried (DESIGN.md, "Retries"). Only
// conditions that may be transient are retried; answers of the state machine and of validation
// never are.
func (c *Client) classify(err error, addr string, pinned bool) verdict {
	var se *StatusError
	if !errors.As(err, &se) {
		return verdict{}
	}
	var nl *NotLeaderError
	hasLeader := errors.As(err, &nl) && nl.LeaderAddr != ""
	switch se.Code {
	case codes.Unavailable:
		switch se.Reason {
		case reasonNotLeader:
			if !hasLeader || pinned || !c.cfg.leaderRouting {
				// No leader named, a pinned call, or advertised addresses not to be used: try
				// again elsewhere (the next node may forward).
				return verdict{retry: !pinned, avoid: true}
			}
			c.setLeader(nl.LeaderAddr)
			if nl.LeaderAddr == addr {
				return verdict{retry: true}
			}
			return verdict{retry: true, redirect: nl.LeaderAddr}
		case reasonNoLeader:
			c.forgetLeader("")
			return verdict{retry: true}
		case reasonForwardFailed:
			// The node could not reach the leader it names (a read; see api/DESIGN.md): the
			// client may still reach it, so the next attempt goes there directly. If it is
			// really gone, that attempt fails at the transport and the address is forgotten.
			if hasLeader && !pinned && c.cfg.leaderRouting {
				c.setLeader(nl.LeaderAddr)
			}
			return verdict{retry: true}
		case reasonNotCaughtUp, reasonTooStale:
			return verdict{retry: true, avoid: true}
		case reasonShuttingDown:
			c.forgetLeader(addr)
			return verdict{retry: true, avoid: true}
		case "":
			// No answer from a Cairn node: the transport failed (refused, reset, closing). A
			// write may have reached the node before the connection broke.
			c.forgetLeader(addr)
			return verdict{retry: true, ambiguous: true, avoid: true}
		}
		return verdict{retry: true, avoid: true}
	case codes.Unknown:
		// OUTCOME_UNKNOWN: the leader lost leadership after proposing, or a forward to it broke.
		// Either way the leader we knew is suspect.
		c.forgetLeader(addr)
		if l := se.Metadata["leader_address"]; l != "" {
			c.forgetLeader(l)
		}
		return verdict{retry: true, ambiguous: true}
	case codes.DeadlineExceeded:
		// The caller's deadline (then the loop stops), or a server-side bound such as the
		// forwarding timeout (then another attempt may succeed).
		return verdict{retry: true, ambiguous: true}
	case codes.Canceled:
		return verdict{ambiguous: true}
	}
	return verdict{}
}

// definitive reports whether err is an answer that settles a write's outcome: the state machine
// or validation refused it, so no earlier attempt was committed either (a committed earlier
// attempt would have been recognised by its event ids and returned as the result).
func definitive(err error) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case codes.Aborted, codes.FailedPrecondition, codes.InvalidArgument, codes.ResourceExhausted,
		codes.NotFound, codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return false
}

// invoke runs a call with retries: exponential backoff with jitter between attempts, bounded by
// the context's deadline and the attempt limit; redirects to a named leader without waiting.
func (c *Client) invoke(ctx context.Context, cl call, cc callConfig) error {
	if _, ok := ctx.Deadline(); !ok && c.cfg.defaultTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.defaultTimeout)
		defer cancel()
	}
	var (
		last      error
		ambiguous bool
		avoid     string
		redirect  string
		attempts  int
		waitErr   error
	)
	for attempts < cc.maxAttempts {
		addr := redirect
		if addr == "" {
			addr = c.pick(cl.route, cc.addr, avoid)
		}
		redirect, avoid = "", ""
		conn, err := c.conn(addr)
		if err != nil {
			return err
		}
		attempts++
		err = decodeError(cl.attempt(ctx, conn), addr)
		if err == nil {
			return nil
		}
		last = err
		v := c.classify(err, addr, cc.addr != "")
		ambiguous = ambiguous || (cl.write && v.ambiguous)
		if !v.retry || attempts >= cc.maxAttempts || ctx.Err() != nil {
			break
		}
		if v.avoid {
			avoid = addr
		}
		if v.redirect != "" {
			redirect = v.redirect
			continue
		}
		if waitErr = c.backoff(ctx, attempts); waitErr != nil {
			break
		}
	}
	if waitErr == nil && ctx.Err() != nil && !errors.Is(last, ctx.Err()) {
		waitErr = ctx.Err()
	}
	if waitErr != nil {
		last = fmt.Errorf("%w (giving up after %d attempt(s); last error: %w)", waitErr, attempts, last)
	}
	settled := definitive
	if cl.settled != nil {
		settled = cl.settled
	}
	if ambiguous && !settled(last) {
		return &OutcomeUnknownError{EventIDs: cl.eventIDs, Attempts: attempts, Err: last}
	}
	return last
}

// minAttemptWindow is the least time an attempt is given before the deadline: one started with
// less would likely run into the deadline and, for a write, leave its outcome unknown.
const minAttemptWindow = 20 * time.Millisecond

// backoff waits before retry number n (1 for the first retry): base·2^(n-1), capped, jittered
// between half and all of it, and shortened to leave the next attempt time before the context's
// deadline. It returns the context's error, or context.DeadlineExceeded when too little time is
// left to try again.
func (c *Client) backoff(ctx context.Context, n int) error {
	d := c.cfg.backoffBase
	for i := 1; i < n && d < c.cfg.backoffMax; i++ {
		d *= 2
	}
	d = min(d, c.cfg.backoffMax)
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left-d < minAttemptWindow {
			d = left / 2
		}
		if left-d < minAttemptWindow {
			return context.DeadlineExceeded
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
