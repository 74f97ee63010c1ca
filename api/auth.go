package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/fsm"
)

// Authentication and authorisation (issue 9, DESIGN §10). When Config.Auth.Enabled, one gRPC
// interceptor pair (unary and stream, ServerOptions of the Service) authenticates every call with
// the Config.Auth.Authenticator, checks the identity's permission for the method and the streams
// it names, and puts the identity in the context, where $all reads and subscriptions use it to
// return only events the caller may read.

// Sentinel errors of authentication and authorisation, mapped to UNAUTHENTICATED and
// PERMISSION_DENIED in errors.go.
var (
	// ErrUnauthenticated: the call carries no credentials, or credentials that match no identity.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the caller's identity may not do this.
	ErrPermissionDenied = errors.New("permission denied")
)

// Identity is who a call comes from and what it may do.
type Identity struct {
	// Name labels the identity in logs (a token's name and id, "bootstrap", later a
	// certificate's subject). Never a secret.
	Name string
	// Role is fsm.RoleAdmin, fsm.RoleWriter or fsm.RoleReader.
	Role string
	// Prefixes limits the identity to streams whose names start with one of them; empty means
	// every stream. Admins are never limited.
	Prefixes []string
}

// IsAdmin reports whether the identity may do everything.
func (id Identity) IsAdmin() bool { return id.Role == fsm.RoleAdmin }

// CanRead reports whether the identity may read stream. System streams (`$…`) are for admins.
func (id Identity) CanRead(stream string) bool {
	if id.IsAdmin() {
		return true
	}
	if strings.HasPrefix(stream, "$") || (id.Role != fsm.RoleWriter && id.Role != fsm.RoleReader) {
		return false
	}
	return len(id.Prefixes) == 0 || hasAnyPrefix(stream, id.Prefixes)
}

// CanWrite reports whether the identity may append to stream.
func (id Identity) CanWrite(stream string) bool {
	return id.IsAdmin() || id.Role == fsm.RoleWriter && id.CanRead(stream)
}

// Authenticator finds the identity of a call from its context (gRPC metadata, peer
// certificates). It returns an error wrapping ErrUnauthenticated when it cannot. It is the seam
// for other kinds of credentials: a client-certificate authenticator implements it too.
type Authenticator interface {
	Authenticate(ctx context.Context) (Identity, error)
}

// TokenStore looks tokens up by their secret; *fsm.FSM implements it.
type TokenStore interface {
	TokenBySecret(secret []byte) (fsm.Token, bool)
}

// nodeTokens is the TokenStore of the node's current store, when the store has tokens.
type nodeTokens struct{ node Node }

// TokenBySecret implements TokenStore.
func (n nodeTokens) TokenBySecret(secret []byte) (fsm.Token, bool) {
	if ts, ok := n.node.Store().(TokenStore); ok {
		return ts.TokenBySecret(secret)
	}
	return fsm.Token{}, false
}

// BearerPrefix starts the value of the `authorization` metadata that carries a token.
const BearerPrefix = "Bearer "

// TokenAuthenticator authenticates bearer tokens (`authorization: Bearer <token>`) against the
// replicated token table, plus an optional bootstrap admin token from the node's configuration.
type TokenAuthenticator struct {
	// Store is the token table (the node's state machine).
	Store TokenStore
	// Bootstrap, when not empty, is a token that authenticates as admin "bootstrap" without being
	// in the table, so the first admin can create tokens. Every node should have the same.
	Bootstrap string
}

// Authenticate implements Authenticator.
func (a TokenAuthenticator) Authenticate(ctx context.Context) (Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return Identity{}, fmt.Errorf("%w: no bearer token (metadata \"authorization: Bearer <token>\")", ErrUnauthenticated)
	}
	if len(vals) > 1 {
		return Identity{}, fmt.Errorf("%w: more than one authorization value", ErrUnauthenticated)
	}
	tok, ok := strings.CutPrefix(vals[0], BearerPrefix)
	if !ok || tok == "" {
		return Identity{}, fmt.Errorf("%w: authorization is not a bearer token", ErrUnauthenticated)
	}
	if a.Bootstrap != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.Bootstrap)) == 1 {
		return Identity{Name: "bootstrap", Role: fsm.RoleAdmin}, nil
	}
	if a.Store != nil {
		if t, ok := a.Store.TokenBySecret([]byte(tok)); ok {
			return Identity{Name: fmt.Sprintf("token %s (%s)", formatUUID(t.ID), t.Name), Role: t.Role, Prefixes: t.Prefixes}, nil
		}
	}
	return Identity{}, fmt.Errorf("%w: unknown or revoked token", ErrUnauthenticated)
}

// AuthConfig configures authentication and authorisation.
type AuthConfig struct {
	// Enabled turns checks on. Off (the default, dev mode) every call is allowed.
	Enabled bool
	// Authenticator finds callers' identities. Nil with Enabled means a TokenOrCertAuthenticator:
	// bearer tokens against the node's store (which must implement TokenStore) and
	// BootstrapToken, else the peer's TLS certificate (auth_cert.go).
	Authenticator Authenticator
	// BootstrapToken is the bootstrap admin token of the default authenticator.
	BootstrapToken string
}

type identityKey struct{}

// IdentityFrom returns the identity the auth interceptor put in ctx; ok is false when auth is
// off (every call may do everything).
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// readable returns a predicate for records the caller of ctx may read, nil when it may read all.
func readable(ctx context.Context) func(stream string) bool {
	id, ok := IdentityFrom(ctx)
	if !ok || id.IsAdmin() {
		return nil
	}
	return id.CanRead
}

// restrictToReadable narrows match (nil: everything) to the records the caller of ctx may read:
// $all reads and subscriptions are filtered, not refused.
func restrictToReadable(ctx context.Context, match func(*fsm.RecordedEvent) bool) func(*fsm.RecordedEvent) bool {
	can := readable(ctx)
	switch {
	case can == nil:
		return match
	case match == nil:
		return func(r *fsm.RecordedEvent) bool { return can(r.Stream) }
	}
	return func(r *fsm.RecordedEvent) bool { return can(r.Stream) && match(r) }
}

// publicMethods need no identity: health checks must work for load balancers and probes.
func publicMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/")
}

// authorize checks that id may call fullMethod with req (nil for a stream before its first
// message).
func authorize(id Identity, fullMethod string, req any) error {
	if id.IsAdmin() {
		return nil
	}
	deny := func(what string) error {
		return fmt.Errorf("%w: %s (role %s) may not %s", ErrPermissionDenied, id.Name, id.Role, what)
	}
	write := func(stream string) error {
		if !id.CanWrite(stream) {
			return deny(fmt.Sprintf("append to stream %q", stream))
		}
		return nil
	}
	read := func(stream string) error {
		if !id.CanRead(stream) {
			return deny(fmt.Sprintf("read stream %q", stream))
		}
		return nil
	}
	switch r := req.(type) {
	case *cairnpb.AppendRequest:
		return write(r.GetStream())
	case *cairnpb.AppendMultiRequest:
		for _, p := range r.GetAppends() {
			if err := write(p.GetStream()); err != nil {
				return err
			}
		}
		return nil
	case *cairnpb.ReadRequest:
		return read(r.GetStream())
	case *cairnpb.GetStreamInfoRequest:
		return read(r.GetStream())
	case *cairnpb.GetStreamMetadataRequest:
		return read(r.GetStream())
	case *cairnpb.SetStreamMetadataRequest:
		// Limits and soft delete hide history but keep revisions going, like an append they
		// change what readers of the stream see: writers of the stream may do them. A tombstone
		// ends the stream for good and stays admin-only.
		return write(r.GetStream())
	case *cairnpb.DeleteStreamRequest:
		return write(r.GetStream())
	case *cairnpb.ReadAllRequest:
		return nil // filtered to what the caller may read
	case *cairnpb.SubscribeRequest:
		if r.GetStream() == "" || r.GetStream() == "$all" {
			return nil // filtered
		}
		return read(r.GetStream())
	case *cairnpb.StatusRequest:
		return nil // every identity may see the cluster's state
	}
	return deny("call " + fullMethod)
}

// deny counts and logs a refused call, without secrets, and returns its status. Every denial is
// counted (Stats, by reason); logging is limited to denialLogBurst lines per second, with the
// number left out reported on the next line, so a flood of bad tokens cannot flood the log.
func (s *Service) deny(ctx context.Context, fullMethod string, id Identity, err error) error {
	if ok, suppressed := s.denyLog.allow(time.Now()); ok {
		s.log.Warn("call refused", "method", fullMethod, "identity", id.Name, "role", id.Role, "error", err,
			"refusals_not_logged", suppressed)
	}
	return s.fail(ctx, "auth", err)
}

// denialLogBurst is how many refusals are logged per second at most.
const denialLogBurst = 20

// logLimiter allows denialLogBurst log lines per one-second window and counts the rest.
type logLimiter struct {
	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed uint64
}

// allow reports whether a line may be logged now, and how many were suppressed since the last
// one that was.
func (l *logLimiter) allow(now time.Time) (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	if l.n >= denialLogBurst {
		l.suppressed++
		return false, 0
	}
	l.n++
	sup := l.suppressed
	l.suppressed = 0
	return true, sup
}

// authUnary is the unary half of the auth interceptor.
func (s *Service) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !s.cfg.Auth.Enabled || publicMethod(info.FullMethod) {
		return handler(ctx, req)
	}
	id, err := s.auth.Authenticate(ctx)
	if err != nil {
		return nil, s.deny(ctx, info.FullMethod, id, err)
	}
	if err := authorize(id, info.FullMethod, req); err != nil {
		return nil, s.deny(ctx, info.FullMethod, id, err)
	}
	return handler(context.WithValue(ctx, identityKey{}, id), req)
}

// authStream is the stream half of the auth interceptor: it authenticates when the stream
// opens; decodingStream authorises each request the handler receives.
func (s *Service) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !s.cfg.Auth.Enabled || publicMethod(info.FullMethod) {
		return handler(srv, ss)
	}
	ctx := ss.Context()
	id, err := s.auth.Authenticate(ctx)
	if err != nil {
		return s.deny(ctx, info.FullMethod, id, err)
	}
	return handler(srv, &authedStream{ServerStream: ss, ctx: context.WithValue(ctx, identityKey{}, id)})
}

// authedStream carries the identity in its context. The requests the handler receives are
// authorised by decodingStream, after they are decoded.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the stream's context with the caller's identity.
func (a *authedStream) Context() context.Context { return a.ctx }

// errNoAuthInterceptor is the fail-closed answer when auth is enabled but a call reached a
// handler without passing the auth interceptor (a server not built with Service.ServerOptions).
var errNoAuthInterceptor = fmt.Errorf("%w: the server was built without the auth interceptor (Service.ServerOptions)", ErrUnauthenticated)

// guardUnary wraps the interceptor ic that generated handlers receive (nil: none) so that, with
// auth enabled, a call that did not pass authUnary is refused instead of served unchecked.
func (s *Service) guardUnary(ic grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	if !s.cfg.Auth.Enabled {
		return ic
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		guarded := func(ctx context.Context, req any) (any, error) {
			if _, ok := IdentityFrom(ctx); !ok {
				s.log.Error("call refused: auth enabled but the auth interceptor did not run", "method", info.FullMethod)
				return nil, s.fail(ctx, "auth", errNoAuthInterceptor)
			}
			return handler(ctx, req)
		}
		if ic == nil {
			return guarded(ctx, req)
		}
		return ic(ctx, req, info, guarded)
	}
}

// authorizeStreamMsg authorises a request received on a stream whose context is ctx (fail
// closed, as guardUnary, when auth is enabled and the interceptor did not run).
func (s *Service) authorizeStreamMsg(ctx context.Context, method string, m any) error {
	if !s.cfg.Auth.Enabled {
		return nil
	}
	id, ok := IdentityFrom(ctx)
	if !ok {
		s.log.Error("call refused: auth enabled but the auth interceptor did not run", "method", method)
		return s.fail(ctx, "auth", errNoAuthInterceptor)
	}
	if err := authorize(id, method, m); err != nil {
		return s.deny(ctx, method, id, err)
	}
	return nil
}

// ServerOptions returns the grpc.ServerOptions for this service: the package's ServerOptions of
// its configuration plus the auth interceptors (which allow everything while auth is off). Build
// the grpc.Server that Register is given with them.
func (s *Service) ServerOptions() []grpc.ServerOption {
	return append(ServerOptions(s.cfg), grpc.ChainUnaryInterceptor(s.authUnary), grpc.ChainStreamInterceptor(s.authStream))
}
