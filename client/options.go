package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cairndb/cairn/internal/tlsutil"
)

// Defaults of the client's options.
const (
	// DefaultMaxAttempts bounds the attempts of one call (the first try plus retries).
	DefaultMaxAttempts = 10
	// DefaultBackoffBase is the delay before the first retry; it doubles per retry, with jitter.
	DefaultBackoffBase = 50 * time.Millisecond
	// DefaultBackoffMax caps the delay between retries.
	DefaultBackoffMax = time.Second
	// DefaultTimeout bounds a call whose context has no deadline.
	DefaultTimeout = 30 * time.Second
	// maxMessageBytes is the gRPC message limit the client uses in both directions: above the
	// server's 4 MiB request bound, so that the server's typed LIMIT_EXCEEDED answer is what the
	// caller sees, and above its ~4 MiB response bound.
	maxMessageBytes = 16 << 20
)

// config is what Options set.
type config struct {
	dialOpts       []grpc.DialOption
	creds          credentials.TransportCredentials
	maxAttempts    int
	backoffBase    time.Duration
	backoffMax     time.Duration
	defaultTimeout time.Duration
	readYourWrites bool
	leaderRouting  bool
	staleAddr      string
}

func defaultConfig() config {
	return config{
		maxAttempts:    DefaultMaxAttempts,
		backoffBase:    DefaultBackoffBase,
		backoffMax:     DefaultBackoffMax,
		defaultTimeout: DefaultTimeout,
		readYourWrites: true,
		leaderRouting:  true,
	}
}

// Option configures a Client in New.
type Option func(*config)

// WithDialOptions adds gRPC dial options to every connection the client opens (interceptors,
// keepalive, a custom dialer). Options given later override earlier ones, as in grpc.NewClient.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOpts = append(c.dialOpts, opts...) }
}

// WithTransportCredentials sets the transport credentials (e.g. TLS) of every connection. The
// default is insecure (plaintext) credentials, for development clusters (cairnd --dev-insecure);
// WithTLS is the usual way to set TLS.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(c *config) { c.creds = creds }
}

// WithToken authenticates every call with a bearer token (`authorization: Bearer <token>`), as
// a cluster running with --auth requires. The token is sent on plaintext connections too (a dev
// cluster without TLS); use WithTransportCredentials with TLS wherever the network is not trusted.
func WithToken(token string) Option {
	return func(c *config) {
		c.dialOpts = append(c.dialOpts, grpc.WithPerRPCCredentials(bearerToken(token)))
	}
}

// bearerToken is a credentials.PerRPCCredentials sending a bearer token.
type bearerToken string

// GetRequestMetadata returns the authorization metadata.
func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity is false so that dev clusters without TLS work; see WithToken.
func (bearerToken) RequireTransportSecurity() bool { return false }

// WithTLS makes every connection mutual TLS with cfg, for clusters running with TLS (cairnd
// without --dev-insecure). LoadTLS builds a cfg from the files `cairnctl tls init` writes. It is
// WithTransportCredentials(credentials.NewTLS(cfg)); cfg must not be modified afterwards.
func WithTLS(cfg *tls.Config) Option {
	return WithTransportCredentials(credentials.NewTLS(cfg))
}

// LoadTLS reads a cluster CA, a client certificate and its key (PEM files) and returns the
// configuration of a Cairn client: TLS 1.3, presenting the certificate, and accepting a server
// only if its certificate chains to the CA and is a node certificate of the cluster named in the
// client's own certificate (cairn://<cluster>/client/<name>; host names are not checked, see
// internal/tlsutil). Use it with WithTLS.
func LoadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	l, err := tlsutil.Load(tlsutil.Files{CA: caFile, Cert: certFile, Key: keyFile}, "", nil)
	if err != nil {
		return nil, fmt.Errorf("cairn: load TLS files: %w", err)
	}
	return l.ClientConfig(tlsutil.ProtoGRPC, tlsutil.RoleNode), nil
}

// WithMaxAttempts bounds the attempts of each call, the first included (default
// DefaultMaxAttempts). n < 1 means 1: no retries.
func WithMaxAttempts(n int) Option {
	return func(c *config) { c.maxAttempts = max(n, 1) }
}

// WithBackoff sets the delay before the first retry and the cap of the exponentially growing
// delay (defaults DefaultBackoffBase and DefaultBackoffMax). Each delay is jittered between half
// and all of its nominal value. Non-positive values keep the defaults.
func WithBackoff(base, maxDelay time.Duration) Option {
	return func(c *config) {
		if base > 0 {
			c.backoffBase = base
		}
		if maxDelay > 0 {
			c.backoffMax = maxDelay
		}
	}
}

// WithDefaultTimeout bounds calls whose context has no deadline (default DefaultTimeout). Zero
// or a negative value leaves such calls unbounded, except by the number of attempts; note that
// a Stale read with a minimum log index then waits as long as the serving node needs.
func WithDefaultTimeout(d time.Duration) Option {
	return func(c *config) { c.defaultTimeout = d }
}

// WithReadYourWrites turns the read-your-writes token on (the default) or off. When on, Stale
// reads ask the serving node to wait until it has applied the highest log index the client has
// seen (from append results and from reads), so a client reading from followers sees its own
// writes and never sees time go backwards. Off, Stale reads see whatever the node has applied.
func WithReadYourWrites(enabled bool) Option {
	return func(c *config) { c.readYourWrites = enabled }
}

// WithLeaderRouting turns leader routing on (the default) or off. When on, writes and
// Linearizable/Leader reads go straight to the leader once the client knows its address (from
// NotLeader answers and Status); when off they go to the configured addresses in turn and the
// server forwards them. Turn it off when the addresses nodes advertise to each other are not
// reachable from the client (NAT, port mapping).
func WithLeaderRouting(enabled bool) Option {
	return func(c *config) { c.leaderRouting = enabled }
}

// WithStaleReadAddress sends Stale reads to addr (for instance the node in the client's own
// zone) instead of the configured addresses in turn; a retry after a failure there goes to the
// configured addresses. A CallOption ToAddress overrides it.
func WithStaleReadAddress(addr string) Option {
	return func(c *config) { c.staleAddr = addr }
}

// callConfig is what CallOptions set.
type callConfig struct {
	addr          string
	maxAttempts   int
	requireLeader bool
}

// CallOption configures one call.
type CallOption func(*callConfig)

// ToAddress sends every attempt of the call to addr, and to no other node: no leader routing, no
// redirection (an ErrNotLeader answer is returned, not followed). Use it to ask one node for its
// own view (Status, Health) or to read from one node.
func ToAddress(addr string) CallOption {
	return func(c *callConfig) { c.addr = addr }
}

// MaxAttempts bounds the call's attempts, the first included, overriding WithMaxAttempts.
// n < 1 means 1.
func MaxAttempts(n int) CallOption {
	return func(c *callConfig) { c.maxAttempts = max(n, 1) }
}

// RequireLeader makes an append fail with ErrNotLeader on a follower, naming the leader, instead
// of being forwarded by the follower. The client then retries at the named leader (unless the
// call is pinned with ToAddress). It has no effect on reads.
func RequireLeader() CallOption {
	return func(c *callConfig) { c.requireLeader = true }
}
