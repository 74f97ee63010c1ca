package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names of a material folder written by WriteDev (`cairnctl tls init`).
const (
	// CACertFile and CAKeyFile are the development CA.
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
	// GossipKeyFile is the memberlist keyring file (see LoadGossipKeys).
	GossipKeyFile = "gossip.key"
)

// NodeFiles returns the files of node id in dir (node-<id>.crt / .key) with the CA.
func NodeFiles(dir, id string) Files {
	return Files{CA: filepath.Join(dir, CACertFile), Cert: filepath.Join(dir, "node-"+id+".crt"),
		Key: filepath.Join(dir, "node-"+id+".key")}
}

// ClientFiles returns the files of client name in dir (client-<name>.crt / .key) with the CA.
func ClientFiles(dir, name string) Files {
	return Files{CA: filepath.Join(dir, CACertFile), Cert: filepath.Join(dir, "client-"+name+".crt"),
		Key: filepath.Join(dir, "client-"+name+".key")}
}

// CA is a certificate authority able to issue node and client certificates.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// NewCA creates a self-signed ECDSA P-256 CA for cluster, valid for validity.
func NewCA(cluster string, validity time.Duration) (*CA, error) {
	if err := ValidClusterName(cluster); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "cairn dev CA " + cluster, Organization: []string{"cairn"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: parse CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// LoadCA reads a CA written by WriteCA.
func LoadCA(certPath, keyPath string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: load CA: %w", err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("tlsutil: CA key %s is not an ECDSA key", keyPath)
	}
	if !pair.Leaf.IsCA {
		return nil, fmt.Errorf("tlsutil: %s is not a CA certificate", certPath)
	}
	return &CA{cert: pair.Leaf, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Leaf.Raw})}, nil
}

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte { return ca.pem }

// Issue creates an ECDSA P-256 key and a certificate for id, valid for validity, with hosts
// (IP addresses and DNS names) as SANs besides the identity URI. Node certificates may serve
// and dial (server and client auth); client certificates only dial. It returns both in PEM.
func (ca *CA) Issue(id Identity, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if err := ValidClusterName(id.Cluster); err != nil {
		return nil, nil, err
	}
	if id.Name == "" || (id.Role != RoleNode && id.Role != RoleClient) {
		return nil, nil, fmt.Errorf("tlsutil: identity %+v needs a name and the role node or client", id)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: generate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id.Name, Organization: []string{"cairn"}, OrganizationalUnit: []string{id.Cluster}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URI()},
	}
	if id.Role == RoleNode {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.DNSNames = append(tmpl.DNSNames, id.Name)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && h != id.Name {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: create certificate for %s: %w", id, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// WriteFiles writes a certificate and its key to f.Cert and f.Key (key 0600, certificate 0644),
// each through a temporary file renamed into place, so a watcher never reads half a file.
func WriteFiles(f Files, certPEM, keyPEM []byte) error {
	if err := writeAtomic(f.Key, keyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(f.Cert, certPEM, 0o644)
}

func writeAtomic(path string, b []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("tlsutil: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("tlsutil: write %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("tlsutil: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tlsutil: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("tlsutil: write %s: %w", path, err)
	}
	return nil
}

// DevOptions says what WriteDev creates.
type DevOptions struct {
	// Dir receives the files; created (0700) if missing.
	Dir string
	// Cluster is the cluster name written into every certificate.
	Cluster string
	// Nodes are the node ids to issue node certificates for.
	Nodes []string
	// Hosts are extra SANs (IPs or DNS names) of every node certificate; each node's id is
	// always a DNS SAN.
	Hosts []string
	// Clients are the clients to issue client certificates for, each a ClientSpec:
	// name[=role[:prefix[;prefix]...]]. The client named "admin" gets the API role admin unless
	// its spec names another.
	Clients []string
	// Validity of the CA and certificates (default one year).
	Validity time.Duration
}

// WriteDev creates development material in o.Dir: a CA (ca.crt, ca.key) unless one is there
// already, then node-<id>.crt/.key for each node and client-<name>.crt/.key for each client
// (replacing existing ones), and gossip.key unless present. Keys are written 0600. Re-running it
// with more nodes issues them from the same CA, so a cluster can grow.
func WriteDev(o DevOptions) error {
	if err := ValidClusterName(o.Cluster); err != nil {
		return err
	}
	if len(o.Nodes) == 0 && len(o.Clients) == 0 {
		return errors.New("tlsutil: no nodes and no clients to issue certificates for")
	}
	if o.Validity <= 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("tlsutil: create %s: %w", o.Dir, err)
	}
	caFiles := Files{Cert: filepath.Join(o.Dir, CACertFile), Key: filepath.Join(o.Dir, CAKeyFile)}
	ca, err := LoadCA(caFiles.Cert, caFiles.Key)
	if errors.Is(err, fs.ErrNotExist) {
		if ca, err = NewCA(o.Cluster, o.Validity); err != nil {
			return err
		}
		kder, err := x509.MarshalECPrivateKey(ca.key)
		if err != nil {
			return fmt.Errorf("tlsutil: encode CA key: %w", err)
		}
		if err := WriteFiles(caFiles, ca.pem, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	issue := func(f Files, id Identity, hosts []string) error {
		c, k, err := ca.Issue(id, hosts, o.Validity)
		if err != nil {
			return err
		}
		return WriteFiles(f, c, k)
	}
	for _, n := range o.Nodes {
		if err := issue(NodeFiles(o.Dir, n), Identity{Cluster: o.Cluster, Role: RoleNode, Name: n}, o.Hosts); err != nil {
			return err
		}
	}
	for _, spec := range o.Clients {
		id, err := ParseClientSpec(spec)
		if err != nil {
			return err
		}
		id.Cluster = o.Cluster
		if err := issue(ClientFiles(o.Dir, id.Name), id, nil); err != nil {
			return err
		}
	}
	gk := filepath.Join(o.Dir, GossipKeyFile)
	if _, err := os.Stat(gk); errors.Is(err, fs.ErrNotExist) {
		return WriteGossipKeyFile(gk)
	} else if err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("tlsutil: crypto/rand failed: %v", err)) // crypto/rand does not fail on supported platforms
	}
	return n
}

// ParseClientSpec parses a client certificate spec, name[=role[:prefix[;prefix]...]]:
// "app=writer:orders-;users-" is client "app" with API role writer on streams starting with
// "orders-" or "users-". The role must be admin, writer or reader; "admin" alone means role
// admin; any other bare name has no API role (its holder needs a token when auth is on).
func ParseClientSpec(spec string) (Identity, error) {
	name, grant, hasGrant := strings.Cut(spec, "=")
	id := Identity{Role: RoleClient, Name: name}
	if name == "" || strings.ContainsAny(name, "/\\ ?#") {
		return Identity{}, fmt.Errorf("tlsutil: client spec %q: bad name", spec)
	}
	if !hasGrant {
		if name == "admin" {
			id.APIRole = "admin"
		}
		return id, nil
	}
	role, prefixes, _ := strings.Cut(grant, ":")
	switch role {
	case "admin", "writer", "reader":
	default:
		return Identity{}, fmt.Errorf("tlsutil: client spec %q: role must be admin, writer or reader", spec)
	}
	id.APIRole = role
	if prefixes != "" {
		for _, p := range strings.Split(prefixes, ";") {
			if p == "" {
				return Identity{}, fmt.Errorf("tlsutil: client spec %q: empty prefix", spec)
			}
			id.Prefixes = append(id.Prefixes, p)
		}
	}
	return id, nil
}
