package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/cluster"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// readyMaxLag is how far behind the commit index a node may be and still be ready.
const readyMaxLag = 1000

// metrics holds the histograms fed by hooks in the cluster, the state machine and the gRPC
// interceptors. State that can be read on demand (raft indexes, segment sizes, API counters) is
// exported by nodeCollector at scrape time instead, so nothing has to be kept in sync.
type metrics struct {
	reg       *prometheus.Registry
	rpc       *prometheus.HistogramVec
	batch     prometheus.Histogram
	batchSize prometheus.Histogram
	apply     prometheus.Histogram
	applyRecs prometheus.Histogram
	snapshot  *prometheus.HistogramVec
	// Space reclaim (compaction): passes by result, bytes freed, segments rewritten, events
	// redacted, pass duration.
	reclaimPasses   *prometheus.CounterVec
	reclaimBytes    prometheus.Counter
	reclaimSegments prometheus.Counter
	reclaimRecords  prometheus.Counter
	reclaimSeconds  prometheus.Histogram
}

func newMetrics(nodeID string) *metrics {
	labels := prometheus.Labels{"node": nodeID}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		rpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_grpc_request_duration_seconds", Help: "gRPC request latency by method and status code.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"method", "code"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cairn_proposal_batch_requests", Help: "Client requests packed into one raft entry.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cairn_proposal_batch_bytes", Help: "Size of a raft entry built by the proposal batcher.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(256, 4, 10),
		}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cairn_fsm_apply_batch_seconds", Help: "Time to apply one batch of committed raft entries.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.00001, 2, 18),
		}),
		applyRecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cairn_fsm_apply_batch_records", Help: "Records written by one apply batch.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		snapshot: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_snapshot_persist_seconds", Help: "Time to persist a state machine snapshot, by result.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"result"}),
		reclaimPasses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_reclaim_passes_total", Help: "Space reclaim passes over the sealed segments, by result (ok, error).",
			ConstLabels: labels,
		}, []string{"result"}),
		reclaimBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_reclaim_bytes_total", Help: "Segment bytes freed by space reclaim.", ConstLabels: labels,
		}),
		reclaimSegments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_reclaim_segments_rewritten_total", Help: "Sealed segments rewritten by space reclaim.", ConstLabels: labels,
		}),
		reclaimRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_reclaim_events_redacted_total", Help: "Compacted events replaced by redacted records.", ConstLabels: labels,
		}),
		reclaimSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cairn_reclaim_pass_seconds", Help: "Duration of one space reclaim pass.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.rpc, m.batch, m.batchSize, m.apply, m.applyRecs, m.snapshot,
		m.reclaimPasses, m.reclaimBytes, m.reclaimSegments, m.reclaimRecords, m.reclaimSeconds)
	return m
}

func (m *metrics) onBatch(requests, bytes int) {
	m.batch.Observe(float64(requests))
	m.batchSize.Observe(float64(bytes))
}

func (m *metrics) onApply(_, records int, took time.Duration) {
	m.apply.Observe(took.Seconds())
	m.applyRecs.Observe(float64(records))
}

func (m *metrics) onSnapshot(_ uint64, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.snapshot.WithLabelValues(result).Observe(took.Seconds())
}

func (m *metrics) onReclaim(st fsm.ReclaimStats, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reclaimPasses.WithLabelValues(result).Inc()
	m.reclaimBytes.Add(float64(max(st.BytesReclaimed(), 0)))
	m.reclaimSegments.Add(float64(st.SegmentsRewritten))
	m.reclaimRecords.Add(float64(st.RecordsRedacted))
	m.reclaimSeconds.Observe(st.Duration.Seconds())
}

// unary and stream are gRPC interceptors that time every request by method and code.
func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.rpc.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	// Streams (subscriptions) live as long as their clients want: their duration is not a
	// latency. They are counted by nodeCollector from the service's subscription stats instead.
	return h(srv, ss)
}

// nodeCollector exports a node's raft and state machine state and the API's counters, read at
// scrape time.
type nodeCollector struct {
	node *cluster.Node
	svc  *api.Service

	leader, term, commit, applied, lastLog, lastContact, lastPosition *prometheus.Desc
	segBytes, segFiles, ready                                         *prometheus.Desc
	errors, forwarded, forwardFailures                                *prometheus.Desc
	subsActive, subsStarted, subsEvents, subsEndedWithError           *prometheus.Desc
}

func newNodeCollector(node *cluster.Node, svc *api.Service) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("cairn_"+name, help, labels, prometheus.Labels{"node": node.ID()})
	}
	return &nodeCollector{
		node: node, svc: svc,
		leader:          d("raft_leader", "1 if this node is the raft leader."),
		term:            d("raft_term", "Current raft term."),
		commit:          d("raft_commit_index", "Raft commit index known to this node."),
		applied:         d("fsm_applied_index", "Raft index applied to the state machine and readable."),
		lastLog:         d("raft_last_log_index", "Last raft log index stored on this node."),
		lastContact:     d("raft_last_contact_seconds", "Seconds since a follower last heard from the leader (0 on the leader)."),
		lastPosition:    d("fsm_last_position", "Global position of the last readable event."),
		segBytes:        d("segment_bytes", "Bytes in the live segment files."),
		segFiles:        d("segment_files", "Number of live segment files."),
		ready:           d("ready", "1 if the node has a leader, is a member and is caught up (see /readyz)."),
		errors:          d("api_errors_total", "Error statuses returned, by reason.", "reason"),
		forwarded:       d("api_forwarded_total", "Requests forwarded to the leader."),
		forwardFailures: d("api_forward_failures_total", "Forwards that failed after a retry."),
		subsActive:      d("subscriptions_active", "Subscriptions being served now."),
		subsStarted:     d("subscriptions_started_total", "Subscriptions started."),
		subsEvents:      d("subscription_events_total", "Events sent to subscribers."),
		subsEndedWithError: d("subscriptions_failed_total",
			"Subscriptions that ended with an error (by reason in cairn_api_errors_total)."),
	}
}

// Describe implements prometheus.Collector.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.leader, c.term, c.commit, c.applied, c.lastLog, c.lastContact,
		c.lastPosition, c.segBytes, c.segFiles, c.ready, c.errors, c.forwarded, c.forwardFailures,
		c.subsActive, c.subsStarted, c.subsEvents, c.subsEndedWithError} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	ctr := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if st, err := c.node.Status(ctx, false); err == nil {
		isLeader := 0.0
		if st.GetRole() == "leader" {
			isLeader = 1
		}
		g(c.leader, isLeader)
		g(c.term, float64(st.GetTerm()))
		g(c.commit, float64(st.GetCommitIndex()))
		g(c.applied, float64(st.GetAppliedIndex()))
		g(c.lastLog, float64(st.GetLastLogIndex()))
		g(c.lastContact, st.GetLastContact().AsDuration().Seconds())
	}
	g(c.lastPosition, float64(c.node.FSM().LastPosition()))
	s := c.node.FSM().Storage()
	g(c.segBytes, float64(s.Bytes))
	g(c.segFiles, float64(s.Segments))
	ready, _ := c.node.Readiness(readyMaxLag)
	g(c.ready, map[bool]float64{true: 1}[ready])
	st := c.svc.Stats()
	for reason, n := range st.Errors {
		ctr(c.errors, n, reason)
	}
	ctr(c.forwarded, st.Forwarded)
	ctr(c.forwardFailures, st.ForwardFailures)
	ss := c.svc.SubscriptionStats()
	g(c.subsActive, float64(ss.Active))
	ctr(c.subsStarted, ss.Started)
	ctr(c.subsEvents, ss.Events)
	ctr(c.subsEndedWithError, ss.EndedWithError)
}

// httpHandler serves /metrics, /healthz (the process is up), /readyz (a member with a leader,
// caught up: 200, else 503 with the reason) and, with pprofOn, /debug/pprof/.
func httpHandler(m *metrics, node *cluster.Node, log *slog.Logger, pprofOn bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := node.Readiness(readyMaxLag); !ok {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// serveHTTP serves h on addr until stopped; errors after start are logged.
func serveHTTP(addr string, h http.Handler, log *slog.Logger) (stop func(), bound string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "error", err)
		}
	}()
	log.Info("metrics and health endpoints listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, ln.Addr().String(), nil
}

// readinessLoop mirrors readiness into the gRPC health service until ctx ends.
func readinessLoop(ctx context.Context, node *cluster.Node, svc *api.Service, log *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last, lastWhy := false, ""
	for {
		ready, why := node.Readiness(readyMaxLag)
		svc.SetReady(ready)
		if ready != last || why != lastWhy {
			log.Info("readiness changed", "ready", ready, "reason", why)
			last, lastWhy = ready, why
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// securityCollector exports whether the node runs in INSECURE dev mode and, with TLS, the
// certificate reloads and the peers refused in the handshake (another CA or cluster, a client
// certificate on a node-only channel).
type securityCollector struct {
	tl                                    *tlsutil.Loader // nil in dev mode
	insecure, reloads, failures, rejected *prometheus.Desc
	handshakes                            *prometheus.Desc
}

func newSecurityCollector(nodeID string, tl *tlsutil.Loader) *securityCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("cairn_"+name, help, nil, prometheus.Labels{"node": nodeID})
	}
	return &securityCollector{tl: tl,
		insecure: d("insecure_dev_mode", "1 if the node runs with --dev-insecure: no TLS, no gossip encryption."),
		reloads:  d("tls_reloads_total", "TLS certificate reloads that took effect."),
		failures: d("tls_reload_failures_total", "TLS certificate reloads that failed (the old certificates stayed)."),
		rejected: d("tls_peers_rejected_total", "Peers refused by certificate verification (CA, cluster name or role)."),
		handshakes: d("tls_grpc_handshake_failures_total",
			"Failed TLS handshakes on the gRPC port (plaintext, no client certificate, refused peer, hang-up)."),
	}
}

// Describe implements prometheus.Collector.
func (c *securityCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.insecure, c.reloads, c.failures, c.rejected, c.handshakes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *securityCollector) Collect(ch chan<- prometheus.Metric) {
	if c.tl == nil {
		ch <- prometheus.MustNewConstMetric(c.insecure, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.insecure, prometheus.GaugeValue, 0)
	reloads, failures, rejected := c.tl.Stats()
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(reloads))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(failures))
	ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(rejected))
	ch <- prometheus.MustNewConstMetric(c.handshakes, prometheus.CounterValue, float64(c.tl.HandshakeFailures()))
}
