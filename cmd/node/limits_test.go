package main

import (
	"io"
	"testing"
	"time"

	"github.com/cairndb/cairn/api"
)

// TestLimitFlags: every limit defaults to api.DefaultConfig and is set by its flag.
func TestLimitFlags(t *testing.T) {
	o, err := parseFlags([]string{"--node-id", "a"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d := api.DefaultConfig(); o.limits.MaxSubscriptionsPerConn != d.MaxSubscriptionsPerConn ||
		o.limits.MaxConnectionIdle != d.MaxConnectionIdle || o.limits.MaxStreamNameBytes != d.MaxStreamNameBytes {
		t.Fatalf("defaults: %+v", o.limits)
	}
	o, err = parseFlags([]string{"--node-id", "a", "--max-stream-name-bytes", "64", "--max-subscriptions-per-conn", "3",
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
