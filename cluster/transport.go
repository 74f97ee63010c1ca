package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/internal/tlsutil"
)

// raftHandshakeTimeout bounds the TLS handshake of an accepted raft connection: a peer that
// connects and sends nothing cannot hold a goroutine longer.
const raftHandshakeTimeout = 10 * time.Second

// DialFunc opens an outgoing connection for raft traffic. It is the seam where TLS and fault
// injection (jepsen-lite, tests) plug in.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// streamLayer is raft's network layer: our own listener and dialer, so that TLS and test-time fault
// injection live in one place instead of inside raft's TCP transport.
//
// With TLS (Config.TLS), every connection is mutual TLS 1.3 with ALPN "cairn-raft", and both
// sides must hold a node certificate of this cluster's CA and name. Accepted connections finish
// their handshake in their own goroutine before Accept hands them to raft: a peer that fails it
// (another CA, another cluster, a client certificate, plaintext) is logged and closed here and
// never reaches raft's decoder, and a slow one cannot stall the accept loop.
//
// It also owns every connection it accepts or dials: raft's NetworkTransport.Close closes only
// the listener, leaving pooled outbound connections open and the peers' handler goroutines
// blocked on them until the process exits. Close here closes them all, so a node's Close leaves
// no goroutine behind, here or on its peers.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dial      DialFunc

	tls       *tlsutil.Loader // nil: plaintext
	serverTLS *tls.Config
	clientTLS *tls.Config
	log       *slog.Logger
	rejected  atomic.Uint64 // accepted connections whose TLS handshake failed
	rejectLog *tlsutil.LogLimiter

	accepted  chan net.Conn // handshaken connections, TLS only
	acceptErr chan error    // the listener's terminal error, TLS only
	done      chan struct{}
	wg        sync.WaitGroup

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	raw    map[net.Conn]struct{} // TLS: accepted connections still handshaking
	closed bool
}

// newStreamLayer listens on bind and advertises advertise (bind's address when empty).
// With tl set, connections are mutual TLS (see streamLayer).
func newStreamLayer(bind, advertise string, dial DialFunc, tl *tlsutil.Loader, log *slog.Logger) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listen on %s: %w", bind, err)
	}
	adv := ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("cluster: raft advertise address %q: %w", advertise, err)
		}
		if a.IP == nil || a.IP.IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("cluster: raft advertise address %q must be a routable address", advertise)
		}
		// Keep a host name as given (it resolved now, so it is not a typo): raft stores it in the
		// configuration and resolves it at every dial, so a container whose IP changes on
		// restart stays reachable under its service name.
		adv = advertisedAddr(advertise)
	} else if tcp, ok := adv.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("cluster: raft bind address %q is unspecified: set an advertise address", bind)
	}
	if dial == nil {
		// Dial from the address we listen on when it is a specific IP: on a host with several
		// addresses the peer then sees the same IP it dials back, and a fault-injection proxy on
		// loopback (127.0.0.N per node) can tell which node a connection comes from.
		var d net.Dialer
		if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsUnspecified() {
			d.LocalAddr = &net.TCPAddr{IP: tcp.IP}
		}
		dial = d.DialContext
	}
	s := &streamLayer{Listener: ln, advertise: adv, dial: dial, conns: map[*trackedConn]struct{}{}, tls: tl, log: log,
		done: make(chan struct{})}
	if tl != nil {
		s.serverTLS = tl.ServerConfig(tlsutil.ProtoRaft, tlsutil.RoleNode)
		s.rejectLog = tlsutil.NewLogLimiter(time.Second)
		s.clientTLS = tl.ClientConfig(tlsutil.ProtoRaft, tlsutil.RoleNode)
		s.accepted = make(chan net.Conn)
		s.acceptErr = make(chan error, 1)
		s.raw = map[net.Conn]struct{}{}
		s.wg.Add(1)
		go s.acceptLoop()
	}
	return s, nil
}

// Dial implements raft.StreamLayer.
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.dial(ctx, "tcp", string(addr))
	if err != nil {
		return nil, err
	}
	if s.clientTLS != nil {
		tc := tls.Client(c, s.clientTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("cluster: raft TLS handshake with %s: %w", addr, err)
		}
		c = tc
	}
	return s.track(c)
}

// Accept implements net.Listener. With TLS it returns only connections whose handshake
// succeeded.
func (s *streamLayer) Accept() (net.Conn, error) {
	if s.tls == nil {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		return s.track(c)
	}
	select {
	case c := <-s.accepted:
		return c, nil
	case err := <-s.acceptErr:
		s.acceptErr <- err // every later Accept sees it too
		return nil, err
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// acceptLoop (TLS only) accepts raw connections and handshakes each in its own goroutine.
func (s *streamLayer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			s.acceptErr <- err
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			continue // the listener is closing: Accept fails next
		}
		s.raw[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handshake(c)
	}
}

// handshake finishes the server side of an accepted connection and hands it to Accept.
func (s *streamLayer) handshake(c net.Conn) {
	defer s.wg.Done()
	tc := tls.Server(c, s.serverTLS)
	ctx, cancel := context.WithTimeout(context.Background(), raftHandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	s.mu.Lock()
	delete(s.raw, c)
	closing := s.closed
	s.mu.Unlock()
	if err != nil && closing {
		c.Close() // cut short by Close: not a refusal
		return
	}
	if err != nil {
		s.rejected.Add(1)
		if ok, held := s.rejectLog.Allow(); ok { // a flood of strangers must not flood the log
			s.log.Warn("raft connection refused: TLS handshake failed", "remote", c.RemoteAddr().String(), "error", err,
				"similar_since_last_logged", held)
		}
		c.Close()
		return
	}
	tracked, err := s.track(tc)
	if err != nil {
		return // closed meanwhile; track closed the connection
	}
	select {
	case s.accepted <- tracked:
	case <-s.done:
		tracked.Close()
	}
}

// Close closes the listener and every connection still open, and waits for the TLS accept and
// handshake goroutines.
func (s *streamLayer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns, raw := s.conns, s.raw
	s.conns, s.raw = map[*trackedConn]struct{}{}, nil
	close(s.done)
	s.mu.Unlock()
	for c := range conns {
		_ = closeRaw(c.Conn)
	}
	for c := range raw {
		_ = c.Close()
	}
	err := s.Listener.Close()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *streamLayer) track(c net.Conn) (net.Conn, error) {
	t := &trackedConn{Conn: c, layer: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	s.conns[t] = struct{}{}
	return t, nil
}

// trackedConn forgets itself from its layer when closed.
type trackedConn struct {
	net.Conn
	layer *streamLayer
}

func (c *trackedConn) Close() error {
	c.layer.mu.Lock()
	delete(c.layer.conns, c)
	c.layer.mu.Unlock()
	return closeRaw(c.Conn)
}

// closeRaw closes c's TCP connection. A TLS connection is closed underneath, without the
// close_notify alert: tls.Conn.Close writes it with a 5 s deadline, which would hold raft (and
// our Close) that long on a frozen peer, and raft's framing does not need it.
func closeRaw(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn().Close()
	}
	return c.Close()
}

// Addr implements net.Listener with the advertised address, which raft puts in its configuration.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// advertisedAddr is an advertised "host:port" kept verbatim (host may be a name).
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }
