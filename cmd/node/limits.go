package main

import (
	"flag"

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
