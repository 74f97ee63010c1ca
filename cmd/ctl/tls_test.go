package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
