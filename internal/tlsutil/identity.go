// Package tlsutil builds the mutual-TLS configurations of every Cairn channel (client gRPC,
// forwarding, admin calls, raft) from a cluster CA, a certificate and its key, reloads them
// without a restart, and creates development material (`cairnctl tls init`). It also reads the
// gossip key file that encrypts memberlist traffic.
//
// A peer is accepted when its certificate chains to the cluster CA and carries the cluster's
// identity: a URI SAN cairn://<cluster-name>/<role>/<name>, where role is "node" or "client".
// Host names are not checked: nodes reach each other under addresses that change (container IPs,
// service names), and what matters is that the peer was issued for this cluster by its CA.
package tlsutil

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Role is what a certificate holder may do: a node takes part in raft, gossip and forwarding;
// a client only calls the gRPC API.
type Role string

// Roles.
const (
	// RoleNode is a cluster node (cairnd).
	RoleNode Role = "node"
	// RoleClient is an API client (cairnctl, applications).
	RoleClient Role = "client"
)

// URIScheme is the scheme of the identity URI SAN.
const URIScheme = "cairn"

// Sentinel errors of peer verification and identity parsing.
var (
	// ErrNoIdentity: the certificate carries no cairn:// URI SAN (or a malformed one).
	ErrNoIdentity = errors.New("tlsutil: certificate carries no cairn:// identity")
	// ErrWrongCluster: the certificate belongs to another cluster.
	ErrWrongCluster = errors.New("tlsutil: certificate belongs to another cluster")
	// ErrWrongRole: the certificate's role may not use this channel (a client on raft).
	ErrWrongRole = errors.New("tlsutil: certificate role not accepted on this channel")
	// ErrNoPeerCertificate: the peer presented no certificate.
	ErrNoPeerCertificate = errors.New("tlsutil: peer presented no certificate")
)

// Identity is who a certificate says its holder is.
type Identity struct {
	// Cluster is the cluster name.
	Cluster string
	// Role is node or client.
	Role Role
	// Name is the node id or the client's name.
	Name string
	// APIRole, on a client certificate, is the API role the certificate grants when the cluster
	// runs with authentication (admin, writer or reader; see api/DESIGN.md): the certificate
	// authenticates its holder like a token. Empty means none: the holder needs a token.
	APIRole string
	// Prefixes limits APIRole to streams whose names start with one of them; empty means every
	// stream.
	Prefixes []string
}

// URI returns the identity as the URI SAN written into certificates:
// cairn://<cluster>/<role>/<name>.
// A client certificate's API role and prefixes ride in the query:
// cairn://<cluster>/client/<name>?role=writer&prefix=orders-&prefix=users-.
func (id Identity) URI() *url.URL {
	u := &url.URL{Scheme: URIScheme, Host: id.Cluster, Path: "/" + string(id.Role) + "/" + id.Name}
	if id.APIRole != "" {
		q := url.Values{"role": {id.APIRole}}
		if len(id.Prefixes) > 0 {
			q["prefix"] = id.Prefixes
		}
		u.RawQuery = q.Encode()
	}
	return u
}

// String returns the URI form.
func (id Identity) String() string { return id.URI().String() }

// ValidClusterName reports whether name can be a cluster name: 1-63 characters of lower-case
// letters, digits and '-', so that it is a valid URI host.
func ValidClusterName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("tlsutil: cluster name %q must be 1-63 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("tlsutil: cluster name %q may use only a-z, 0-9 and '-'", name)
		}
	}
	return nil
}

// ParseIdentity returns the cairn:// identity of cert; ErrNoIdentity when it has none.
func ParseIdentity(cert *x509.Certificate) (Identity, error) {
	for _, u := range cert.URIs {
		if u.Scheme != URIScheme {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		if u.Host == "" || len(parts) != 2 || parts[1] == "" {
			return Identity{}, fmt.Errorf("%w: malformed %q", ErrNoIdentity, u.String())
		}
		role := Role(parts[0])
		if role != RoleNode && role != RoleClient {
			return Identity{}, fmt.Errorf("%w: unknown role in %q", ErrNoIdentity, u.String())
		}
		q := u.Query()
		if len(q["role"]) > 1 || (len(q["prefix"]) > 0 && q.Get("role") == "") {
			return Identity{}, fmt.Errorf("%w: malformed API role in %q", ErrNoIdentity, u.String())
		}
		return Identity{Cluster: u.Host, Role: role, Name: parts[1], APIRole: q.Get("role"), Prefixes: q["prefix"]}, nil
	}
	return Identity{}, ErrNoIdentity
}
