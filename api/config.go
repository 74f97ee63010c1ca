package api

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Default limits (DESIGN §6). cairnd exposes each as a flag.
const (
	// DefaultMaxEventBytes bounds one event: data + metadata + type + content type + tags.
	DefaultMaxEventBytes = 1 << 20
	// DefaultMaxRequestBytes bounds the encoded size (proto.Size) of one request.
	DefaultMaxRequestBytes = 4 << 20
	// DefaultMaxEventsPerAppend bounds the number of events of one Append or AppendMulti.
	DefaultMaxEventsPerAppend = 10_000
	// DefaultMaxStreamNameBytes bounds a stream name, in bytes of UTF-8.
	DefaultMaxStreamNameBytes = 255
	// DefaultDefaultReadLimit is the number of events a read returns when its limit is 0.
	DefaultDefaultReadLimit = 100
	// DefaultMaxReadLimit is the largest limit a read honours; larger limits are clamped to it.
	DefaultMaxReadLimit = 10_000
	// DefaultMaxResponseBytes bounds the events of one read response, so that a response fits
	// the default 4 MiB receive limit of gRPC clients.
	DefaultMaxResponseBytes = 4<<20 - 64<<10
	// DefaultMaxScanRecords bounds how many records one filtered ReadAll examines.
	DefaultMaxScanRecords = 10 * DefaultMaxReadLimit
	// DefaultMaxFilterEntries bounds the entries of each field of a ReadAll filter.
	DefaultMaxFilterEntries = 256
	// DefaultForwardTimeout bounds a request forwarded to the leader.
	DefaultForwardTimeout = 10 * time.Second
	// DefaultMaxConcurrentStreams bounds the concurrent RPCs of one client connection (HTTP/2
	// streams); a client past it waits for a slot.
	DefaultMaxConcurrentStreams = 1024
	// DefaultMaxSubscriptionsPerConn bounds the running subscriptions of one client connection.
	DefaultMaxSubscriptionsPerConn = 256
	// DefaultMaxHeaderListBytes bounds the gRPC metadata (headers) of one request.
	DefaultMaxHeaderListBytes = 64 << 10
	// DefaultKeepaliveMinTime is the shortest client keepalive ping interval tolerated; a client
	// pinging more often is disconnected.
	DefaultKeepaliveMinTime = 10 * time.Second
	// DefaultKeepaliveTime is how long a connection may be silent before the server pings it.
	DefaultKeepaliveTime = time.Minute
	// DefaultKeepaliveTimeout is how long the server waits for a ping's answer before closing
	// the connection.
	DefaultKeepaliveTimeout = 20 * time.Second
	// DefaultMaxConnectionIdle closes a client connection that has had no RPC for this long.
	DefaultMaxConnectionIdle = 5 * time.Minute
)

// Dialer opens a client connection to another node's gRPC address, used to forward requests to
// the leader. It is the seam for TLS (SecureDialer): the default dials without transport
// security. The returned
// connection is pooled by address and closed by the Service.
type Dialer func(ctx context.Context, addr string) (*grpc.ClientConn, error)

// Config holds the service's limits and forwarding settings. The zero value of a field means its
// default (see DefaultConfig); NewService fills them in.
type Config struct {
	// MaxEventBytes bounds one event: len(data) + len(metadata) + len(type) + len(content_type)
	// + the lengths of its tags. Larger events fail with RESOURCE_EXHAUSTED (limit
	// "event_bytes"). Default 1 MiB. The FSM's record limit (fsm.Config.Segment.MaxRecordBytes)
	// must stay comfortably above it, or the FSM would reject what the api accepted.
	MaxEventBytes int
	// MaxRequestBytes bounds proto.Size of one request; larger requests fail with
	// RESOURCE_EXHAUSTED (limit "request_bytes"). Default 4 MiB. ServerOptions sets gRPC's own
	// receive limit above it so this check, with its typed detail, is the one that fires.
	MaxRequestBytes int
	// MaxEventsPerAppend bounds the events of one Append, or of all parts of one AppendMulti
	// (limit "events_per_append"). Default 10,000.
	MaxEventsPerAppend int
	// MaxStreamNameBytes bounds a stream name; longer names are INVALID_ARGUMENT. Default 255.
	MaxStreamNameBytes int
	// DefaultReadLimit is the number of events a read with limit 0 returns. Default 100.
	DefaultReadLimit int
	// MaxReadLimit caps a read's limit: larger limits are clamped to it, not refused (the
	// response's end_of_stream / end_of_log then tells the client whether to read on).
	// Default 10,000.
	MaxReadLimit int
	// MaxResponseBytes bounds the encoded events of one read response. A read stops early
	// (end_of_stream / end_of_log false) rather than exceed it, but always returns at least one
	// event when one is available. Default 4 MiB - 64 KiB, under gRPC clients' default receive
	// limit.
	MaxResponseBytes int
	// MaxScanRecords bounds how many records of $all one ReadAll examines. A filtered read that
	// has not filled its limit by then returns what it has with checkpoint_position set, so a
	// sparse filter cannot make one call scan the whole log. Default 10 × DefaultMaxReadLimit.
	MaxScanRecords int
	// MaxFilterEntries bounds each repeated field of a ReadAll filter (limit "filter_entries").
	// Default 256.
	MaxFilterEntries int
	// ForwardTimeout bounds a request forwarded to the leader, on top of the caller's own
	// deadline. Default 10s.
	ForwardTimeout time.Duration
	// Dialer opens connections to the leader for forwarding. Nil means DefaultDialer(cfg)
	// (plaintext); SecureDialer adds TLS.
	Dialer Dialer
	// MaxConcurrentStreams bounds the concurrent RPCs (HTTP/2 streams) of one connection; gRPC
	// makes a client past it wait. Default 1024.
	MaxConcurrentStreams int
	// MaxSubscriptionsPerConn bounds the running subscriptions of one client connection; the next
	// one fails with RESOURCE_EXHAUSTED (limit "subscriptions_per_connection"). Default 256.
	MaxSubscriptionsPerConn int
	// MaxHeaderListBytes bounds the gRPC metadata of one request (grpc.MaxHeaderListSize);
	// gRPC refuses larger headers before the service runs. Default 64 KiB.
	MaxHeaderListBytes int
	// KeepaliveMinTime is the keepalive enforcement policy: a client that pings more often is
	// disconnected (GOAWAY "too_many_pings"). Pings without active RPCs are allowed. Default 10s.
	KeepaliveMinTime time.Duration
	// KeepaliveTime and KeepaliveTimeout: the server pings a connection silent for
	// KeepaliveTime and closes it when the answer takes longer than KeepaliveTimeout, so dead
	// peers do not hold connections. Defaults 1m and 20s.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// MaxConnectionIdle closes (GOAWAY) a connection without RPCs for this long, so idle
	// connections cannot pile up; gRPC clients reconnect transparently. Default 5m.
	MaxConnectionIdle time.Duration
	// MaxConnectionAge, when positive, closes every connection after this long (gRPC adds
	// jitter), with MaxConnectionAgeGrace for running RPCs to finish; subscriptions cut then
	// resume on a new connection. 0, the default, means no age limit (and no grace limit).
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// Auth configures authentication and authorisation (auth.go); off by default.
	Auth AuthConfig
	// Subscribe tunes subscriptions (checkpoint and heartbeat intervals, fell-behind threshold);
	// zero fields take their defaults (see SubscribeConfig).
	Subscribe SubscribeConfig
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		MaxEventBytes:      DefaultMaxEventBytes,
		MaxRequestBytes:    DefaultMaxRequestBytes,
		MaxEventsPerAppend: DefaultMaxEventsPerAppend,
		MaxStreamNameBytes: DefaultMaxStreamNameBytes,
		DefaultReadLimit:   DefaultDefaultReadLimit,
		MaxReadLimit:       DefaultMaxReadLimit,
		MaxResponseBytes:   DefaultMaxResponseBytes,
		MaxScanRecords:     DefaultMaxScanRecords,
		MaxFilterEntries:   DefaultMaxFilterEntries,
		ForwardTimeout:     DefaultForwardTimeout,

		MaxConcurrentStreams:    DefaultMaxConcurrentStreams,
		MaxSubscriptionsPerConn: DefaultMaxSubscriptionsPerConn,
		MaxHeaderListBytes:      DefaultMaxHeaderListBytes,
		KeepaliveMinTime:        DefaultKeepaliveMinTime,
		KeepaliveTime:           DefaultKeepaliveTime,
		KeepaliveTimeout:        DefaultKeepaliveTimeout,
		MaxConnectionIdle:       DefaultMaxConnectionIdle,
	}
}

// withDefaults fills zero (or negative) fields with their defaults, including the Dialer.
func (c Config) withDefaults() Config {
	c = c.withLimits()
	if c.Dialer == nil {
		c.Dialer = DefaultDialer(c)
	}
	return c
}

// withLimits fills zero (or negative) limits and timeouts with their defaults.
func (c Config) withLimits() Config {
	d := DefaultConfig()
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&c.MaxEventBytes, d.MaxEventBytes)
	setInt(&c.MaxRequestBytes, d.MaxRequestBytes)
	setInt(&c.MaxEventsPerAppend, d.MaxEventsPerAppend)
	setInt(&c.MaxStreamNameBytes, d.MaxStreamNameBytes)
	setInt(&c.DefaultReadLimit, d.DefaultReadLimit)
	setInt(&c.MaxReadLimit, d.MaxReadLimit)
	setInt(&c.MaxResponseBytes, d.MaxResponseBytes)
	setInt(&c.MaxScanRecords, d.MaxScanRecords)
	setInt(&c.MaxFilterEntries, d.MaxFilterEntries)
	setInt(&c.MaxConcurrentStreams, d.MaxConcurrentStreams)
	setInt(&c.MaxSubscriptionsPerConn, d.MaxSubscriptionsPerConn)
	setInt(&c.MaxHeaderListBytes, d.MaxHeaderListBytes)
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur(&c.KeepaliveMinTime, d.KeepaliveMinTime)
	setDur(&c.KeepaliveTime, d.KeepaliveTime)
	setDur(&c.KeepaliveTimeout, d.KeepaliveTimeout)
	setDur(&c.MaxConnectionIdle, d.MaxConnectionIdle)
	if c.DefaultReadLimit > c.MaxReadLimit {
		c.DefaultReadLimit = c.MaxReadLimit
	}
	if c.ForwardTimeout <= 0 {
		c.ForwardTimeout = d.ForwardTimeout
	}
	return c
}

// messageLimit is the gRPC message size limit used on both sides: twice the larger of the
// request and response bounds plus 1 MiB, so that the service's own checks, with their typed
// details, fire long before gRPC's untyped ones.
func (c Config) messageLimit() int {
	c = c.withLimits()
	return 2*max(c.MaxRequestBytes, c.MaxResponseBytes) + 1<<20
}

// ServerOptions returns the grpc.ServerOptions the service needs: the connection limits of cfg
// (concurrent streams, header size, keepalive enforcement, idle and age limits), a receive limit comfortably
// above cfg.MaxRequestBytes, so that an oversized request reaches the service and fails with
// RESOURCE_EXHAUSTED and a LimitExceeded detail instead of gRPC's untyped error, and the codec
// that lets the service decode its own requests (decode.go). Pass them to grpc.NewServer along
// with any of your own: cairnd adds grpc.Creds with mutual TLS
// (tlsutil.Loader.ServerConfig(tlsutil.ProtoGRPC, RoleNode, RoleClient)), which covers the client
// API, admin calls and calls forwarded from followers alike, as they share one server. RPCs run on a pool of StreamWorkers goroutines (see
// StreamWorkers).
func ServerOptions(cfg Config) []grpc.ServerOption {
	cfg = cfg.withLimits()
	n := cfg.messageLimit()
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(n), grpc.MaxSendMsgSize(n), grpc.ForceServerCodecV2(newServerCodec()),
		grpc.NumStreamWorkers(StreamWorkers),
		grpc.MaxConcurrentStreams(uint32(cfg.MaxConcurrentStreams)),
		grpc.MaxHeaderListSize(uint32(cfg.MaxHeaderListBytes)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: cfg.MaxConnectionIdle, MaxConnectionAge: cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace, Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout,
		}),
	}
}

// StreamWorkers is the number of goroutines that ServerOptions keeps to run RPCs. gRPC's default
// starts a goroutine per RPC, whose stack then grows by copying as the append path deepens:
// 10 % of a leader's CPU under 256 clients went to runtime.copystack. Pooled workers keep their
// grown stacks (gRPC resets a worker's stack every 65,536 RPCs). When every worker is busy —
// more than StreamWorkers calls in flight, or long-lived subscriptions holding workers — gRPC
// falls back to a goroutine per RPC, so nothing waits for a worker. Idle workers cost their
// stacks: a few MiB for 256. See docs/performance.md.
const StreamWorkers = 256

// DefaultDialer returns the Dialer used when Config.Dialer is nil: a lazily connecting
// grpc.ClientConn without transport security whose message limits match the server's.
func DefaultDialer(cfg Config) Dialer {
	return SourceDialer(cfg, nil)
}

// SourceDialer is DefaultDialer dialing from the local address src (nil: any). cairnd passes its
// gRPC bind IP, as raft dials from its raft bind IP, so a per-node fault-injection proxy on
// loopback can tell which node a forwarded call comes from.
func SourceDialer(cfg Config, src net.Addr) Dialer {
	return SecureDialer(cfg, src, nil)
}

// SecureDialer is SourceDialer with transport credentials creds (nil: plaintext, dev mode only).
// cairnd passes mutual-TLS credentials that accept only node certificates of its cluster
// (tlsutil.Loader.ClientConfig(tlsutil.ProtoGRPC, tlsutil.RoleNode)), so a follower forwards a
// request only to a real member, and the leader sees the follower's node certificate.
func SecureDialer(cfg Config, src net.Addr, creds credentials.TransportCredentials) Dialer {
	n := cfg.messageLimit()
	d := net.Dialer{LocalAddr: src}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	return func(_ context.Context, addr string) (*grpc.ClientConn, error) {
		return grpc.NewClient(addr,
			grpc.WithTransportCredentials(creds),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(n), grpc.MaxCallSendMsgSize(n)))
	}
}
