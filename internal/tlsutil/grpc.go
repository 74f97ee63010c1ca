package tlsutil

import (
	"context"
	"net"

	"google.golang.org/grpc/credentials"
)

// GRPCServerCredentials returns the transport credentials of a gRPC server: ServerConfig with
// ProtoGRPC and accept's roles, plus accounting: every failed server handshake (plaintext, no
// client certificate, another CA, a peer that hangs up) is counted in HandshakeFailures and
// logged at most once a second. gRPC itself only reports these to its own logger.
func (l *Loader) GRPCServerCredentials(accept ...Role) credentials.TransportCredentials {
	return &countingCreds{TransportCredentials: credentials.NewTLS(l.ServerConfig(ProtoGRPC, accept...)), l: l}
}

// GRPCClientCredentials returns the transport credentials of a gRPC client of the cluster's
// nodes: ClientConfig with ProtoGRPC, accepting only node certificates.
func (l *Loader) GRPCClientCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(l.ClientConfig(ProtoGRPC, RoleNode))
}

// HandshakeFailures returns how many gRPC server handshakes failed (GRPCServerCredentials).
func (l *Loader) HandshakeFailures() uint64 { return l.handshakeFailures.Load() }

type countingCreds struct {
	credentials.TransportCredentials
	l *Loader
}

// ServerHandshake counts and logs a failed handshake.
func (c *countingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.l.handshakeFailures.Add(1)
		if ok, held := c.l.handshakeLog.Allow(); ok {
			c.l.log.Warn("gRPC connection refused: TLS handshake failed", "remote", conn.RemoteAddr().String(),
				"error", err, "similar_since_last_logged", held)
		}
	}
	return out, info, err
}

// Clone keeps the accounting.
func (c *countingCreds) Clone() credentials.TransportCredentials {
	return &countingCreds{TransportCredentials: c.TransportCredentials.Clone(), l: c.l}
}

// ClientHandshake is the wrapped credentials' (servers never call it).
func (c *countingCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.TransportCredentials.ClientHandshake(ctx, authority, conn)
}
