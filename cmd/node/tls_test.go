package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/tlsutil"
)

func TestRefusesToStartWithoutTLSOrDevMode(t *testing.T) {
	err := run(context.Background(), []string{"--node-id", "a", "--data-dir", t.TempDir()}, io.Discard)
	if !errors.Is(err, errUsage) || !errors.Is(err, errNoSecurity) {
		t.Fatalf("run without TLS flags = %v, want a usage error naming the missing TLS material", err)
	}
	for _, want := range []string{"--tls-ca", "cairnctl tls init", "--dev-insecure"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestRefusesACertificateOfAnotherNode(t *testing.T) {
	dir := t.TempDir()
	if err := tlsutil.WriteDev(tlsutil.DevOptions{Dir: dir, Cluster: "c1", Nodes: []string{"other"}}); err != nil {
		t.Fatal(err)
	}
	f := tlsutil.NodeFiles(dir, "other")
	err := run(context.Background(), []string{"--node-id", "a", "--data-dir", t.TempDir(), "--tls-ca", f.CA,
		"--tls-cert", f.Cert, "--tls-key", f.Key, "--gossip-key-file", filepath.Join(dir, tlsutil.GossipKeyFile)}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `not for node "a"`) {
		t.Fatalf("run with another node's certificate = %v", err)
	}
}

// A TLS node serves clients with a certificate of its cluster only, and SIGHUP makes new
// connections use replaced certificate files.
func TestTLSNodeServesMutualTLSAndReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	if err := tlsutil.WriteDev(tlsutil.DevOptions{Dir: dir, Cluster: "c1", Nodes: []string{"solo"}, Clients: []string{"admin"},
		Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	nf := tlsutil.NodeFiles(dir, "solo")
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncWriter{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--node-id", "solo", "--data-dir", t.TempDir(), "--grpc-bind", "127.0.0.1:0",
			"--raft-bind", "127.0.0.1:0", "--gossip-bind", "127.0.0.1:0", "--bootstrap-expect", "1", "--log-format", "json",
			"--tls-ca", nf.CA, "--tls-cert", nf.Cert, "--tls-key", nf.Key, "--cluster-name", "c1",
			"--gossip-key-file", filepath.Join(dir, tlsutil.GossipKeyFile), "--tls-reload-interval", "1h"}, logs)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("run did not stop within 20s")
		}
	}()
	waitLog(t, logs, "cairnd started")
	addr := regexp.MustCompile(`"grpc":"([^"]+)"`).FindStringSubmatch(logs.String())[1]

	cf := tlsutil.ClientFiles(dir, "admin")
	cfg, err := client.LoadTLS(cf.CA, cf.Cert, cf.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New([]string{addr}, client.WithTLS(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	actx, acancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer acancel()
	if _, err := c.Append(actx, "orders-1", client.Any(), []client.EventData{{Type: "Placed", Data: []byte(`{}`)}}); err != nil {
		t.Fatalf("append over mutual TLS: %v", err)
	}

	plain, err := client.New([]string{addr}, client.WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	if _, err := plain.Status(pctx, false); err == nil {
		t.Fatal("a plaintext client was served by a TLS node")
	}

	// Replace the node's certificate, send SIGHUP, and see the new one on a new connection.
	before := serverSerial(t, addr, cfg)
	ca, err := tlsutil.LoadCA(filepath.Join(dir, tlsutil.CACertFile), filepath.Join(dir, tlsutil.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cp, kp, err := ca.Issue(tlsutil.Identity{Cluster: "c1", Role: tlsutil.RoleNode, Name: "solo"}, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteFiles(nf, cp, kp); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "TLS certificates reloaded")
	if after := serverSerial(t, addr, cfg); after == before {
		t.Fatalf("after SIGHUP the node still presents serial %s", before)
	}
	if _, err := c.Append(actx, "orders-1", client.Any(), []client.EventData{{Type: "Placed", Data: []byte(`{}`)}}); err != nil {
		t.Fatalf("append after reload: %v", err)
	}
}

func waitLog(t *testing.T, logs *syncWriter, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", s, logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the log, bounded
	}
}

// serverSerial opens a new TLS connection to addr and returns the serial of the certificate the
// server presents.
func serverSerial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestSecurityMetrics(t *testing.T) {
	gather := func(c prometheus.Collector) map[string]float64 {
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range fams {
			m := f.GetMetric()[0]
			out[f.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		return out
	}
	if got := gather(newSecurityCollector("n", nil)); got["cairn_insecure_dev_mode"] != 1 || len(got) != 1 {
		t.Fatalf("dev mode metrics: %v", got)
	}
	dir := t.TempDir()
	if err := tlsutil.WriteDev(tlsutil.DevOptions{Dir: dir, Cluster: "c1", Nodes: []string{"n"}}); err != nil {
		t.Fatal(err)
	}
	l, err := tlsutil.Load(tlsutil.NodeFiles(dir, "n"), "c1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	got := gather(newSecurityCollector("n", l))
	if got["cairn_insecure_dev_mode"] != 0 || got["cairn_tls_reloads_total"] != 1 || len(got) != 5 {
		t.Fatalf("TLS metrics: %v", got)
	}
}
