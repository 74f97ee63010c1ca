package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeBasePort finds a base port whose nine dev ports (gRPC, raft, gossip TCP and UDP) are free
// on loopback right now.
func freeBasePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		base := 20000 + rand.IntN(400)*100
		free := true
		var closers []io.Closer
		for i := 1; i <= devNodes && free; i++ {
			for _, p := range []int{base + i, base + 100 + i, base + 200 + i} {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
				if err != nil {
					free = false
					break
				}
				closers = append(closers, l)
			}
			if u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", base+200+i)); err != nil {
				free = false
			} else {
				closers = append(closers, u)
			}
		}
		for _, c := range closers {
			_ = c.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free port range found")
	return 0
}

// buildCairnd builds cmd/node into a temporary directory, or skips the test when that is not
// possible here.
func buildCairnd(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join("..", "node", "main.go")); err != nil {
		t.Skip("cmd/node (cairnd) does not exist yet: cannot test cairnctl dev")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH to build cairnd")
	}
	bin := filepath.Join(t.TempDir(), "cairnd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "../node").CombinedOutput()
	if err != nil {
		t.Skipf("cmd/node does not build (it is someone else's work in progress): %v\n%s", err, out)
	}
	return bin
}

// TestDevRunsAClusterAndStopsIt runs `cairnctl dev` with a freshly built cairnd, appends and
// reads through the cluster it started, then interrupts it as Ctrl-C would.
func TestDevRunsAClusterAndStopsIt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cairnd and runs three processes")
	}
	bin := buildCairnd(t)
	base := freeBasePort(t)
	data := t.TempDir()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		code := execute(ctx, []string{"dev", "--cairnd", bin, "--data", data, "--base-port", fmt.Sprint(base),
			"--stop-timeout", "30s", "--wait-timeout", "60s"}, stdio{in: strings.NewReader(""), out: pw, err: &stderr},
			func(string) string { return "" })
		_ = pw.Close()
		done <- code
	}()
	var stdout lockedBuffer
	up := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(&stdout, sc.Text())
			if !signalled && strings.Contains(sc.Text(), "cluster is up") {
				signalled = true
				close(up)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()

	select {
	case <-up:
	case code := <-done:
		t.Fatalf("dev exited with %d before the cluster was up\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	case <-time.After(90 * time.Second):
		cancel()
		t.Fatalf("cluster not up within 90s\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}

	addr := fmt.Sprintf("127.0.0.1:%d", base+1)
	all := fmt.Sprintf("%s,127.0.0.1:%d,127.0.0.1:%d", addr, base+2, base+3)
	tlsDir := filepath.Join(data, "tls")
	mtls := []string{"--ca", filepath.Join(tlsDir, "ca.crt"), "--cert", filepath.Join(tlsDir, "client-admin.crt"),
		"--key", filepath.Join(tlsDir, "client-admin.key")}
	ok(t, append(mtls, "--addr", addr, "--timeout", "20s", "append", "orders-1", "--type", "OrderPlaced", "--data", `{"id":1}`)...)
	if out := ok(t, append(mtls, "--addr", all, "--timeout", "20s", "read", "orders-1")...); !strings.Contains(out, "OrderPlaced") {
		t.Fatalf("read:\n%s", out)
	}
	if out := ok(t, append(mtls, "--addr", addr, "--timeout", "20s", "members")...); strings.Count(out, "voter") != 3 {
		t.Fatalf("members:\n%s", out)
	}
	ok(t, append(mtls, "--addr", all, "--timeout", "5s", "health")...)
	if out := ok(t, append(mtls, "--addr", addr, "--timeout", "5s", "status")...); !strings.Contains(out, "mutual TLS") {
		t.Fatalf("status over TLS:\n%s", out)
	}
	// make cluster runs with TLS on: a plaintext client is refused.
	wantExit(t, exitUnavailable, "--addr", addr, "--timeout", "2s", "health")

	cancel() // as Ctrl-C would
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("dev exited with %d after interrupt\nstderr:\n%s", code, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dev did not stop within 60s of the interrupt")
	}
	<-scanned
	out := stdout.String()
	for _, want := range []string{"node1 | ", "node2 | ", "node3 | ", "cluster is up", "Mutual TLS on every channel",
		"export CAIRN_CA=" + filepath.Join(tlsDir, "ca.crt"),
		fmt.Sprintf("cairnctl --addr %s append orders-1 --type OrderPlaced --data '{\"id\":1}'", addr), "cairnctl dev: stopped"} {
		if !strings.Contains(out, want) {
			t.Fatalf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(stderr.String(), "exited unexpectedly") || strings.Contains(stderr.String(), "killing") {
		lines := strings.Split(out, "\n")
		t.Fatalf("nodes did not stop cleanly:\n%s\nlast node output:\n%s", stderr.String(),
			strings.Join(lines[max(0, len(lines)-80):], "\n"))
	}
	for i := 1; i <= devNodes; i++ {
		if _, err := os.Stat(filepath.Join(data, fmt.Sprintf("node%d", i))); err != nil {
			t.Fatalf("data dir of node%d: %v", i, err)
		}
	}
	// Nothing listens any more.
	wantExit(t, exitUnavailable, append(mtls, "--addr", addr, "--timeout", "1s", "health")...)
}

// TestDevReportsAMissingBinary checks the error for a cairnd that does not exist.
func TestDevReportsAMissingBinary(t *testing.T) {
	r := runCLI(t, nil, "", "dev", "--cairnd", filepath.Join(t.TempDir(), "nope"))
	if r.code != exitUsage || !strings.Contains(r.err, "--cairnd") {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
}
