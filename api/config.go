package api

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
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
)

// Dialer opens a client connection to another node's gRPC address, used to forward requests to
// the leader. It is the seam for TLS: the default dials without transport security. The returned
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
	// (insecure credentials; TLS plugs in here).
	Dialer Dialer
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

// ServerOptions returns the grpc.ServerOptions the service needs: a receive limit comfortably
// above cfg.MaxRequestBytes, so that an oversized request reaches the service and fails with
// RESOURCE_EXHAUSTED and a LimitExceeded detail instead of gRPC's untyped error. Pass them to
// grpc.NewServer along with any of your own (TLS credentials, interceptors). RPCs run on a pool
// of StreamWorkers goroutines (see StreamWorkers).
func ServerOptions(cfg Config) []grpc.ServerOption {
	n := cfg.messageLimit()
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(n), grpc.MaxSendMsgSize(n), grpc.NumStreamWorkers(StreamWorkers)}
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
// grpc.ClientConn without transport security whose message limits match the server's. It is
// the place TLS will replace.
func DefaultDialer(cfg Config) Dialer {
	return SourceDialer(cfg, nil)
}

// SourceDialer is DefaultDialer dialing from the local address src (nil: any). cairnd passes its
// gRPC bind IP, as raft dials from its raft bind IP, so a per-node fault-injection proxy on
// loopback can tell which node a forwarded call comes from.
func SourceDialer(cfg Config, src net.Addr) Dialer {
	n := cfg.messageLimit()
	d := net.Dialer{LocalAddr: src}
	return func(_ context.Context, addr string) (*grpc.ClientConn, error) {
		return grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(n), grpc.MaxCallSendMsgSize(n)))
	}
}
