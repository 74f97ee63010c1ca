// Command cairnctl administers a Cairn cluster and appends and reads events: status, members,
// append, read, read-all, tombstone, stream (info, meta get|set, delete, tombstone), tail (follow a
// stream or $all live), health, and dev (a local three-node cluster in the foreground).
//
// Every command talks to the nodes given with --addr (comma-separated; default $CAIRN_ADDR, else
// 127.0.0.1:7101). Output is a human table by default and JSON with --json. Exit codes are
// stable for scripts: 0 ok, 1 usage or invalid argument, 2 not found, 3 wrong expected
// revision / conflict / tombstoned, 4 unavailable or timeout, 5 any other error. See DESIGN.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr}, os.Getenv)
	stop()
	os.Exit(code)
}
