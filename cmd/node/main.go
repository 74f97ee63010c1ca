// Command cairnd runs one Cairn node: raft, the state machine, gossip discovery and the gRPC API.
//
// Every node of a cluster runs the same command line apart from its own id and addresses:
//
//	cairnd --node-id node1 --data-dir /var/lib/cairn \
//	  --grpc-bind 0.0.0.0:7101 --grpc-advertise 10.0.0.1:7101 \
//	  --raft-bind 0.0.0.0:7201 --raft-advertise 10.0.0.1:7201 \
//	  --gossip-bind 0.0.0.0:7301 --gossip-advertise 10.0.0.1:7301 \
//	  --join 10.0.0.1:7301,10.0.0.2:7301,10.0.0.3:7301 --bootstrap-expect 3 \
//	  --tls-ca tls/ca.crt --tls-cert tls/node-node1.crt --tls-key tls/node-node1.key \
//	  --gossip-key-file tls/gossip.key
//
// Mutual TLS is required: without --tls-* and --gossip-key-file the node refuses to start,
// unless --dev-insecure asks for a plaintext development node (logged as a warning).
//
// Every flag can also be set from the environment as CAIRN_<FLAG> (upper case, dashes as
// underscores): --node-id is CAIRN_NODE_ID. A flag on the command line wins over the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/cluster"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "cairnd:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// options are cairnd's settings, from flags and CAIRN_* variables.
type options struct {
	nodeID, dataDir                  string
	grpcBind, grpcAdvertise          string
	raftBind, raftAdvertise          string
	gossipBind, gossipAdvertise      string
	join                             string
	bootstrapExpect                  int
	nonVoter, voter, leaveOnShutdown bool
	logFormat, logLevel              string
	heartbeatTimeout                 time.Duration
	electionTimeout                  time.Duration
	snapshotThreshold                uint64
	snapshotInterval                 time.Duration
	compactInterval                  time.Duration
	segmentBytes                     int64
	dedupeMaxEvents                  int
	dedupeMaxAge                     time.Duration
	maxEventBytes, maxRequestBytes   int
	maxEventsPerAppend, maxReadLimit int
	shutdownTimeout                  time.Duration
	limits                           api.Config // connection and name limits (limitFlags)
	auth                             bool
	bootstrapToken                   string
	bootstrapTokenFile               string
	metricsBind                      string
	pprof                            bool

	tls               tlsutil.Files
	clusterName       string
	gossipKeyFile     string
	devInsecure       bool
	tlsReloadInterval time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("cairnd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.nodeID, "node-id", "", "this node's stable, unique id (required)")
	fs.StringVar(&o.dataDir, "data-dir", "data", "directory for raft and event data; belongs to one node id")
	fs.StringVar(&o.grpcBind, "grpc-bind", "127.0.0.1:7101", "gRPC API listen address")
	fs.StringVar(&o.grpcAdvertise, "grpc-advertise", "", "gRPC address other nodes and clients use (default: grpc-bind)")
	fs.StringVar(&o.raftBind, "raft-bind", "127.0.0.1:7201", "raft listen address")
	fs.StringVar(&o.raftAdvertise, "raft-advertise", "", "raft address other nodes dial (default: raft-bind)")
	fs.StringVar(&o.gossipBind, "gossip-bind", "127.0.0.1:7301", "memberlist gossip listen address (TCP and UDP)")
	fs.StringVar(&o.gossipAdvertise, "gossip-advertise", "", "gossip address other nodes use (default: gossip-bind)")
	fs.StringVar(&o.join, "join", "", "comma-separated gossip addresses of nodes to join through")
	fs.IntVar(&o.bootstrapExpect, "bootstrap-expect", 0, "bootstrap a new cluster once this many voters see each other (0: join an existing one)")
	fs.BoolVar(&o.nonVoter, "non-voter", false, "run as a read replica: never a voter (same as --voter=false)")
	fs.BoolVar(&o.voter, "voter", true, "take part in elections and quorums; --voter=false makes a read replica")
	fs.BoolVar(&o.leaveOnShutdown, "leave-on-shutdown", false, "on SIGTERM, leave the raft configuration for good (scale-down), not just stop")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&o.heartbeatTimeout, "heartbeat-timeout", time.Second, "raft heartbeat timeout")
	fs.DurationVar(&o.electionTimeout, "election-timeout", time.Second, "raft election timeout")
	fs.Uint64Var(&o.snapshotThreshold, "snapshot-threshold", 8192, "raft entries between snapshots")
	fs.DurationVar(&o.snapshotInterval, "snapshot-interval", 30*time.Second, "how often to check whether to snapshot")
	fs.DurationVar(&o.compactInterval, "compact-interval", time.Hour,
		"how often the leader proposes a compaction when deleted events await one (space reclaim); 0 disables (then only 'cairnctl compact')")
	fs.Int64Var(&o.segmentBytes, "segment-bytes", 0, "segment file size at which the next file starts (0: 64 MiB); only sealed files are compacted")
	fs.IntVar(&o.dedupeMaxEvents, "dedupe-max-events", fsm.DefaultDedupeMaxEvents, "idempotency window: most recent events remembered by id (same on every node)")
	fs.DurationVar(&o.dedupeMaxAge, "dedupe-max-age", fsm.DefaultDedupeMaxAge, "idempotency window: age in commit time (same on every node; negative: unbounded)")
	fs.IntVar(&o.maxEventBytes, "max-event-bytes", api.DefaultMaxEventBytes, "largest event accepted (data+metadata+type+content type+tags)")
	fs.IntVar(&o.maxRequestBytes, "max-request-bytes", api.DefaultMaxRequestBytes, "largest append request accepted")
	fs.IntVar(&o.maxEventsPerAppend, "max-events-per-append", api.DefaultMaxEventsPerAppend, "most events in one append")
	fs.IntVar(&o.maxReadLimit, "max-read-limit", api.DefaultMaxReadLimit, "most events one read returns")
	fs.StringVar(&o.metricsBind, "metrics-bind", "", "HTTP listen address of /metrics, /healthz and /readyz (empty: off)")
	fs.BoolVar(&o.pprof, "pprof", false, "also serve /debug/pprof/ on the metrics address")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown may take")
	limitFlags(fs, &o.limits)
	fs.BoolVar(&o.auth, "auth", false, "require a bearer token with a role on every call (off: dev mode, anyone may do anything)")
	fs.StringVar(&o.bootstrapTokenFile, "bootstrap-token-file", "", "file holding an admin token that works without being created (same on every node), to create the first tokens")
	fs.StringVar(&o.bootstrapToken, "bootstrap-token", "", "the bootstrap admin token itself; prefer CAIRN_BOOTSTRAP_TOKEN or --bootstrap-token-file (flags show in ps)")
	fs.StringVar(&o.tls.CA, "tls-ca", "", "cluster CA certificate (PEM): with --tls-cert and --tls-key, mutual TLS 1.3 on every channel")
	fs.StringVar(&o.tls.Cert, "tls-cert", "", "this node's certificate (PEM), issued for cairn://<cluster>/node/<node-id> (cairnctl tls init)")
	fs.StringVar(&o.tls.Key, "tls-key", "", "the private key of --tls-cert (PEM)")
	fs.StringVar(&o.clusterName, "cluster-name", "", "cluster name every peer certificate must carry (default: the one in --tls-cert, which must match when given)")
	fs.StringVar(&o.gossipKeyFile, "gossip-key-file", "", "memberlist keyring: base64 keys, one a line, first primary (required with TLS; cairnctl tls init writes one)")
	fs.BoolVar(&o.devInsecure, "dev-insecure", false, "development only: no TLS, no gossip encryption; every channel open to anyone who can reach it")
	fs.DurationVar(&o.tlsReloadInterval, "tls-reload-interval", 10*time.Second, "how often to look for changed TLS and gossip key files (SIGHUP reloads at once; 0: SIGHUP only)")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if o.nodeID == "" {
		return nil, fmt.Errorf("%w: --node-id (or CAIRN_NODE_ID) is required", errUsage)
	}
	if o.grpcAdvertise == "" {
		o.grpcAdvertise = o.grpcBind
	}
	if err := o.checkSecurity(); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	o.nonVoter = o.nonVoter || !o.voter
	return o, nil
}

// errNoSecurity: neither TLS material nor --dev-insecure was given.
var errNoSecurity = errors.New("no TLS material: pass --tls-ca, --tls-cert, --tls-key and --gossip-key-file " +
	"(create them with `cairnctl tls init --dir <dir> --nodes <ids> --cluster-name <name>`), " +
	"or --dev-insecure to run a plaintext development node")

// checkSecurity enforces DESIGN §10: TLS unless dev mode is asked for explicitly, never both.
func (o *options) checkSecurity() error {
	if o.devInsecure {
		if o.tls.Any() || o.clusterName != "" {
			return errors.New("--dev-insecure cannot be combined with --tls-ca, --tls-cert, --tls-key or --cluster-name")
		}
		return nil
	}
	if !o.tls.Any() && o.gossipKeyFile == "" {
		return errNoSecurity
	}
	if !o.tls.Complete() {
		return fmt.Errorf("TLS needs all of --tls-ca, --tls-cert and --tls-key (got ca=%q cert=%q key=%q)", o.tls.CA, o.tls.Cert, o.tls.Key)
	}
	if o.gossipKeyFile == "" {
		return errors.New("TLS needs --gossip-key-file too, or gossip would travel in plaintext (cairnctl tls init writes gossip.key)")
	}
	if o.tlsReloadInterval < 0 {
		return errors.New("--tls-reload-interval must not be negative")
	}
	return nil
}

// applyEnv sets every flag not given on the command line from CAIRN_<NAME>, if set.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "CAIRN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: %w", errUsage, level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: want text or json", errUsage, format)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// apiNode adapts *cluster.Node to api.Node.
type apiNode struct{ *cluster.Node }

// Store returns the local state machine.
func (a apiNode) Store() api.Store { return a.FSM() }

func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(o.logFormat, o.logLevel, stderr)
	if err != nil {
		return err
	}
	base := log // the cluster adds its own node attribute
	log = log.With("node", o.nodeID)
	var tl *tlsutil.Loader
	if o.devInsecure {
		log.Warn("SECURITY: INSECURE dev mode (--dev-insecure): no TLS, no gossip encryption; " +
			"every channel is plaintext and open to anyone who can reach it")
	} else {
		if tl, err = tlsutil.Load(o.tls, o.clusterName, log.With("component", "tls")); err != nil {
			return err
		}
		if id := tl.Identity(); id.Role != tlsutil.RoleNode || id.Name != o.nodeID {
			return fmt.Errorf("--tls-cert is issued for %s, not for node %q", id, o.nodeID)
		}
		log.Info("mutual TLS on every channel", "identity", tl.Identity().String(), "gossip_key_file", o.gossipKeyFile)
	}

	apiCfg := o.limits
	if apiCfg.Auth, err = authConfig(o); err != nil {
		return err
	}
	switch {
	case o.auth && o.devInsecure:
		log.Info("authentication on: every call needs a bearer token", "bootstrap_token", apiCfg.Auth.BootstrapToken != "")
		log.Warn("SECURITY: --auth without TLS: bearer tokens travel in plaintext")
	case o.auth:
		log.Info("authentication on: every call needs a bearer token", "bootstrap_token", apiCfg.Auth.BootstrapToken != "")
	case !o.devInsecure:
		log.Warn("SECURITY: authentication off (no --auth): every client holding a certificate of the cluster may do anything")
	}
	apiCfg.MaxEventBytes, apiCfg.MaxRequestBytes = o.maxEventBytes, o.maxRequestBytes
	apiCfg.MaxEventsPerAppend, apiCfg.MaxReadLimit = o.maxEventsPerAppend, o.maxReadLimit

	ln, err := net.Listen("tcp", o.grpcBind)
	if err != nil {
		return fmt.Errorf("grpc listen on %s: %w", o.grpcBind, err)
	}
	defer ln.Close()
	var src net.Addr
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsUnspecified() {
		// Forward from the address we serve on (see api.SourceDialer).
		src = &net.TCPAddr{IP: tcp.IP}
	}
	var serverCreds []grpc.ServerOption
	if tl != nil {
		apiCfg.Dialer = api.SecureDialer(apiCfg, src, tl.GRPCClientCredentials())
		serverCreds = append(serverCreds, grpc.Creds(tl.GRPCServerCredentials(tlsutil.RoleNode, tlsutil.RoleClient)))
	} else if src != nil {
		apiCfg.Dialer = api.SourceDialer(apiCfg, src)
	}

	m := newMetrics(o.nodeID)
	fcfg := fsm.Config{Dedupe: fsm.DedupeHorizon{MaxEvents: o.dedupeMaxEvents, MaxAge: o.dedupeMaxAge},
		OnApply: m.onApply, OnSnapshot: m.onSnapshot, OnReclaim: m.onReclaim}
	// The FSM's record limit must stay above the api's event limit (see api.Config.MaxEventBytes).
	fcfg.Segment.MaxRecordBytes = max(16<<20, 2*o.maxEventBytes+64<<10)
	fcfg.Segment.MaxSegmentBytes = o.segmentBytes
	node, err := cluster.Open(cluster.Config{
		NodeID: o.nodeID, DataDir: o.dataDir,
		RaftBind: o.raftBind, RaftAdvertise: o.raftAdvertise,
		GRPCAdvertise: o.grpcAdvertise,
		GossipBind:    o.gossipBind, GossipAdvertise: o.gossipAdvertise,
		Join: splitList(o.join), BootstrapExpect: o.bootstrapExpect, NonVoter: o.nonVoter, LeaveOnClose: o.leaveOnShutdown,
		HeartbeatTimeout: o.heartbeatTimeout, ElectionTimeout: o.electionTimeout,
		SnapshotThreshold: o.snapshotThreshold, SnapshotInterval: o.snapshotInterval, CompactInterval: o.compactInterval,
		FSM: fcfg, Version: version, Logger: base, OnBatch: m.onBatch,
		TLS: tl, GossipKeyFile: o.gossipKeyFile,
	})
	if err != nil {
		return err
	}
	svc := api.NewService(apiNode{node}, apiCfg, log)
	srv := grpc.NewServer(append(append(svc.ServerOptions(), serverCreds...),
		grpc.ChainUnaryInterceptor(m.unary), grpc.ChainStreamInterceptor(m.stream))...)
	svc.Register(srv)

	m.reg.MustRegister(newNodeCollector(node, svc), newSecurityCollector(o.nodeID, tl))
	if o.metricsBind != "" {
		stopHTTP, _, err := serveHTTP(o.metricsBind, httpHandler(m, node, log, o.pprof), log)
		if err != nil {
			return errors.Join(fmt.Errorf("metrics listen on %s: %w", o.metricsBind, err), shutdown(log, o.shutdownTimeout, svc, srv, node))
		}
		defer stopHTTP()
	}
	readyCtx, stopReady := context.WithCancel(ctx)
	defer stopReady()
	go readinessLoop(readyCtx, node, svc, log)
	stopReload := watchSecurity(readyCtx, o, tl, node, log)
	defer stopReload()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("cairnd started", "version", version, "grpc", ln.Addr().String(), "raft", node.RaftAddr(),
		"gossip", node.GossipAddr(), "data_dir", o.dataDir, "bootstrap_expect", o.bootstrapExpect)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	var runErr error
	select {
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
	case err := <-serveErr:
		runErr = fmt.Errorf("grpc server stopped: %w", err)
		log.Error("grpc server stopped", "error", err)
	case <-ctx.Done():
		log.Info("shutting down", "reason", ctx.Err())
	}
	stopReady()
	return errors.Join(runErr, shutdown(log, o.shutdownTimeout, svc, srv, node))
}

// watchSecurity reloads the TLS material and the gossip keyring on SIGHUP and, every
// --tls-reload-interval, when their files changed. A failed reload keeps what is in force and is
// logged (tlsutil.Loader.Reload, cluster.Node.ReloadGossipKeys). It returns a function that stops
// the watchers and waits for them.
func watchSecurity(ctx context.Context, o *options, tl *tlsutil.Loader, node *cluster.Node, log *slog.Logger) func() {
	if tl == nil && o.gossipKeyFile == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	reloadGossip := func() {
		if o.gossipKeyFile != "" {
			_ = node.ReloadGossipKeys() // logged there
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading TLS certificates and gossip keys")
				if tl != nil {
					_ = tl.Reload() // logged there
				}
				reloadGossip()
			}
		}
	}()
	if o.tlsReloadInterval > 0 {
		if tl != nil {
			wg.Add(1)
			go func() { defer wg.Done(); tl.Watch(ctx, o.tlsReloadInterval) }()
		}
		if o.gossipKeyFile != "" {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tlsutil.WatchFiles(ctx, o.tlsReloadInterval, reloadGossip, o.gossipKeyFile)
			}()
		}
	}
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

// shutdown stops serving new requests, lets in-flight ones finish, transfers leadership and
// closes the node, all within timeout: past half of it, connections are cut; past all of it, the
// process gives up on a clean close (the data on disk is crash-safe by design) and says so, so a
// supervisor's stop never hangs on us.
func shutdown(log *slog.Logger, timeout time.Duration, svc *api.Service, srv *grpc.Server, node *cluster.Node) error {
	deadline := time.Now().Add(timeout)
	svc.SetServing(false)
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(timeout / 2):
		log.Warn("in-flight requests did not finish in time; closing connections")
		srv.Stop()
	}
	closed := make(chan error, 1)
	go func() { closed <- errors.Join(node.Close(), svc.Close()) }()
	var err error
	select {
	case err = <-closed:
	case <-time.After(time.Until(deadline)):
		err = fmt.Errorf("node did not close within the %v shutdown timeout; exiting anyway (data on disk is crash-safe)", timeout)
		buf := make([]byte, 1<<20)
		log.Error("shutdown timed out", "error", err, "goroutines", string(buf[:runtime.Stack(buf, true)]))
	}
	if err != nil {
		log.Error("shutdown finished with errors", "error", err)
	} else {
		log.Info("shutdown complete")
	}
	return err
}
