package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/cluster"
)

func TestEnvFillsFlagsNotGivenOnTheCommandLine(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	id := fs.String("node-id", "", "")
	expect := fs.Int("bootstrap-expect", 0, "")
	join := fs.String("join", "", "")
	if err := fs.Parse([]string{"--node-id", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CAIRN_NODE_ID": "from-env", "CAIRN_BOOTSTRAP_EXPECT": "3", "CAIRN_JOIN": "a:1,b:2"}
	if err := applyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if *id != "from-flag" || *expect != 3 || *join != "a:1,b:2" {
		t.Fatalf("node-id %q, bootstrap-expect %d, join %q", *id, *expect, *join)
	}
	env["CAIRN_BOOTSTRAP_EXPECT"] = "three"
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	fs2.Int("bootstrap-expect", 0, "")
	if err := applyEnv(fs2, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil {
		t.Fatal("a malformed CAIRN_BOOTSTRAP_EXPECT was accepted")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, // no node id
		{"--node-id", "a", "--log-format", "xml"}, // bad format
		{"--node-id", "a", "extra"},               // stray argument
		{"--no-such-flag"},
	} {
		err := run(context.Background(), args, io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}

func TestRunStartsAndStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncWriter{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--node-id", "solo", "--data-dir", t.TempDir(), "--grpc-bind", "127.0.0.1:0",
			"--raft-bind", "127.0.0.1:0", "--gossip-bind", "127.0.0.1:0", "--bootstrap-expect", "1",
			"--metrics-bind", "127.0.0.1:0", "--log-format", "json"}, logs)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "leader ready") {
		if time.Now().After(deadline) {
			t.Fatalf("node never became ready:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the log for readiness, bounded
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop within 20s of cancellation")
	}
}

func TestMetricsCollector(t *testing.T) {
	node, err := cluster.Open(cluster.Config{NodeID: "m1", DataDir: filepath.Join(t.TempDir(), "m1"),
		RaftBind: "127.0.0.1:0", GossipBind: "127.0.0.1:0", BootstrapExpect: 1,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := node.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	svc := api.NewService(apiNode{node}, api.DefaultConfig(), slog.New(slog.DiscardHandler))
	defer svc.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newNodeCollector(node, svc))
	if n, err := testutil.GatherAndCount(reg, "cairn_raft_leader", "cairn_fsm_applied_index", "cairn_api_forwarded_total"); err != nil || n != 3 {
		t.Fatalf("gathered %d series: %v", n, err)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "cairn_raft_leader" && mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatal("single-node leader not reported as leader")
		}
	}
}

// syncWriter serialises writes from the node's goroutines and lets the test look at them.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
