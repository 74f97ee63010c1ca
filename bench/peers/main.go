// Command peerbench is the load tool (package bench/load of Cairn) with drivers for Cairn, NATS
// JetStream and etcd, so that bench/peers/run.sh measures the three systems with one tool and
// identical workloads:
//
//	peerbench --system nats --addrs 127.0.0.1:4222,127.0.0.1:4223,127.0.0.1:4224 --label nats-always --clients 16
//	peerbench --system etcd --addrs 127.0.0.1:2379,... --mode read --events 100000 --json
//	peerbench table --rss rss.txt results/*.json
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairndb/cairn/bench/load"
	"github.com/cairndb/cairn/bench/load/cairndrv"
	"github.com/cairndb/cairn/bench/peers/etcddrv"
	"github.com/cairndb/cairn/bench/peers/natsdrv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := load.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, load.Registry{
		cairndrv.Name: cairndrv.New,
		natsdrv.Name:  natsdrv.New,
		etcddrv.Name:  etcddrv.New,
	})
	stop()
	os.Exit(code)
}
