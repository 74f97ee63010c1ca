// Package cairndrv is the load tool's Cairn driver: it maps the workloads of package load onto
// the Go client (package client), exactly as an application would use it.
package cairndrv

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cairndb/cairn/bench/load"
	"github.com/cairndb/cairn/client"
)

// Name is the driver's system name.
const Name = "cairn"

// Driver limits: Fill appends FillBatch events per request (about 300 KB at 256 bytes, well
// under the 4 MiB request limit) with FillInFlight requests in flight, and reads ask for
// ReadPage events per call (the server's default cap is 10,000).
const (
	FillBatch    = 1000
	FillInFlight = 4
	ReadPage     = 10_000
)

// eventType is the type of every benchmark event.
const eventType = "Bench"

// New returns the Cairn driver for cfg.Addrs (gRPC addresses; the client finds the leader and
// sends appends there).
func New(cfg load.DriverConfig) (load.Driver, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("cairn driver: no address")
	}
	return &driver{addrs: cfg.Addrs}, nil
}

type driver struct{ addrs []string }

// Prepare has nothing to do: Cairn streams need no set-up.
func (d *driver) Prepare(context.Context) error { return nil }

// Connect returns a connection with its own client.Client (one gRPC connection per node).
func (d *driver) Connect(ctx context.Context) (load.Conn, error) {
	c, err := client.New(d.addrs)
	if err != nil {
		return nil, fmt.Errorf("cairn driver: %w", err)
	}
	// Learn the leader before the clock starts, so that no measured append is forwarded.
	if _, err := c.Status(ctx, false); err != nil {
		_ = c.Close() // the connection was never used
		return nil, fmt.Errorf("cairn driver: status: %w", err)
	}
	return &conn{c: c}, nil
}

type conn struct{ c *client.Client }

func (c *conn) Close() error { return c.c.Close() }

// Append appends one event; the client gives it a random id and waits for the commit.
func (c *conn) Append(ctx context.Context, stream string, data []byte) error {
	_, err := c.c.Append(ctx, stream, client.Any(), []client.EventData{{Type: eventType, Data: data}})
	return err
}

// Fill appends n events in requests of FillBatch, FillInFlight at a time.
func (c *conn) Fill(ctx context.Context, stream string, n int, data []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range FillInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for size := range batches {
				evs := make([]client.EventData, size)
				for i := range evs {
					evs[i] = client.EventData{Type: eventType, Data: data}
				}
				if _, err := c.c.Append(ctx, stream, client.Any(), evs); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
send:
	for left := n; left > 0; left -= FillBatch {
		select {
		case batches <- min(left, FillBatch):
		case <-ctx.Done():
			break send
		}
	}
	close(batches)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// ReadBack reads the stream from revision 0 in pages of ReadPage, linearizably.
func (c *conn) ReadBack(ctx context.Context, stream string, n int, page func(int)) error {
	var got int
	for got < n {
		r, err := c.c.Read(ctx, stream, client.ReadOptions{From: uint64(got), Limit: min(ReadPage, n-got)})
		if err != nil {
			return err
		}
		if len(r.Events) == 0 {
			return fmt.Errorf("cairn driver: stream %q ended after %d events", stream, got)
		}
		got += len(r.Events)
		page(len(r.Events))
	}
	return nil
}

// CatchUp subscribes to the stream from its first event.
func (c *conn) CatchUp(ctx context.Context, stream string, n int, got func(int)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, err := c.c.Subscribe(ctx, client.SubscribeOptions{Stream: stream, FromStart: true, MaxRetries: 3})
	if err != nil {
		return err
	}
	defer sub.Close() //nolint:errcheck // closing an ended subscription reports nothing useful
	for seen := 0; seen < n; {
		m, err := sub.Next()
		if err != nil {
			return err
		}
		if m.Kind == client.MessageEvent {
			seen++
			got(1)
		}
	}
	return nil
}
