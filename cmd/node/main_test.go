package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/api/cairnpb"
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
		{"--node-id", "a", "--dev-insecure", "--tls-ca", "ca.crt"},               // both modes
		{"--node-id", "a", "--tls-ca", "c", "--tls-cert", "c", "--tls-key", "k"}, // no gossip key
		{"--node-id", "a", "--tls-ca", "c", "--gossip-key-file", "g"},            // incomplete TLS
		{"--node-id", "a", "--dev-insecure", "--cluster-name", "x"},              // name without TLS
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
			"--metrics-bind", "127.0.0.1:0", "--log-format", "json", "--dev-insecure"}, logs)
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

func mustSoloNode(t *testing.T, m *metrics) *cluster.Node {
	t.Helper()
	cfg := cluster.Config{NodeID: "m1", DataDir: filepath.Join(t.TempDir(), "m1"),
		RaftBind: "127.0.0.1:0", GossipBind: "127.0.0.1:0", BootstrapExpect: 1,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}
	if m != nil {
		cfg.OnBatch = m.onBatch
		cfg.FSM.OnApply, cfg.FSM.OnSnapshot = m.onApply, m.onSnapshot
	}
	node, err := cluster.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := node.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return node
}

// The HTTP endpoints and the series operators alert on: a scrape is parsed and checked.
func TestMetricsHealthAndReadiness(t *testing.T) {
	m := newMetrics("m1")
	node := mustSoloNode(t, m)
	svc := api.NewService(apiNode{node}, api.DefaultConfig(), slog.New(slog.DiscardHandler))
	defer svc.Close()
	m.reg.MustRegister(newNodeCollector(node, svc))
	srv := httptest.NewServer(httpHandler(m, node, slog.New(slog.DiscardHandler), true))
	defer srv.Close()

	// Traffic through the gRPC interceptor, the batcher and the apply path.
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(m.unary))
	svc.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	defer gs.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cairnpb.NewEventsClient(cc).Append(ctx, &cairnpb.AppendRequest{Stream: "s",
		Events: []*cairnpb.EventData{{Type: "T"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cairnpb.NewEventsClient(cc).Read(ctx, &cairnpb.ReadRequest{Stream: "missing"}); status.Code(err) != codes.NotFound {
		t.Fatalf("read of a missing stream: %v", err)
	}

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get("/readyz")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond) // polling readiness, bounded
	}
	if code, _ := get("/debug/pprof/"); code != 200 {
		t.Fatalf("pprof %d", code)
	}
	_, body := get("/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	for _, name := range []string{"cairn_raft_leader", "cairn_raft_term", "cairn_raft_commit_index", "cairn_fsm_applied_index",
		"cairn_raft_last_contact_seconds", "cairn_segment_bytes", "cairn_segment_files", "cairn_ready",
		"cairn_grpc_request_duration_seconds", "cairn_proposal_batch_requests", "cairn_fsm_apply_batch_seconds",
		"cairn_api_errors_total", "cairn_api_forwarded_total", "cairn_subscriptions_active",
		"cairn_subscription_events_total", "go_goroutines"} {
		if _, ok := families[name]; !ok {
			t.Errorf("scrape lacks %s", name)
		}
	}
	if v := families["cairn_raft_leader"].GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("solo leader reported as %v", v)
	}
	codesSeen := map[string]bool{}
	for _, mt := range families["cairn_grpc_request_duration_seconds"].GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetName() == "code" {
				codesSeen[l.GetValue()] = true
			}
		}
	}
	if !codesSeen["OK"] || !codesSeen["NotFound"] {
		t.Errorf("latency by code: %v", codesSeen)
	}
}

// A node that has no leader is alive but not ready.
func TestReadyzFalseWithoutLeader(t *testing.T) {
	node, err := cluster.Open(cluster.Config{NodeID: "lonely", DataDir: t.TempDir(), RaftBind: "127.0.0.1:0",
		GossipBind: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}) // no bootstrap: never a leader
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	srv := httptest.NewServer(httpHandler(newMetrics("lonely"), node, slog.New(slog.DiscardHandler), false))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d, want 503", resp.StatusCode)
	}
	if resp, _ := http.Get(srv.URL + "/debug/pprof/"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("pprof served without --pprof: %d", resp.StatusCode)
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

func TestVoterFalseMeansReadReplica(t *testing.T) {
	for _, args := range [][]string{{"--voter=false"}, {"--non-voter"}} {
		o, err := parseFlags(append([]string{"--node-id", "r", "--dev-insecure"}, args...), io.Discard)
		if err != nil || !o.nonVoter {
			t.Fatalf("%v: non-voter %v, err %v", args, o != nil && o.nonVoter, err)
		}
	}
	if o, _ := parseFlags([]string{"--node-id", "v", "--dev-insecure"}, io.Discard); o.nonVoter {
		t.Fatal("a voter by default")
	}
}
