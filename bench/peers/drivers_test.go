package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairndb/cairn/bench/load"
	"github.com/cairndb/cairn/bench/peers/etcddrv"
	"github.com/cairndb/cairn/bench/peers/natsdrv"
)

// The driver tests run every workload against a real single-node server: nats-server and etcd
// as run.sh installs them into .bench/bin (`QUICK=1 make bench-peers` once), or from
// $NATS_SERVER / $ETCD_BIN. Without the binaries they skip.

func serverBin(t *testing.T, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p, err := filepath.Abs(filepath.Join("..", "..", ".bench", "bin", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not installed (run QUICK=1 make bench-peers, or set %s)", name, env)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() //nolint:errcheck // only reserving a number
	return l.Addr().(*net.TCPAddr).Port
}

// start runs a server until the test ends.
func start(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // the test's own child
		_ = cmd.Wait()
	})
}

// runAll runs each workload briefly against d (retrying Prepare while the server starts) and
// checks the counts.
func runAll(t *testing.T, d load.Driver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := d.Prepare(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after 30 s: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // polling a starting server; bounded by the deadline
	}
	for _, cfg := range []load.Config{
		{Mode: load.Closed, Clients: 4, Duration: 300 * time.Millisecond},
		{Mode: load.Pipelined, Window: 16, Duration: 300 * time.Millisecond},
		{Mode: load.Open, Rate: 200, Clients: 4, Duration: 300 * time.Millisecond},
		{Mode: load.Read, Events: 2500},
		{Mode: load.Subscribe, Events: 2500},
	} {
		res, err := load.Run(ctx, d, cfg)
		if err != nil {
			t.Fatalf("%s: %v", cfg.Mode, err)
		}
		m := res.Median
		if m.Events == 0 || m.Errors != 0 {
			t.Fatalf("%s: %d events, %d errors (%s)", cfg.Mode, m.Events, m.Errors, m.FirstError)
		}
		if (cfg.Mode == load.Read || cfg.Mode == load.Subscribe) && m.Events != 2500 {
			t.Fatalf("%s delivered %d events, want 2500", cfg.Mode, m.Events)
		}
	}
}

func TestNATSDriver(t *testing.T) {
	bin := serverBin(t, "NATS_SERVER", "nats-server")
	port := freePort(t)
	start(t, bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir())
	d, err := natsdrv.New(load.DriverConfig{Addrs: []string{fmt.Sprintf("127.0.0.1:%d", port)}, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	runAll(t, d)
}

func TestEtcdDriver(t *testing.T) {
	bin := serverBin(t, "ETCD_BIN", "etcd")
	client, peer := freePort(t), freePort(t)
	curl, purl := fmt.Sprintf("http://127.0.0.1:%d", client), fmt.Sprintf("http://127.0.0.1:%d", peer)
	start(t, bin, "--name", "e1", "--data-dir", t.TempDir(), "--log-level", "error",
		"--listen-client-urls", curl, "--advertise-client-urls", curl,
		"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl, "--initial-cluster", "e1="+purl)
	d, err := etcddrv.New(load.DriverConfig{Addrs: []string{fmt.Sprintf("127.0.0.1:%d", client)}})
	if err != nil {
		t.Fatal(err)
	}
	runAll(t, d)
}
