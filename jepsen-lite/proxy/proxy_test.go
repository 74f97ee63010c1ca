package proxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echo starts a line echo server and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	c.SetDeadline(start.Add(timeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "ping\n" {
		t.Fatalf("got %q", line)
	}
	return time.Since(start), nil
}

func setup(t *testing.T) (*Net, net.Conn, *bufio.Reader) {
	t.Helper()
	n := NewNet(1)
	t.Cleanup(func() { n.Close() })
	n.SetNodeIP("a", "127.0.0.1")
	n.SetNodeIP("c", "127.0.0.3")
	p, err := n.Listen("b", "127.0.0.1:0", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return n, c, bufio.NewReader(c)
}

func TestPassDelayBlackholeHeal(t *testing.T) {
	n, c, r := setup(t)
	if _, err := roundTrip(t, c, r, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	n.Set("a", "b", Fault{Delay: 150 * time.Millisecond})
	if d, err := roundTrip(t, c, r, 2*time.Second); err != nil || d < 150*time.Millisecond {
		t.Fatalf("delay: %v %v", d, err)
	}
	// One-way: only b->a stalls; the request gets through, the answer does not.
	n.HealAll()
	n.Set("b", "a", Fault{Blackhole: true})
	if _, err := roundTrip(t, c, r, 300*time.Millisecond); err == nil {
		t.Fatal("answer crossed a blackholed direction")
	}
	// Heal: the stalled answer is delivered, nothing was lost or reordered.
	n.HealAll()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := r.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("after heal: %q %v", line, err)
	}
	if _, err := roundTrip(t, c, r, 2*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestReject(t *testing.T) {
	n, c, r := setup(t)
	if _, err := roundTrip(t, c, r, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	n.Set("a", "b", Fault{Reject: true})
	if _, err := roundTrip(t, c, r, time.Second); err == nil {
		t.Fatal("connection survived a reject")
	}
	n.HealAll()
}

func TestUnknownSource(t *testing.T) {
	n := NewNet(1)
	defer n.Close()
	n.SetNodeIP("a", "127.0.0.2")
	n.SetNodeIP("b", "127.0.0.3")
	n.SetNodeIP("c", "127.0.0.4")
	n.Set("a", "c", Fault{Blackhole: true})
	if n.Get(Unknown, "c").Blackhole {
		t.Fatal("c is still reachable from b: unknown sources must pass")
	}
	n.Set("b", "c", Fault{Blackhole: true})
	if !n.Get(Unknown, "c").Blackhole || n.Get("c", Unknown).Blackhole {
		t.Fatal("c cut off inbound from everyone: unknown->c must stall, c->unknown pass")
	}
	n.HealAll()
	lossy := Fault{Delay: time.Millisecond, Loss: 0.2}
	for _, k := range []string{"a", "b"} {
		n.Set(k, "c", lossy)
		n.Set("c", k, lossy)
	}
	if n.Get(Unknown, "c") != lossy || n.Get("c", Unknown) != lossy {
		t.Fatal("c lossy towards everyone: unknown peers must see the same fault")
	}
}
