// Package proxy is jepsen-lite's fault-injecting TCP proxy. One Proxy fronts one node's listener
// (its raft port, or its gRPC port for forwarding); other nodes dial the proxy instead of the
// node, because the node advertises the proxy's address. The proxy tells which node a connection
// comes from by its source IP (each node binds, and dials from, its own loopback IP
// 127.a.b.N), so faults apply per directed link: bytes flowing from node A to node B can be
// stalled, delayed or disturbed independently of those from B to A.
//
// Fault semantics, chosen to look like a real network to TCP endpoints:
//
//   - Blackhole stalls a direction: the proxy stops forwarding (and, once its buffer is full,
//     stops reading) but keeps the connection open, like a partition in which packets are
//     dropped and TCP retransmits. Nothing is discarded, so a stream never desynchronises;
//     when the link heals, what was queued is delivered late, as retransmissions would be.
//     Endpoints notice through their own timeouts.
//   - Delay (± Jitter) delays every chunk, in order, without limiting throughput.
//   - Loss adds, to each chunk with that probability, a retransmission-like delay (200–600 ms)
//     and, with a twentieth of that probability, resets the connection. Bytes are never
//     dropped from a TCP stream: a real network cannot do that, and a decoder fed a stream
//     with holes could misread garbage as a valid message.
//   - Reject resets existing connections (RST) and refuses new ones.
//
// A connection from an address that is not a known node (a peer that did not dial from its
// bind IP) is "unknown": it gets the fault every known node has towards (or from) the other end,
// and passes when they differ.
package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Fault describes what happens to the bytes of one direction of a link.
type Fault struct {
	Blackhole bool          `json:"blackhole,omitempty"`
	Delay     time.Duration `json:"delay,omitempty"`
	Jitter    time.Duration `json:"jitter,omitempty"`
	Loss      float64       `json:"loss,omitempty"`
	Reject    bool          `json:"reject,omitempty"`
}

// Zero reports whether f is a healthy link.
func (f Fault) Zero() bool { return f == Fault{} }

// Unknown is the node name of connections whose source IP is not a known node.
const Unknown = "?"

type link struct{ src, dst string }

// Net holds the link table shared by all proxies of a cluster. It is safe for concurrent use.
type Net struct {
	mu      sync.Mutex
	links   map[link]Fault
	byIP    map[string]string // source IP -> node
	nodes   map[string]bool
	changed chan struct{} // closed and replaced on every change
	conns   map[*conn]struct{}
	proxies []*Proxy
	rng     *rand.Rand
	closed  bool
}

// NewNet returns an empty link table; seed drives the loss and jitter draws.
func NewNet(seed uint64) *Net {
	return &Net{links: map[link]Fault{}, byIP: map[string]string{}, nodes: map[string]bool{},
		changed: make(chan struct{}), conns: map[*conn]struct{}{}, rng: rand.New(rand.NewPCG(seed, 0x70726f7879))}
}

// SetNodeIP declares that connections from ip come from node (replacing any earlier node with
// that IP).
func (n *Net) SetNodeIP(node, ip string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if old, ok := n.byIP[ip]; ok {
		delete(n.nodes, old)
	}
	n.byIP[ip] = node
	n.nodes[node] = true
}

// Set sets the fault of the bytes flowing from src to dst (a zero Fault heals it). Existing
// connections follow at once; with Reject they are reset.
func (n *Net) Set(src, dst string, f Fault) {
	n.mu.Lock()
	if f.Zero() {
		delete(n.links, link{src, dst})
	} else {
		n.links[link{src, dst}] = f
	}
	n.broadcastLocked()
	var reset []*conn
	if f.Reject {
		for c := range n.conns {
			if c.src == src && c.dst == dst || c.src == dst && c.dst == src {
				reset = append(reset, c)
			}
		}
	}
	n.mu.Unlock()
	for _, c := range reset {
		c.reset()
	}
}

// Get returns the fault of the bytes flowing from src to dst.
func (n *Net) Get(src, dst string) Fault {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.getLocked(src, dst)
}

func (n *Net) getLocked(src, dst string) Fault {
	if src != Unknown && dst != Unknown {
		return n.links[link{src, dst}]
	}
	// Unknown peer: it gets the fault that every other known node has on that direction (an
	// isolated node is stalled for everyone, a slow or lossy node is slow or lossy for everyone),
	// and passes when the known nodes disagree (a partial partition).
	known, other := dst, func(k string) link { return link{k, dst} }
	if dst == Unknown {
		known, other = src, func(k string) link { return link{src, k} }
	}
	var common Fault
	first := true
	for k := range n.nodes {
		if k == known {
			continue
		}
		f := n.links[other(k)]
		f.Reject = false // a reject resets known connections; unknown ones are not refused
		if first {
			common, first = f, false
		} else if f != common {
			return Fault{}
		}
	}
	return common
}

// HealAll clears every fault.
func (n *Net) HealAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.links = map[link]Fault{}
	n.broadcastLocked()
}

// Faults returns a copy of the non-zero link faults, keyed "src->dst".
func (n *Net) Faults() map[string]Fault {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]Fault{}
	for l, f := range n.links {
		out[l.src+"->"+l.dst] = f
	}
	return out
}

// ResetConns resets every open connection between a and b (both directions).
func (n *Net) ResetConns(a, b string) {
	n.mu.Lock()
	var reset []*conn
	for c := range n.conns {
		if c.src == a && c.dst == b || c.src == b && c.dst == a {
			reset = append(reset, c)
		}
	}
	n.mu.Unlock()
	for _, c := range reset {
		c.reset()
	}
}

func (n *Net) broadcastLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// watch returns the fault of src->dst and a channel closed at the next change.
func (n *Net) watch(src, dst string) (Fault, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.getLocked(src, dst), n.changed
}

func (n *Net) draw() float64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rng.Float64()
}

// Close stops every proxy and resets every connection.
func (n *Net) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	proxies := n.proxies
	conns := make([]*conn, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	n.broadcastLocked()
	n.mu.Unlock()
	var errs []error
	for _, p := range proxies {
		errs = append(errs, p.close())
	}
	for _, c := range conns {
		c.reset()
	}
	for _, p := range proxies {
		p.wg.Wait()
	}
	return errors.Join(errs...)
}

// Proxy forwards connections accepted on one address to one node.
type Proxy struct {
	net    *Net
	dst    string
	target string
	ln     net.Listener
	wg     sync.WaitGroup
}

// Listen starts a proxy on listen (host:port, port 0 picks one) that forwards to target, the
// real listener of node dst.
func (n *Net) Listen(dst, listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen %s: %w", listen, err)
	}
	p := &Proxy{net: n, dst: dst, target: target, ln: ln}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		ln.Close()
		return nil, errors.New("proxy: net closed")
	}
	n.proxies = append(n.proxies, p)
	n.mu.Unlock()
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDst renames the node the proxy fronts (a node replaced under a new id at the same address).
func (p *Proxy) SetDst(dst string) {
	p.net.mu.Lock()
	p.dst = dst
	p.net.mu.Unlock()
}

func (p *Proxy) close() error { return p.ln.Close() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

func (p *Proxy) serve(client net.Conn) {
	n := p.net
	ip, _, _ := net.SplitHostPort(client.RemoteAddr().String())
	n.mu.Lock()
	src, ok := n.byIP[ip]
	if !ok {
		src = Unknown
	}
	dst := p.dst
	rejected := n.getLocked(src, dst).Reject || n.getLocked(dst, src).Reject
	n.mu.Unlock()
	if rejected {
		rst(client)
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		rst(client) // the node is down: the peer sees a refused/reset connection, as without a proxy
		return
	}
	c := &conn{src: src, dst: dst, client: client, server: server, done: make(chan struct{})}
	n.mu.Lock()
	// Re-check under the lock that registers the connection: a Reject set since the first check
	// would otherwise miss it.
	if n.closed || n.getLocked(src, dst).Reject || n.getLocked(dst, src).Reject {
		n.mu.Unlock()
		c.reset()
		return
	}
	n.conns[c] = struct{}{}
	n.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pipe(n, client, server, src, dst) }()
	go func() { defer wg.Done(); c.pipe(n, server, client, dst, src) }()
	wg.Wait()
	c.reset()
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

// conn is one proxied connection.
type conn struct {
	src, dst       string
	client, server net.Conn
	once           sync.Once
	done           chan struct{}
}

func (c *conn) reset() {
	c.once.Do(func() {
		close(c.done)
		rst(c.client)
		rst(c.server)
	})
}

func rst(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies from in to out, applying the fault of the from->to direction.
func (c *conn) pipe(n *Net, in, out net.Conn, from, to string) {
	defer c.reset()
	q := make(chan chunk, 64)
	go func() {
		defer close(q)
		var last time.Time
		for {
			buf := make([]byte, 32<<10)
			k, err := in.Read(buf)
			if k > 0 {
				f, _ := n.watch(from, to)
				d := f.Delay
				if f.Jitter > 0 {
					d += time.Duration((n.draw()*2 - 1) * float64(f.Jitter))
				}
				if f.Loss > 0 {
					x := n.draw()
					if x < f.Loss/20 {
						c.reset()
						return
					}
					if x < f.Loss {
						d += 200*time.Millisecond + time.Duration(n.draw()*float64(400*time.Millisecond))
					}
				}
				at := time.Now().Add(max(d, 0))
				if at.Before(last) {
					at = last // keep order
				}
				last = at
				select {
				case q <- chunk{buf[:k], at}:
				case <-c.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for ch := range q {
		// Stall while the direction is blackholed.
		for {
			f, changed := n.watch(from, to)
			if !f.Blackhole {
				break
			}
			select {
			case <-changed:
			case <-c.done:
				return
			}
		}
		if wait := time.Until(ch.at); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return
			}
		}
		if _, err := out.Write(ch.b); err != nil {
			return
		}
	}
	// in reached EOF: half-close out so the peer sees it, then let the other direction finish.
	if tc, ok := out.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		<-c.done
		return
	}
}
