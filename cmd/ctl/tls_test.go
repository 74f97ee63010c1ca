package main

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/cluster"
	"github.com/cairndb/cairn/internal/testcluster"
	"github.com/cairndb/cairn/internal/tlsutil"
)

func TestTLSInitWritesLoadableMaterial(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	out := ok(t, "tls", "init", "--dir", dir, "--nodes", "n1,n2", "--cluster-name", "prod", "--hosts", "10.0.0.1,db.example")
	if !strings.Contains(out, "node-n1.crt") || !strings.Contains(out, "client-admin.key") {
		t.Fatalf("output:\n%s", out)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("dir: %v %v", st, err)
	}
	for _, k := range []string{"ca.key", "node-n1.key", "node-n2.key", "client-admin.key", "gossip.key"} {
		if st, err := os.Stat(filepath.Join(dir, k)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, err %v; want 0600", k, st.Mode().Perm(), err)
		}
	}
	l, err := tlsutil.Load(tlsutil.NodeFiles(dir, "n2"), "prod", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Identity().String(); got != "cairn://prod/node/n2" {
		t.Fatalf("identity %s", got)
	}
	if _, _, err := tlsutil.LoadGossipKeys(filepath.Join(dir, "gossip.key")); err != nil {
		t.Fatal(err)
	}
	k := strings.TrimSpace(ok(t, "tls", "gossip-key"))
	if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 32 {
		t.Fatalf("gossip-key printed %q (%v)", k, err)
	}
}

func TestTLSInitAndTLSFlagsUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"tls", "init", "--nodes", "n1", "--cluster-name", "c"},               // no dir
		{"tls", "init", "--dir", dir, "--cluster-name", "c"},                  // no nodes
		{"tls", "init", "--dir", dir, "--nodes", "n1"},                        // no cluster name
		{"tls", "init", "--dir", dir, "--nodes", "n1", "--cluster-name", "C"}, // bad name
		{"tls", "init", "--dir", dir, "--nodes", "a/b", "--cluster-name", "c"},
		{"--ca", "ca.crt", "status"},                                                // incomplete TLS flags
		{"--ca", filepath.Join(dir, "none"), "--cert", "x", "--key", "y", "status"}, // unreadable
	} {
		if r := runCLI(t, nil, "", args...); r.code != exitUsage {
			t.Errorf("cairnctl %v: exit %d, want %d (%s)", args, r.code, exitUsage, r.err)
		}
	}
}

// cairnctl tls rotate-gossip-key installs a new primary gossip key on every member and prunes the
// old one, persisting it: a node that knows only the new key then joins the cluster.
func TestRotateGossipKeyClusterWide(t *testing.T) {
	tc := testcluster.NewWithOptions(t, 3, testcluster.Options{TLS: true, LogLevel: slog.LevelWarn})
	leader := tc.WaitLeader(t)
	f := tlsutil.ClientFiles(tc.TLSDir, "admin")
	base := []string{"--ca", f.CA, "--cert", f.Cert, "--key", f.Key, "--addr", leader.Addr, "--timeout", "20s"}
	if out := ok(t, append(base, "tls", "gossip-keys")...); strings.Count(out, "primary ") != 3 {
		t.Fatalf("gossip-keys:\n%s", out)
	}
	newKey, _ := tlsutil.NewGossipKey()
	raw, _ := base64.StdEncoding.DecodeString(newKey)
	fp := cluster.GossipKeyFingerprint(raw)
	out := ok(t, append(base, "tls", "rotate-gossip-key", "--new-key", newKey)...)
	if strings.Count(out, "prune") != 3 || strings.Count(out, "primary "+fp+"  keys "+fp+"\n") != 3 {
		t.Fatalf("rotate output:\n%s", out)
	}
	primary, all, err := tlsutil.LoadGossipKeys(filepath.Join(tc.TLSDir, tlsutil.GossipKeyFile))
	if err != nil || len(all) != 1 || cluster.GossipKeyFingerprint(primary) != fp {
		t.Fatalf("key file after rotation: %d keys, err %v", len(all), err)
	}

	// A fourth node holding only the new key joins gossip and is added to raft.
	if err := tlsutil.WriteDev(tlsutil.DevOptions{Dir: tc.TLSDir, Cluster: testcluster.ClusterName, Nodes: []string{"node4"},
		Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	n4 := tc.StartNode(t, "node4", 0, tc.NodeSecurity("node4"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := leader.Status(ctx, false)
		cancel()
		if err == nil && len(st.GetMembers()) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node4 with the new key not added within 30s (gossip %v)", n4.GossipMembers())
		}
		time.Sleep(50 * time.Millisecond) // polling the configuration, bounded
	}

	// A node without a keyring refuses, and a malformed key is refused before any call.
	plain := testcluster.New(t, 1)
	r := runCLI(t, nil, "", "--addr", plain.Nodes[0].Addr, "--timeout", "10s", "tls", "rotate-gossip-key")
	if r.code != exitOther || !strings.Contains(r.err, "without encryption") {
		t.Fatalf("rotate on a plaintext-gossip node: exit %d: %s", r.code, r.err)
	}
	wantExit(t, exitUsage, append(base, "tls", "rotate-gossip-key", "--new-key", "c2hvcnQ=")...)
	c, err := client.New([]string{leader.Addr}, client.WithTLS(tc.ClientTLS(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.GossipKey(ctx, client.GossipKeyUse, "c2hvcnQ=", client.ToAddress(leader.Addr)); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("use of a malformed key = %v, want ErrInvalidArgument", err)
	}
	other, _ := tlsutil.NewGossipKey()
	if _, err := c.GossipKey(ctx, client.GossipKeyUse, other, client.ToAddress(leader.Addr)); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("use of a key not installed = %v, want FAILED_PRECONDITION", err)
	}
}
