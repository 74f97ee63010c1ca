package tlsutil

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// devDir writes material for cluster with nodes n1, n2 and client admin.
func devDir(t *testing.T, cluster string) string {
	t.Helper()
	dir := t.TempDir()
	if err := WriteDev(DevOptions{Dir: dir, Cluster: cluster, Nodes: []string{"n1", "n2"}, Clients: []string{"admin"},
		Hosts: []string{"127.0.0.1", "localhost"}}); err != nil {
		t.Fatalf("WriteDev: %v", err)
	}
	return dir
}

func mustLoad(t *testing.T, f Files, cluster string) *Loader {
	t.Helper()
	l, err := Load(f, cluster, quiet)
	if err != nil {
		t.Fatalf("Load(%v): %v", f, err)
	}
	return l
}

// handshake runs one TLS handshake between server and client configs over a pipe and returns
// both sides' errors and the certificate the client saw.
func handshake(t *testing.T, srv, cli *tls.Config) (serverErr, clientErr error, serverCertSerial string) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(a, srv)
		err := s.HandshakeContext(ctx)
		if err == nil {
			// TLS 1.3 clients finish before the server has checked their certificate: the
			// client waits for this byte, so a rejection reaches it as an alert instead.
			_, err = s.Write([]byte{1})
		}
		done <- err
	}()
	c := tls.Client(b, cli)
	clientErr = c.HandshakeContext(ctx)
	if clientErr == nil {
		serverCertSerial = c.ConnectionState().PeerCertificates[0].SerialNumber.String()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			clientErr = err
		}
	}
	b.Close()
	serverErr = <-done
	return serverErr, clientErr, serverCertSerial
}

func TestIdentityRoundTripAndNames(t *testing.T) {
	dir := devDir(t, "prod-1")
	l := mustLoad(t, NodeFiles(dir, "n1"), "prod-1")
	if got, want := l.Identity(), (Identity{Cluster: "prod-1", Role: RoleNode, Name: "n1"}); !reflect.DeepEqual(got, want) {
		t.Fatalf("identity = %+v, want %+v", got, want)
	}
	if got := l.Identity().String(); got != "cairn://prod-1/node/n1" {
		t.Fatalf("URI = %q", got)
	}
	// A client's loader takes the cluster name from its own certificate.
	c := mustLoad(t, ClientFiles(dir, "admin"), "")
	if c.Cluster() != "prod-1" || c.Identity().Role != RoleClient {
		t.Fatalf("client loader: cluster %q identity %+v", c.Cluster(), c.Identity())
	}
	for _, bad := range []string{"", "Prod", "a_b", strings.Repeat("a", 64)} {
		if ValidClusterName(bad) == nil {
			t.Errorf("cluster name %q accepted", bad)
		}
	}
}

func TestLoadRefusesWrongClusterAndMismatchedFiles(t *testing.T) {
	dir := devDir(t, "c1")
	if _, err := Load(NodeFiles(dir, "n1"), "c2", quiet); !errors.Is(err, ErrWrongCluster) {
		t.Fatalf("wrong cluster: err = %v, want ErrWrongCluster", err)
	}
	f := NodeFiles(dir, "n1")
	f.Key = NodeFiles(dir, "n2").Key
	if _, err := Load(f, "c1", quiet); err == nil {
		t.Fatal("a key of another certificate was accepted")
	}
	other := devDir(t, "c1")
	f = NodeFiles(dir, "n1")
	f.CA = filepath.Join(other, CACertFile)
	if _, err := Load(f, "c1", quiet); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Fatalf("certificate of another CA: err = %v", err)
	}
	if _, err := Load(Files{CA: f.CA}, "c1", quiet); err == nil {
		t.Fatal("incomplete files accepted")
	}
}

func TestDevFilesAreWrittenPrivatelyAndCAIsReused(t *testing.T) {
	dir := devDir(t, "c1")
	for _, name := range []string{CAKeyFile, "node-n1.key", "client-admin.key", GossipKeyFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	ca1, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	gk1, _ := os.ReadFile(filepath.Join(dir, GossipKeyFile))
	if err := WriteDev(DevOptions{Dir: dir, Cluster: "c1", Nodes: []string{"n3"}}); err != nil {
		t.Fatal(err)
	}
	ca2, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	gk2, _ := os.ReadFile(filepath.Join(dir, GossipKeyFile))
	if string(ca1) != string(ca2) || string(gk1) != string(gk2) {
		t.Fatal("re-running WriteDev replaced the CA or the gossip key")
	}
	// The later node chains to the same CA.
	mustLoad(t, NodeFiles(dir, "n3"), "c1")
}

func TestMutualAuthentication(t *testing.T) {
	dir := devDir(t, "c1")
	n1 := mustLoad(t, NodeFiles(dir, "n1"), "c1")
	n2 := mustLoad(t, NodeFiles(dir, "n2"), "c1")
	admin := mustLoad(t, ClientFiles(dir, "admin"), "")
	foreign := mustLoad(t, NodeFiles(devDir(t, "c1"), "n1"), "c1") // same names, another CA
	// The right CA, another cluster name: issued by dir's CA.
	ca, err := LoadCA(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	c, k, err := ca.Issue(Identity{Cluster: "c2", Role: RoleNode, Name: "n9"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	of := Files{CA: filepath.Join(dir, CACertFile), Cert: filepath.Join(otherDir, "n9.crt"), Key: filepath.Join(otherDir, "n9.key")}
	if err := WriteFiles(of, c, k); err != nil {
		t.Fatal(err)
	}
	otherCluster := mustLoad(t, of, "c2")

	raftSrv := n1.ServerConfig(ProtoRaft, RoleNode)
	apiSrv := n1.ServerConfig(ProtoGRPC, RoleNode, RoleClient)
	tests := []struct {
		name   string
		srv    *tls.Config
		cli    *tls.Config
		wantOK bool
	}{
		{"node to node on raft", raftSrv, n2.ClientConfig(ProtoRaft, RoleNode), true},
		{"client on the API", apiSrv, admin.ClientConfig(ProtoGRPC, RoleNode), true},
		{"client on raft", raftSrv, admin.ClientConfig(ProtoRaft, RoleNode), false},
		{"node of another CA on raft", raftSrv, foreign.ClientConfig(ProtoRaft, RoleNode), false},
		{"node of another CA on the API", apiSrv, foreign.ClientConfig(ProtoGRPC, RoleNode), false},
		{"another cluster name, same CA", raftSrv, otherCluster.ClientConfig(ProtoRaft, RoleNode), false},
		{"no client certificate", apiSrv, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ProtoGRPC}}, false},
		{"TLS 1.2 client", apiSrv, func() *tls.Config {
			c := admin.ClientConfig(ProtoGRPC, RoleNode)
			c.MaxVersion = tls.VersionTLS12
			return c
		}(), false},
		{"dialing a server of another CA", foreign.ServerConfig(ProtoRaft, RoleNode), n2.ClientConfig(ProtoRaft, RoleNode), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			serr, cerr, _ := handshake(t, tc.srv, tc.cli)
			ok := serr == nil && cerr == nil
			if ok != tc.wantOK {
				t.Fatalf("handshake ok = %v, want %v (server: %v, client: %v)", ok, tc.wantOK, serr, cerr)
			}
		})
	}
	if _, _, rejected := n1.Stats(); rejected == 0 {
		t.Fatal("rejected peers were not counted")
	}
}

func TestReloadSwapsCertificatesAndKeepsOldOnBadFiles(t *testing.T) {
	dir := devDir(t, "c1")
	n1 := mustLoad(t, NodeFiles(dir, "n1"), "c1")
	n2 := mustLoad(t, NodeFiles(dir, "n2"), "c1")
	srv, cli := n1.ServerConfig(ProtoRaft, RoleNode), n2.ClientConfig(ProtoRaft, RoleNode)
	_, _, before := handshake(t, srv, cli)

	// A bad reload (certificate without its key) keeps the old material.
	f := NodeFiles(dir, "n1")
	ca, err := LoadCA(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.Issue(Identity{Cluster: "c1", Role: RoleNode, Name: "n1"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(f.Cert, c, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n1.Reload(); err == nil {
		t.Fatal("reload with a key that does not match succeeded")
	}
	if _, _, s := handshake(t, srv, cli); s != before {
		t.Fatalf("after a failed reload the server presents serial %s, want the old %s", s, before)
	}
	// The key arrives: the watcher picks the change up and new connections use the new cert.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n1.Watch(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	if err := writeAtomic(f.Key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if reloads, _, _ := n1.Stats(); reloads > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("watcher did not reload within 5s")
		}
		time.Sleep(10 * time.Millisecond) // polling a counter the watcher bumps
	}
	_, _, after := handshake(t, srv, cli)
	if after == before || after == "" {
		t.Fatalf("after reload the server presents serial %s (before %s)", after, before)
	}
	if _, failures, _ := n1.Stats(); failures != 1 {
		t.Fatalf("reload failures = %d, want 1", failures)
	}
}

func TestGossipKeys(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	if err := WriteGossipKeyFile(p); err != nil {
		t.Fatal(err)
	}
	k2, _ := NewGossipKey()
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, append(b, []byte("\n"+k2+"\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	primary, all, err := LoadGossipKeys(p)
	if err != nil || len(primary) != 32 || len(all) != 2 {
		t.Fatalf("LoadGossipKeys: primary %d bytes, %d keys, err %v", len(primary), len(all), err)
	}
	for content, want := range map[string]string{"# only a comment\n": "no key", "!!!\n": "base64", "YWJj\n": "3 bytes"} {
		_ = os.WriteFile(p, []byte(content), 0o600)
		if _, _, err := LoadGossipKeys(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want it to mention %q", content, err, want)
		}
	}
}

func TestLogLimiterLetsOneThroughPerInterval(t *testing.T) {
	l := NewLogLimiter(time.Hour)
	if ok, held := l.Allow(); !ok || held != 0 {
		t.Fatalf("first: %v %d", ok, held)
	}
	for range 5 {
		if ok, _ := l.Allow(); ok {
			t.Fatal("a second line within the interval was let through")
		}
	}
	l.last = time.Now().Add(-2 * time.Hour) // as if the interval had passed
	if ok, held := l.Allow(); !ok || held != 5 {
		t.Fatalf("after the interval: %v, held back %d, want 5", ok, held)
	}
}
