package api

import (
	"context"
	"fmt"
	"net/url"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// Client-certificate authentication (issue 9: "clients authenticate by client certificate or
// bearer token"). The TLS handshake has already checked that the peer's certificate chains to
// the cluster CA and carries this cluster's cairn:// identity (internal/tlsutil); what is left
// here is to turn that identity into an API identity:
//
//   - a client certificate whose identity URI carries an API role
//     (cairn://<cluster>/client/<name>?role=writer&prefix=orders-) authenticates as that role,
//     like a token; one without a role authenticates nobody (its holder needs a token);
//   - a node certificate is a member of the cluster, which can already propose any raft command:
//     it is an admin ("node <id>"), unless it carries the identity of the caller whose request
//     it forwards (ForwardedIdentityMetadataKey), which only a node is believed about.
//
// A bearer token, when the call carries one, wins over the certificate: a node forwarding a
// token holder's call, or an operator's cairnctl presenting the admin certificate with a reader
// token to try out what that reader sees, act as the token says.

// ForwardedIdentityMetadataKey carries, on a call a follower forwards to the leader, the identity
// the follower authenticated from its caller's client certificate (a token is forwarded as
// itself). The leader honours it only from a peer presenting a node certificate of the cluster.
const ForwardedIdentityMetadataKey = "cairn-forwarded-identity"

// CertAuthenticator authenticates calls by the peer's TLS certificate (see above).
type CertAuthenticator struct{}

// Authenticate implements Authenticator.
func (CertAuthenticator) Authenticate(ctx context.Context) (Identity, error) {
	id, err := peerIdentity(ctx)
	if err != nil {
		return Identity{}, err
	}
	switch id.Role {
	case tlsutil.RoleNode:
		md, _ := metadata.FromIncomingContext(ctx)
		if fwd := md.Get(ForwardedIdentityMetadataKey); len(fwd) > 0 {
			if len(fwd) > 1 {
				return Identity{}, fmt.Errorf("%w: more than one forwarded identity from node %s", ErrUnauthenticated, id.Name)
			}
			return decodeForwardedIdentity(fwd[0])
		}
		return Identity{Name: "node " + id.Name, Role: fsm.RoleAdmin}, nil
	case tlsutil.RoleClient:
		if id.APIRole == "" {
			return Identity{}, fmt.Errorf("%w: client certificate %q grants no API role (use a token)", ErrUnauthenticated, id.Name)
		}
		return Identity{Name: "certificate " + id.Name, Role: id.APIRole, Prefixes: id.Prefixes}, nil
	}
	return Identity{}, fmt.Errorf("%w: certificate role %q", ErrUnauthenticated, id.Role)
}

// peerIdentity returns the cairn:// identity of the call's TLS peer certificate.
func peerIdentity(ctx context.Context) (tlsutil.Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return tlsutil.Identity{}, fmt.Errorf("%w: no credentials (no token and no TLS client certificate)", ErrUnauthenticated)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return tlsutil.Identity{}, fmt.Errorf("%w: no credentials (no token and no TLS client certificate)", ErrUnauthenticated)
	}
	id, err := tlsutil.ParseIdentity(info.State.PeerCertificates[0])
	if err != nil {
		return tlsutil.Identity{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return id, nil
}

// encodeForwardedIdentity is the value of ForwardedIdentityMetadataKey for id.
func encodeForwardedIdentity(id Identity) string {
	q := url.Values{"name": {id.Name}, "role": {id.Role}}
	if len(id.Prefixes) > 0 {
		q["prefix"] = id.Prefixes
	}
	return q.Encode()
}

// decodeForwardedIdentity parses a ForwardedIdentityMetadataKey value.
func decodeForwardedIdentity(v string) (Identity, error) {
	q, err := url.ParseQuery(v)
	if err != nil || q.Get("role") == "" || q.Get("name") == "" {
		return Identity{}, fmt.Errorf("%w: malformed forwarded identity", ErrUnauthenticated)
	}
	switch r := q.Get("role"); r {
	case fsm.RoleAdmin, fsm.RoleWriter, fsm.RoleReader:
	default:
		return Identity{}, fmt.Errorf("%w: forwarded identity has unknown role %q", ErrUnauthenticated, r)
	}
	return Identity{Name: q.Get("name"), Role: q.Get("role"), Prefixes: q["prefix"]}, nil
}

// TokenOrCertAuthenticator authenticates by bearer token when the call carries an
// `authorization` value, and by the peer's certificate otherwise. It is the default
// Authenticator when authentication is enabled.
type TokenOrCertAuthenticator struct {
	// Token authenticates calls that carry `authorization` metadata.
	Token TokenAuthenticator
	// Cert authenticates every other call by its peer certificate.
	Cert CertAuthenticator
}

// Authenticate implements Authenticator.
func (a TokenOrCertAuthenticator) Authenticate(ctx context.Context) (Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get("authorization")) > 0 {
		return a.Token.Authenticate(ctx)
	}
	return a.Cert.Authenticate(ctx)
}
