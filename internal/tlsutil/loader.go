package tlsutil

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ALPN protocol names. Each channel negotiates its own, so a connection meant for one listener
// cannot be replayed against another (a raft stream at the gRPC port fails the handshake).
const (
	// ProtoGRPC is gRPC's HTTP/2 ("h2"), for the client API, forwarding and admin calls.
	ProtoGRPC = "h2"
	// ProtoRaft is the raft transport.
	ProtoRaft = "cairn-raft"
)

// Files names the PEM files of a node's or client's TLS material.
type Files struct {
	// CA is the cluster CA certificate(s); peers must chain to one of them.
	CA string
	// Cert is this holder's certificate (optionally followed by intermediates).
	Cert string
	// Key is the private key of Cert.
	Key string
}

// Complete reports whether all three files are named.
func (f Files) Complete() bool { return f.CA != "" && f.Cert != "" && f.Key != "" }

// Any reports whether at least one file is named.
func (f Files) Any() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// material is one loaded, validated set of files.
type material struct {
	cert  tls.Certificate
	id    Identity
	roots *x509.CertPool
}

// Loader holds the current TLS material of one holder and builds tls.Configs that always use
// the current one: certificates are read per handshake from an atomically swapped value, so a
// Reload affects every new connection and no existing one. It is safe for concurrent use.
type Loader struct {
	files   Files
	cluster string
	log     *slog.Logger

	cur      atomic.Pointer[material]
	reloadMu sync.Mutex
	stamp    [sha256.Size]byte // of the files last tried, guarded by reloadMu

	reloads, reloadFailures, rejected atomic.Uint64
	handshakeFailures                 atomic.Uint64
	rejectLog, handshakeLog           *LogLimiter
}

// Load reads and validates files: the key matches the certificate, the certificate chains to
// the CA and carries a cairn:// identity of cluster. An empty cluster means the cluster named in
// the certificate (clients need not repeat it). log may be nil (slog.Default()).
func Load(files Files, cluster string, log *slog.Logger) (*Loader, error) {
	if !files.Complete() {
		return nil, fmt.Errorf("tlsutil: CA, certificate and key files are all required (got ca=%q cert=%q key=%q)",
			files.CA, files.Cert, files.Key)
	}
	if cluster != "" {
		if err := ValidClusterName(cluster); err != nil {
			return nil, err
		}
	}
	if log == nil {
		log = slog.Default()
	}
	l := &Loader{files: files, cluster: cluster, log: log, rejectLog: NewLogLimiter(time.Second),
		handshakeLog: NewLogLimiter(time.Second)}
	m, stamp, err := l.read()
	if err != nil {
		return nil, err
	}
	l.cluster = m.id.Cluster
	l.stamp = stamp
	l.cur.Store(m)
	return l, nil
}

// read loads the files and validates them against l.cluster (any cluster when empty).
func (l *Loader) read() (*material, [sha256.Size]byte, error) {
	var stamp [sha256.Size]byte
	h := sha256.New()
	var bufs [3][]byte
	for i, p := range []string{l.files.CA, l.files.Cert, l.files.Key} {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, stamp, fmt.Errorf("tlsutil: read %s: %w", p, err)
		}
		h.Write(b)
		bufs[i] = b
	}
	copy(stamp[:], h.Sum(nil))
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bufs[0]) {
		return nil, stamp, fmt.Errorf("tlsutil: %s holds no PEM certificate", l.files.CA)
	}
	cert, err := tls.X509KeyPair(bufs[1], bufs[2])
	if err != nil {
		return nil, stamp, fmt.Errorf("tlsutil: certificate %s and key %s: %w", l.files.Cert, l.files.Key, err)
	}
	id, err := verifyChain(cert.Certificate, roots)
	if err != nil {
		return nil, stamp, fmt.Errorf("tlsutil: own certificate %s: %w", l.files.Cert, err)
	}
	if l.cluster != "" && id.Cluster != l.cluster {
		return nil, stamp, fmt.Errorf("tlsutil: own certificate %s is for cluster %q, not %q: %w",
			l.files.Cert, id.Cluster, l.cluster, ErrWrongCluster)
	}
	return &material{cert: cert, id: id, roots: roots}, stamp, nil
}

// verifyChain checks that the DER chain (leaf first) chains to roots and returns the leaf's
// identity.
func verifyChain(chain [][]byte, roots *x509.CertPool) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, ErrNoPeerCertificate
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return Identity{}, fmt.Errorf("tlsutil: parse certificate: %w", err)
	}
	inter := x509.NewCertPool()
	for _, der := range chain[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return Identity{}, fmt.Errorf("tlsutil: parse intermediate certificate: %w", err)
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return Identity{}, fmt.Errorf("tlsutil: certificate does not chain to the cluster CA: %w", err)
	}
	return ParseIdentity(leaf)
}

// Identity returns the identity in the current certificate.
func (l *Loader) Identity() Identity { return l.cur.Load().id }

// Cluster returns the cluster name every peer must carry.
func (l *Loader) Cluster() string { return l.cluster }

// Files returns the files the loader reads.
func (l *Loader) Files() Files { return l.files }

// Stats returns how many reloads succeeded and failed, and how many peers were rejected.
func (l *Loader) Stats() (reloads, reloadFailures, rejectedPeers uint64) {
	return l.reloads.Load(), l.reloadFailures.Load(), l.rejected.Load()
}

// Reload reads the files again. On success new handshakes use the new material; on failure
// (missing file, key not matching, certificate of another CA or cluster) the current material
// stays in force, the error is logged and returned.
func (l *Loader) Reload() error {
	l.reloadMu.Lock()
	defer l.reloadMu.Unlock()
	return l.reloadLocked()
}

func (l *Loader) reloadLocked() error {
	m, stamp, err := l.read()
	l.stamp = stamp
	if err != nil {
		l.reloadFailures.Add(1)
		l.log.Error("TLS reload failed; keeping the current certificates", "error", err)
		return err
	}
	l.cur.Store(m)
	l.reloads.Add(1)
	l.log.Info("TLS certificates reloaded", "identity", m.id.String(), "not_after", m.cert.Leaf.NotAfter)
	return nil
}

// Watch polls the files every interval and reloads when their contents changed, until ctx ends.
// A change that fails to load is logged once and not retried until the files change again (a
// certificate written before its key is retried when the key arrives).
func (l *Loader) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.reloadMu.Lock()
		if s, err := fileStamp(l.files.CA, l.files.Cert, l.files.Key); err != nil {
			// Mid-replacement (a file renamed away): keep polling; Reload would fail the same way.
			l.log.Debug("TLS files not readable; will look again", "error", err)
		} else if s != l.stamp {
			_ = l.reloadLocked() // logged and counted there
		}
		l.reloadMu.Unlock()
	}
}

// fileStamp hashes the contents of paths, in order.
func fileStamp(paths ...string) ([sha256.Size]byte, error) {
	var out [sha256.Size]byte
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return out, err
		}
		h.Write(b)
	}
	copy(out[:], h.Sum(nil))
	return out, nil
}

// verifyPeer returns a VerifyConnection callback accepting peers whose certificate chains to
// the current CA, names this cluster and has one of roles. Every rejection is counted (Stats);
// at most one a second is logged, with the number held back.
func (l *Loader) verifyPeer(channel string, roles []Role) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		err := l.checkPeer(cs, roles)
		if err != nil {
			l.rejected.Add(1)
			if ok, held := l.rejectLog.Allow(); ok {
				l.log.Warn("TLS peer rejected", "channel", channel, "error", err, "similar_since_last_logged", held)
			}
		}
		return err
	}
}

func (l *Loader) checkPeer(cs tls.ConnectionState, roles []Role) error {
	chain := make([][]byte, len(cs.PeerCertificates))
	for i, c := range cs.PeerCertificates {
		chain[i] = c.Raw
	}
	id, err := verifyChain(chain, l.cur.Load().roots)
	if err != nil {
		return err
	}
	if id.Cluster != l.cluster {
		return fmt.Errorf("%w: peer %s, this cluster %q", ErrWrongCluster, id, l.cluster)
	}
	if !slices.Contains(roles, id.Role) {
		return fmt.Errorf("%w: peer %s, accepted roles %v", ErrWrongRole, id, roles)
	}
	return nil
}

// ServerConfig returns the configuration of a listener speaking proto (ProtoGRPC, ProtoRaft):
// TLS 1.3 only, a client certificate required, chaining to the cluster CA, naming this cluster
// and holding one of accept's roles. Certificate and CA are read per handshake.
func (l *Loader) ServerConfig(proto string, accept ...Role) *tls.Config {
	verify := l.verifyPeer("server/"+proto, accept)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{proto},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := l.cur.Load()
			return &tls.Config{
				MinVersion:       tls.VersionTLS13,
				NextProtos:       []string{proto},
				Certificates:     []tls.Certificate{m.cert},
				ClientAuth:       tls.RequireAndVerifyClientCert,
				ClientCAs:        m.roots,
				VerifyConnection: verify,
			}, nil
		},
	}
}

// ClientConfig returns the configuration of a dialer speaking proto: TLS 1.3 only, presenting
// the current certificate, accepting a server whose certificate chains to the current CA, names
// this cluster and holds one of accept's roles (normally RoleNode).
//
// Go's built-in verification is replaced (InsecureSkipVerify) by that check, which reads the
// CA per handshake so a CA reload applies, and which checks the cluster identity instead of the
// host name (see the package doc).
func (l *Loader) ClientConfig(proto string, accept ...Role) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{proto},
		InsecureSkipVerify: true, // verified by VerifyConnection against the cluster CA and name
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			m := l.cur.Load()
			return &m.cert, nil
		},
		VerifyConnection: l.verifyPeer("client/"+proto, accept),
	}
}

// WatchFiles polls paths every interval until ctx ends and calls onChange when their contents
// changed since the previous look (a missing file counts as a change once it reappears).
func WatchFiles(ctx context.Context, interval time.Duration, onChange func(), paths ...string) {
	last, _ := fileStamp(paths...)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, err := fileStamp(paths...)
		if err != nil || s == last {
			continue // unreadable mid-replacement, or unchanged
		}
		last = s
		onChange()
	}
}

// LogLimiter lets one log line through per interval and counts the ones it holds back, so that a
// flood of refused handshakes (a scanner, a misconfigured peer retrying) cannot flood the log.
// The zero value is not usable: use NewLogLimiter. It is safe for concurrent use.
type LogLimiter struct {
	interval   time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// NewLogLimiter returns a limiter letting one line through per interval.
func NewLogLimiter(interval time.Duration) *LogLimiter { return &LogLimiter{interval: interval} }

// Allow reports whether a line may be logged now and, if so, how many were held back since the
// last one (to be logged with it).
func (l *LogLimiter) Allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.last) >= l.interval {
		l.last, suppressed, l.suppressed = now, l.suppressed, 0
		return true, suppressed
	}
	l.suppressed++
	return false, 0
}
