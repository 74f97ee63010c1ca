// Package load is Cairn's load tool: one workload engine that drives Cairn, NATS JetStream and
// etcd through small drivers, so the three systems are measured with identical workloads in the
// same run. The engine knows nothing about any system; a Driver maps "append one event to a
// stream and wait for the durable acknowledgement", "read a stream back in order" and "follow a
// stream from its start" onto the system's client.
//
// Workloads (Mode): closed-loop clients (each appends one event and waits for the ack),
// open-loop at a target rate (latency measured from the intended start, so a stalled system
// cannot hide its queueing: no coordinated omission), pipelined (one connection, a window of W
// appends in flight), read-back of N events in order, and catch-up subscription of N events.
// Latencies go into HDR histograms; results print as text or JSON, and Table turns a set of JSON
// results into the side-by-side markdown table of bench/peers/run.sh.
//
// DESIGN.md in this directory explains the choices.
package load

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Conn is one client connection to the system under test. Its methods are called from many
// goroutines at once (closed-loop clients and pipelined windows share connections), so a Conn
// must be safe for concurrent use.
type Conn interface {
	// Append appends one event whose payload is data to stream and returns once the system has
	// acknowledged it with its durable guarantee (for the reference settings: after a quorum
	// fsync). An error means the append is not known to have succeeded.
	Append(ctx context.Context, stream string, data []byte) error
	// Fill appends n events with payload data to stream, in order, as fast as the driver can
	// (batches, pipelining). It prepares read-back and catch-up workloads and is not measured.
	Fill(ctx context.Context, stream string, n int, data []byte) error
	// ReadBack reads the first n events of stream in order, calling page with the number of
	// events of each response as it arrives. It returns an error if fewer than n events arrive.
	ReadBack(ctx context.Context, stream string, n int, page func(events int)) error
	// CatchUp subscribes to stream from its first event and calls got with the number of events
	// of each delivery until n events have been delivered, then ends the subscription.
	CatchUp(ctx context.Context, stream string, n int, got func(events int)) error
	// Close releases the connection.
	Close() error
}

// Driver opens connections to one system under test.
type Driver interface {
	// Prepare makes the system ready for the workloads (for instance creates the NATS
	// JetStream stream). It is called once per run of the tool, before any Connect.
	Prepare(ctx context.Context) error
	// Connect opens one connection.
	Connect(ctx context.Context) (Conn, error)
}

// DriverConfig is what every driver is created from.
type DriverConfig struct {
	// Addrs are the client addresses of the cluster's nodes (host:port).
	Addrs []string
	// Replicas is the replication factor drivers that choose one use (NATS stream replicas).
	Replicas int
}

// NewDriverFunc creates a driver; it does no network I/O.
type NewDriverFunc func(cfg DriverConfig) (Driver, error)

// Registry maps a system name (the --system flag) to its driver constructor.
type Registry map[string]NewDriverFunc

// ErrUnknownSystem is returned for a --system name the registry does not hold.
var ErrUnknownSystem = errors.New("unknown system")

// New returns the driver for system.
func (r Registry) New(system string, cfg DriverConfig) (Driver, error) {
	f, ok := r[system]
	if !ok {
		return nil, fmt.Errorf("%w %q (this build knows: %s)", ErrUnknownSystem, system, strings.Join(r.names(), ", "))
	}
	return f(cfg)
}

func (r Registry) names() []string {
	out := make([]string, 0, len(r))
	for k := range r {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
