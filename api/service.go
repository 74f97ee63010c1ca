package api

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// Service serves Cairn's gRPC API (the Events and Cluster services) over a Node: it validates
// requests, translates them to state machine commands, forwards what a follower cannot serve to
// the leader, and maps every outcome to one gRPC status with typed details (DESIGN §6). It is
// safe for concurrent use.
type Service struct {
	cairnpb.UnimplementedEventsServer
	cairnpb.UnimplementedClusterServer
	cairnpb.UnimplementedAuthServer

	node   Node
	cfg    Config
	log    *slog.Logger
	health *health.Server
	pool   *connPool
	stats  *counters
	subs   subscriptions // running subscriptions: drain switch and counters (subscribe.go)
	// connSubs counts subscriptions per client connection (Config.MaxSubscriptionsPerConn).
	connSubs connSubscriptions
	// auth authenticates calls when cfg.Auth.Enabled (auth.go).
	auth Authenticator
	// denyLog rate-limits the log lines of refused calls (auth.go).
	denyLog logLimiter
}

var (
	_ cairnpb.EventsServer  = (*Service)(nil)
	_ cairnpb.ClusterServer = (*Service)(nil)
	_ cairnpb.AuthServer    = (*Service)(nil)
)

// NewService returns a Service over node. Zero fields of cfg take their defaults (see
// DefaultConfig); a nil logger means slog.Default(). The health status starts as SERVING.
func NewService(node Node, cfg Config, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.Default()
	}
	cfg = cfg.withDefaults()
	s := &Service{
		node:   node,
		cfg:    cfg,
		log:    logger.With("component", "api"),
		health: health.NewServer(),
		pool:   newConnPool(cfg.Dialer),
		stats:  newCounters(),
	}
	s.auth = cfg.Auth.Authenticator
	if s.auth == nil {
		s.auth = TokenOrCertAuthenticator{Token: TokenAuthenticator{Store: nodeTokens{node}, Bootstrap: cfg.Auth.BootstrapToken}}
	}
	s.SetServing(true)
	return s
}

// Config returns the effective configuration, defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// Register registers on srv the Events, Cluster and Auth services, the standard gRPC health
// service (grpc.health.v1.Health) and server reflection, so that grpcurl works without proto
// files. srv should be built with s.ServerOptions(): the limits, the codec that hands the Cairn
// handlers their requests' raw bytes (without it, malformed wire data is gRPC's INTERNAL) and the
// auth interceptors (without them, with auth enabled, every Cairn call is refused).
func (s *Service) Register(srv *grpc.Server) {
	// The Cairn handlers decode their own requests (decode.go), so that a request that does not
	// decode is INVALID_ARGUMENT, not gRPC's bare INTERNAL, and fail closed without the auth
	// interceptor (auth.go).
	srv.RegisterService(s.decodingDesc(&cairnpb.Events_ServiceDesc), s)
	srv.RegisterService(s.decodingDesc(&cairnpb.Cluster_ServiceDesc), s)
	srv.RegisterService(s.decodingDesc(&cairnpb.Auth_ServiceDesc), s)
	healthpb.RegisterHealthServer(srv, s.health)
	reflection.Register(srv)
}

// healthServices are the service names whose health SetServing reports, "" being the server as a
// whole.
var healthServices = []string{"", cairnpb.Events_ServiceDesc.ServiceName, cairnpb.Cluster_ServiceDesc.ServiceName}

// SetServing sets the health status of the server and of the Events and Cluster services to
// SERVING or NOT_SERVING (for instance while the node is starting, or draining before shutdown).
// NOT_SERVING also ends running subscriptions (UNAVAILABLE SHUTTING_DOWN, so clients resume on
// another node) and refuses new ones. It has no effect after Close.
func (s *Service) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range healthServices {
		s.health.SetServingStatus(name, st)
	}
	s.subs.setServing(serving) // not serving: end subscriptions, so clients resume elsewhere
}

// Close reports NOT_SERVING on the health service from now on and closes the pooled connections
// used for forwarding; forwarding then fails with UNAVAILABLE. It does not stop the grpc.Server,
// which belongs to the caller. Close is idempotent.
func (s *Service) Close() error {
	s.health.Shutdown()
	s.subs.close()
	return s.pool.close()
}

// fail maps err to its gRPC status (statusFromError), counts it by reason and logs it: INTERNAL
// at error level with the underlying error, state machine rejections and unknown outcomes at
// warn level, the rest at debug level.
func (s *Service) fail(ctx context.Context, op string, err error) error {
	st := statusFromError(err)
	reason := reasonOf(st)
	s.stats.countError(reason)
	attrs := []any{"op", op, "code", st.Code().String(), "reason", reason}
	if by := forwardedBy(ctx); by != "" {
		attrs = append(attrs, "forwarded_by", by)
	}
	switch {
	case st.Code() == codes.Internal:
		s.log.Error("request failed", append(attrs, "error", err)...)
	case reason == ReasonInvalidCommand || reason == ReasonOutcomeUnknown || reason == "":
		s.log.Warn("request failed", append(attrs, "error", err)...)
	default:
		s.log.Debug("request failed", append(attrs, "error", err)...)
	}
	return st.Err()
}

// propose replicates req and folds the request's own outcome (Result.Err) into the error.
func (s *Service) propose(ctx context.Context, req *fsmpb.Request) (fsm.Result, error) {
	res, err := s.node.Propose(ctx, req)
	if err != nil {
		return res, err
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// Append implements cairnpb.EventsServer. It validates the request (nothing invalid reaches
// Propose), gives events without an id a random v4 UUID, proposes the append through the Node and
// returns the committed result, or the original result when every event id is already stored
// (idempotent retry). On a follower it forwards the request to the leader, one hop, unless
// require_leader is set; then it answers UNAVAILABLE with a NotLeader detail. Errors follow the
// table in DESIGN.md.
func (s *Service) Append(ctx context.Context, req *cairnpb.AppendRequest) (*cairnpb.AppendResponse, error) {
	const op = "append"
	cmd, err := s.validateAppend(req)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	res, err := s.propose(ctx, cmd)
	if err != nil {
		// Events without an id get one before they may leave this node, so a retried forward
		// carries the same ids and cannot write them twice.
		fwd := proto.Clone(req).(*cairnpb.AppendRequest)
		fillIDs(fwd.Events)
		return forwardOrFail(ctx, s, op, err, req.GetRequireLeader(), true,
			func(ctx context.Context, c cairnpb.EventsClient) (*cairnpb.AppendResponse, error) {
				return c.Append(ctx, fwd)
			})
	}
	if len(res.Streams) != 1 {
		return nil, s.fail(ctx, op, fmt.Errorf("append: state machine returned %d stream results, want 1", len(res.Streams)))
	}
	sr := res.Streams[0]
	return &cairnpb.AppendResponse{
		FirstRevision: sr.FirstRevision,
		LastRevision:  sr.LastRevision,
		FirstPosition: sr.FirstPosition,
		LastPosition:  sr.LastPosition,
		LogIndex:      res.LogIndex,
		CommitTime:    commitTime(res.Timestamp),
		Idempotent:    res.Idempotent,
	}, nil
}

// Tombstone implements cairnpb.EventsServer: it tombstones a stream if the expected revision
// holds, with the same forwarding rules as Append. Tombstoning is not idempotent: a retry after
// an unknown outcome finds the stream tombstoned (FAILED_PRECONDITION).
func (s *Service) Tombstone(ctx context.Context, req *cairnpb.TombstoneRequest) (*cairnpb.TombstoneResponse, error) {
	const op = "tombstone"
	cmd, err := s.validateTombstone(req)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	res, err := s.propose(ctx, cmd)
	if err != nil {
		return forwardOrFail(ctx, s, op, err, req.GetRequireLeader(), true,
			func(ctx context.Context, c cairnpb.EventsClient) (*cairnpb.TombstoneResponse, error) {
				return c.Tombstone(ctx, req)
			})
	}
	if len(res.Streams) != 1 {
		return nil, s.fail(ctx, op, fmt.Errorf("tombstone: state machine returned %d stream results, want 1", len(res.Streams)))
	}
	return &cairnpb.TombstoneResponse{
		Position:   res.Streams[0].FirstPosition,
		LogIndex:   res.LogIndex,
		CommitTime: commitTime(res.Timestamp),
	}, nil
}

// AppendMulti implements cairnpb.EventsServer: Append for several distinct streams at once,
// atomically. Parts without events are check-only conditions; every violated condition is
// reported in one WrongExpectedRevision detail. Results are in request order.
func (s *Service) AppendMulti(ctx context.Context, req *cairnpb.AppendMultiRequest) (*cairnpb.AppendMultiResponse, error) {
	const op = "append_multi"
	cmd, err := s.validateAppendMulti(req)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	res, err := s.propose(ctx, cmd)
	if err != nil {
		fwd := proto.Clone(req).(*cairnpb.AppendMultiRequest) // ids filled once, as in Append
		for _, p := range fwd.Appends {
			fillIDs(p.Events)
		}
		return forwardOrFail(ctx, s, op, err, req.GetRequireLeader(), true,
			func(ctx context.Context, c cairnpb.EventsClient) (*cairnpb.AppendMultiResponse, error) {
				return c.AppendMulti(ctx, fwd)
			})
	}
	if len(res.Streams) != len(req.GetAppends()) {
		return nil, s.fail(ctx, op, fmt.Errorf("append multi: state machine returned %d stream results, want %d",
			len(res.Streams), len(req.GetAppends())))
	}
	out := &cairnpb.AppendMultiResponse{
		Results:    make([]*cairnpb.StreamAppendResult, len(res.Streams)),
		LogIndex:   res.LogIndex,
		CommitTime: commitTime(res.Timestamp),
		Idempotent: res.Idempotent,
	}
	for i, sr := range res.Streams {
		out.Results[i] = &cairnpb.StreamAppendResult{
			Stream:        sr.Stream,
			Count:         uint32(sr.Count),
			FirstRevision: sr.FirstRevision,
			LastRevision:  sr.LastRevision,
			FirstPosition: sr.FirstPosition,
			LastPosition:  sr.LastPosition,
		}
	}
	return out, nil
}

// Read implements cairnpb.EventsServer. It passes the read fence for the requested consistency
// (UNSPECIFIED is LINEARIZABLE), forwarding LINEARIZABLE and LEADER reads from a follower to the
// leader, then reads the local store in pages: up to limit events (0 means
// Config.DefaultReadLimit, larger than Config.MaxReadLimit is clamped) and at most
// Config.MaxResponseBytes of them, always at least one when one exists. end_of_stream is true only
// when the read reached the end (forward) or revision 0 (backward). served_by is always set.
func (s *Service) Read(ctx context.Context, req *cairnpb.ReadRequest) (*cairnpb.ReadResponse, error) {
	const op = "read"
	p, err := s.validateRead(req)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	info, err := s.node.ReadFence(ctx, p.opts)
	if err != nil {
		return forwardOrFail(ctx, s, op, err, false, false,
			func(ctx context.Context, c cairnpb.EventsClient) (*cairnpb.ReadResponse, error) {
				return c.Read(ctx, req)
			})
	}
	res, err := s.readStream(ctx, p)
	if err != nil {
		return nil, s.fail(ctx, op, &streamError{stream: p.stream, err: err})
	}
	return &cairnpb.ReadResponse{Events: res.events, ServedBy: servedBy(info), EndOfStream: res.end}, nil
}

// ReadAll implements cairnpb.EventsServer: like Read, over the global log, with an optional
// filter. It examines at most Config.MaxScanRecords records per call and returns
// checkpoint_position, the last position examined, so a client resumes a sparse filtered read at
// checkpoint_position+1 (forward) or -1 (backward). $all includes tombstone and soft-delete
// records as events of type TombstoneEventType / fsm.TypeSoftDelete without an id; filters apply
// to them like to any event. Events hidden by their stream's lifecycle (metadata limits, soft
// delete, tombstone) and metadata records are skipped but count as examined.
func (s *Service) ReadAll(ctx context.Context, req *cairnpb.ReadAllRequest) (*cairnpb.ReadAllResponse, error) {
	const op = "read_all"
	p, err := s.validateReadAll(req)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	info, err := s.node.ReadFence(ctx, p.opts)
	if err != nil {
		return forwardOrFail(ctx, s, op, err, false, false,
			func(ctx context.Context, c cairnpb.EventsClient) (*cairnpb.ReadAllResponse, error) {
				return c.ReadAll(ctx, req)
			})
	}
	res, checkpoint, err := s.readAll(ctx, p)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return &cairnpb.ReadAllResponse{
		Events:             res.events,
		ServedBy:           servedBy(info),
		CheckpointPosition: checkpoint,
		EndOfLog:           res.end,
	}, nil
}

// forwardOrFail handles the error of a local attempt: when the request may go to the leader
// (forwardTarget: not leader, a leader address known, not forwarded already, require_leader not
// set) it is forwarded there and the leader's answer is returned; otherwise the error is mapped to
// its status. write says whether an unanswered forward is an unknown outcome.
func forwardOrFail[T proto.Message](ctx context.Context, s *Service, op string, err error, requireLeader, write bool,
	call func(context.Context, cairnpb.EventsClient) (T, error)) (T, error) {
	var zero T
	addr, ok := s.forwardTarget(ctx, op, err, requireLeader)
	if !ok {
		return zero, s.fail(ctx, op, err)
	}
	resp, err := forward(ctx, s, op, addr, write, call)
	if err != nil {
		return zero, s.fail(ctx, op, err)
	}
	return resp, nil
}

// Status implements cairnpb.ClusterServer: this node's view of the cluster.
func (s *Service) Status(ctx context.Context, req *cairnpb.StatusRequest) (*cairnpb.StatusResponse, error) {
	resp, err := s.node.Status(ctx, req.GetWithMemberLag())
	if err != nil {
		return nil, s.fail(ctx, "status", err)
	}
	return resp, nil
}

// Digest implements cairnpb.ClusterServer: a hash of this node's records up to a position, for
// convergence checks. It reads local state only (no consistency fence): comparing nodes is the
// caller's job, at a position every node has applied.
func (s *Service) Digest(ctx context.Context, req *cairnpb.DigestRequest) (*cairnpb.DigestResponse, error) {
	store := s.node.Store()
	applied := store.AppliedIndex()
	last, sum, err := store.Digest(req.GetUpToPosition())
	if err != nil {
		return nil, s.fail(ctx, "digest", err)
	}
	return &cairnpb.DigestResponse{NodeId: s.node.ID(), AppliedIndex: applied, LastPosition: last, Sha256: sum}, nil
}

func commitTime(unixNanos int64) *timestamppb.Timestamp {
	return timestamppb.New(time.Unix(0, unixNanos))
}
