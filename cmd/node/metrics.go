package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/cluster"
)

// nodeCollector exports a node's raft and state machine state and the API's counters, read at
// scrape time (no background goroutine, nothing to keep in sync).
type nodeCollector struct {
	node *cluster.Node
	svc  *api.Service

	leader, term, commit, applied, lastLog, lastContact, lastPosition *prometheus.Desc
	errors, forwarded, forwardFailures                                *prometheus.Desc
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
		errors:          d("api_errors_total", "Error statuses returned, by reason.", "reason"),
		forwarded:       d("api_forwarded_total", "Requests forwarded to the leader."),
		forwardFailures: d("api_forward_failures_total", "Forwards that failed after a retry."),
	}
}

// Describe implements prometheus.Collector.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.leader, c.term, c.commit, c.applied, c.lastLog, c.lastContact,
		c.lastPosition, c.errors, c.forwarded, c.forwardFailures} {
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
	s := c.svc.Stats()
	for reason, n := range s.Errors {
		ctr(c.errors, n, reason)
	}
	ctr(c.forwarded, s.Forwarded)
	ctr(c.forwardFailures, s.ForwardFailures)
}

// serveMetrics serves /metrics on addr until ctx ends. Errors after start are logged.
func serveMetrics(ctx context.Context, addr string, node *cluster.Node, svc *api.Service, log *slog.Logger) (func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newNodeCollector(node, svc))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "error", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}
