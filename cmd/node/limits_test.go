package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairndb/cairn/api"
)

// TestLimitFlags: every limit defaults to api.DefaultConfig and is set by its flag.
func TestLimitFlags(t *testing.T) {
	o, err := parseFlags([]string{"--node-id", "a", "--dev-insecure"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d := api.DefaultConfig(); o.limits.MaxSubscriptionsPerConn != d.MaxSubscriptionsPerConn ||
		o.limits.MaxConnectionIdle != d.MaxConnectionIdle || o.limits.MaxStreamNameBytes != d.MaxStreamNameBytes {
		t.Fatalf("defaults: %+v", o.limits)
	}
	o, err = parseFlags([]string{"--node-id", "a", "--dev-insecure", "--max-stream-name-bytes", "64", "--max-subscriptions-per-conn", "3",
		"--max-concurrent-streams", "9", "--max-header-list-bytes", "1024", "--keepalive-min-time", "1s",
		"--max-connection-idle", "2m", "--max-connection-age", "1h", "--max-connection-age-grace", "1m"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	l := o.limits
	if l.MaxStreamNameBytes != 64 || l.MaxSubscriptionsPerConn != 3 || l.MaxConcurrentStreams != 9 || l.MaxHeaderListBytes != 1024 ||
		l.KeepaliveMinTime != time.Second || l.MaxConnectionIdle != 2*time.Minute || l.MaxConnectionAge != time.Hour ||
		l.MaxConnectionAgeGrace != time.Minute {
		t.Fatalf("flags not applied: %+v", l)
	}
}

// TestAuthFlags: --auth with a bootstrap token from a file or the flag (CAIRN_BOOTSTRAP_TOKEN);
// unsafe or contradictory combinations are usage errors.
func TestAuthFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("0123456789abcdef-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"--node-id", "a", "--dev-insecure", "--auth", "--bootstrap-token-file", file}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := authConfig(o)
	if err != nil || !cfg.Enabled || cfg.BootstrapToken != "0123456789abcdef-from-file" {
		t.Fatalf("%+v %v", cfg, err)
	}
	for _, args := range [][]string{
		{"--auth", "--bootstrap-token", "short"},
		{"--bootstrap-token", "0123456789abcdef-no-auth"},
		{"--auth", "--bootstrap-token", "0123456789abcdef", "--bootstrap-token-file", file},
	} {
		o, err := parseFlags(append([]string{"--node-id", "a", "--dev-insecure"}, args...), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := authConfig(o); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
