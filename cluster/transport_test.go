package cluster

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/cairndb/cairn/internal/tlsutil"
)

func tlsLayer(t *testing.T, files tlsutil.Files) *streamLayer {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := tlsutil.Load(files, "c1", quiet)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newStreamLayer("127.0.0.1:0", "", nil, l, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// With TLS, the raft listener hands raft only connections whose handshake succeeded: garbage
// bytes, plaintext and a node of another CA are refused and counted, a member's dial gets
// through, and Close ends connections still handshaking without leaving goroutines.
func TestStreamLayerTLSAdmitsOnlyClusterNodes(t *testing.T) {
	before := goleak.IgnoreCurrent()
	dir, other := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, other} {
		if err := tlsutil.WriteDev(tlsutil.DevOptions{Dir: d, Cluster: "c1", Nodes: []string{"n1", "n2"}}); err != nil {
			t.Fatal(err)
		}
	}
	srv := tlsLayer(t, tlsutil.NodeFiles(dir, "n1"))
	member := tlsLayer(t, tlsutil.NodeFiles(dir, "n2"))
	stranger := tlsLayer(t, tlsutil.NodeFiles(other, "n2"))
	addr := srv.Listener.Addr().String()

	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()

	// Garbage bytes, as a broken or hostile peer would send.
	g, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = g.Write([]byte("\x00\x01garbage that is not a TLS record\r\n\r\n"))
	_ = g.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(g); err != nil {
		t.Fatalf("the layer did not close a garbage connection: %v", err)
	}
	g.Close()
	if _, err := stranger.Dial("127.0.0.1:1", time.Second); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if _, err := stranger.Dial(rsAddr(addr), 5*time.Second); err == nil {
		t.Fatal("a node of another CA completed a raft handshake")
	}
	c, err := member.Dial(rsAddr(addr), 5*time.Second)
	if err != nil {
		t.Fatalf("member dial: %v", err)
	}
	select {
	case a := <-accepted:
		// The first connection raft sees is the member's: write through it.
		go func() { _, _ = c.Write([]byte("x")) }()
		b := make([]byte, 1)
		_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(a, b); err != nil || b[0] != 'x' {
			t.Fatalf("read through the accepted connection: %q %v", b, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the member's connection was not accepted")
	}
	if srv.rejected.Load() < 2 {
		t.Fatalf("rejected = %d, want the garbage and the stranger counted", srv.rejected.Load())
	}

	// A connection that never speaks is still handshaking: Close must end it.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a silent handshake")
	}
	for range accepted { // drained and closed once Accept fails
	}
	c.Close()
	member.Close()
	stranger.Close()
	goleak.VerifyNone(t, before)
}

func rsAddr(s string) raft.ServerAddress { return raft.ServerAddress(s) }
