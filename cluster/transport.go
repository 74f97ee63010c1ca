package cluster

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// DialFunc opens an outgoing connection for raft traffic. It is the seam where TLS and fault
// injection (jepsen-lite, tests) plug in.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// streamLayer is raft's network layer: our own listener and dialer, so that TLS and test-time fault
// injection live in one place instead of inside raft's TCP transport.
//
// It also owns every connection it accepts or dials: raft's NetworkTransport.Close closes only
// the listener, leaving pooled outbound connections open and the peers' handler goroutines
// blocked on them until the process exits. Close here closes them all, so a node's Close leaves
// no goroutine behind, here or on its peers.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dial      DialFunc

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

// newStreamLayer listens on bind and advertises advertise (bind's address when empty).
func newStreamLayer(bind, advertise string, dial DialFunc) (*streamLayer, error) {
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
	return &streamLayer{Listener: ln, advertise: adv, dial: dial, conns: map[*trackedConn]struct{}{}}, nil
}

// Dial implements raft.StreamLayer.
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.dial(ctx, "tcp", string(addr))
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

// Accept implements net.Listener.
func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

// Close closes the listener and every connection still open.
func (s *streamLayer) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = map[*trackedConn]struct{}{}
	s.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return s.Listener.Close()
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
	return c.Conn.Close()
}

// Addr implements net.Listener with the advertised address, which raft puts in its configuration.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// advertisedAddr is an advertised "host:port" kept verbatim (host may be a name).
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }
