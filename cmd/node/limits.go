package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/cairndb/cairn/api"
)

// limitFlags registers the flags of the api limits that have no flag of their own in
// parseFlags, with cfg's fields starting at api.DefaultConfig (issue 9, "Hostile input": every
// limit has a default and a flag).
func limitFlags(fs *flag.FlagSet, cfg *api.Config) {
	*cfg = api.DefaultConfig()
	fs.IntVar(&cfg.MaxStreamNameBytes, "max-stream-name-bytes", cfg.MaxStreamNameBytes, "longest stream name accepted, in bytes")
	fs.IntVar(&cfg.MaxFilterEntries, "max-filter-entries", cfg.MaxFilterEntries, "most entries in each field of a read or subscription filter")
	fs.IntVar(&cfg.MaxConcurrentStreams, "max-concurrent-streams", cfg.MaxConcurrentStreams, "most concurrent RPCs per client connection (more wait)")
	fs.IntVar(&cfg.MaxSubscriptionsPerConn, "max-subscriptions-per-conn", cfg.MaxSubscriptionsPerConn, "most running subscriptions per client connection")
	fs.IntVar(&cfg.MaxHeaderListBytes, "max-header-list-bytes", cfg.MaxHeaderListBytes, "largest gRPC metadata (headers) of one request")
	fs.DurationVar(&cfg.KeepaliveMinTime, "keepalive-min-time", cfg.KeepaliveMinTime, "clients pinging more often than this are disconnected")
	fs.DurationVar(&cfg.KeepaliveTime, "keepalive-time", cfg.KeepaliveTime, "ping a client connection silent for this long")
	fs.DurationVar(&cfg.KeepaliveTimeout, "keepalive-timeout", cfg.KeepaliveTimeout, "close a connection whose ping is not answered within this")
	fs.DurationVar(&cfg.MaxConnectionIdle, "max-connection-idle", cfg.MaxConnectionIdle, "close client connections without RPCs for this long")
	fs.DurationVar(&cfg.MaxConnectionAge, "max-connection-age", cfg.MaxConnectionAge, "close client connections after this long (0: never)")
	fs.DurationVar(&cfg.MaxConnectionAgeGrace, "max-connection-age-grace", cfg.MaxConnectionAgeGrace, "time running RPCs get after max-connection-age (0: unbounded)")
}

// minBootstrapTokenBytes keeps a bootstrap token from being guessable.
const minBootstrapTokenBytes = 16

// authConfig builds the api's auth settings from the flags: --auth, and the bootstrap admin
// token from --bootstrap-token-file or --bootstrap-token (CAIRN_BOOTSTRAP_TOKEN).
func authConfig(o *options) (api.AuthConfig, error) {
	cfg := api.AuthConfig{Enabled: o.auth, BootstrapToken: o.bootstrapToken}
	if o.bootstrapTokenFile != "" {
		if o.bootstrapToken != "" {
			return cfg, fmt.Errorf("%w: give --bootstrap-token-file or --bootstrap-token, not both", errUsage)
		}
		b, err := os.ReadFile(o.bootstrapTokenFile)
		if err != nil {
			return cfg, fmt.Errorf("read --bootstrap-token-file: %w", err)
		}
		cfg.BootstrapToken = strings.TrimSpace(string(b))
	}
	if cfg.BootstrapToken != "" && len(cfg.BootstrapToken) < minBootstrapTokenBytes {
		return cfg, fmt.Errorf("%w: the bootstrap token must have at least %d bytes", errUsage, minBootstrapTokenBytes)
	}
	if cfg.BootstrapToken != "" && !o.auth {
		return cfg, fmt.Errorf("%w: a bootstrap token without --auth does nothing", errUsage)
	}
	return cfg, nil
}
