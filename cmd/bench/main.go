// Command bench is Cairn's load tool against a running Cairn cluster (package bench/load):
//
//	bench --addrs 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 --mode closed --clients 16 --duration 15s
//	bench --mode pipelined --window 256 --json
//	bench --mode read --events 100000
//	bench table results/*.json
//
// bench/peers builds the same tool with NATS JetStream and etcd drivers added (peerbench).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairndb/cairn/bench/load"
	"github.com/cairndb/cairn/bench/load/cairndrv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := load.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, load.Registry{cairndrv.Name: cairndrv.New})
	stop()
	os.Exit(code)
}
