// Package natsdrv is the load tool's NATS JetStream driver. Every benchmark stream is a subject
// "bench.<stream>" of one JetStream stream, BENCH, with file storage and the configured replicas
// (3). Its durability is the server's: run.sh starts the servers with `sync_interval: always`
// (fsync before the ack, like Cairn and etcd) for "nats-always" and with the default for
// "nats-default".
package natsdrv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cairndb/cairn/bench/load"
)

// Name is the driver's system name.
const Name = "nats"

// JetStream names and driver limits.
const (
	StreamName    = "BENCH"
	subjectPrefix = "bench."
	// FillInFlight is the number of publishes Fill keeps in flight.
	FillInFlight = 256
	// FetchBatch is the number of messages one read-back Fetch asks for.
	FetchBatch = 10_000
)

// New returns the NATS driver for cfg.Addrs (nats://host:port or host:port client URLs).
func New(cfg load.DriverConfig) (load.Driver, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("nats driver: no address")
	}
	urls := make([]string, len(cfg.Addrs))
	for i, a := range cfg.Addrs {
		if !strings.Contains(a, "://") {
			a = "nats://" + a
		}
		urls[i] = a
	}
	replicas := cfg.Replicas
	if replicas <= 0 {
		replicas = 1
	}
	return &driver{urls: urls, replicas: replicas}, nil
}

type driver struct {
	urls     []string
	replicas int
	mu       sync.Mutex
	leader   string // URL of the stream leader, first in the list once known
}

// Prepare creates the BENCH stream (or keeps it), then finds the server that leads it, so that
// connections go straight to the leader like the other systems' clients.
func (d *driver) Prepare(ctx context.Context) error {
	nc, err := nats.Connect(strings.Join(d.urls, ","), nats.Timeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("nats driver: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("nats driver: %w", err)
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     StreamName,
		Subjects: []string{subjectPrefix + ">"},
		Replicas: d.replicas,
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("nats driver: create stream %s: %w", StreamName, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("nats driver: stream info: %w", err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil // no leader reported (a single server): any URL is as good
	}
	for _, u := range d.urls {
		c, err := nats.Connect(u, nats.Timeout(5*time.Second))
		if err != nil {
			continue // that server is not reachable: it cannot be the leader we want to use
		}
		name := c.ConnectedServerName()
		c.Close()
		if name == info.Cluster.Leader {
			d.mu.Lock()
			d.leader = u
			d.mu.Unlock()
			return nil
		}
	}
	return fmt.Errorf("nats driver: stream leader %q is none of %v", info.Cluster.Leader, d.urls)
}

// Connect opens a connection to the stream leader (then the other servers, in order).
func (d *driver) Connect(context.Context) (load.Conn, error) {
	d.mu.Lock()
	urls := d.urls
	if d.leader != "" {
		urls = append([]string{d.leader}, urls...)
	}
	d.mu.Unlock()
	nc, err := nats.Connect(strings.Join(urls, ","), nats.DontRandomize(), nats.Timeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("nats driver: connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats driver: %w", err)
	}
	return &conn{nc: nc, js: js}, nil
}

type conn struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (c *conn) Close() error { c.nc.Close(); return nil }

// Append publishes one message and waits for its PubAck (sent once the stream's quorum has it).
func (c *conn) Append(ctx context.Context, stream string, data []byte) error {
	_, err := c.js.Publish(ctx, subjectPrefix+stream, data)
	return err
}

// Fill publishes n messages asynchronously, FillInFlight at a time, and waits for every ack.
func (c *conn) Fill(ctx context.Context, stream string, n int, data []byte) error {
	subj := subjectPrefix + stream
	futures := make([]jetstream.PubAckFuture, 0, FillInFlight)
	check := func() error {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("nats driver: fill: %w", err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	for range n {
		f, err := c.js.PublishAsync(subj, data)
		if err != nil {
			return fmt.Errorf("nats driver: fill: %w", err)
		}
		futures = append(futures, f)
		if len(futures) == FillInFlight {
			if err := check(); err != nil {
				return err
			}
		}
	}
	return check()
}

// consumer is an ordered (ephemeral, flow-controlled) consumer of the stream's subject from its
// first message.
func (c *conn) consumer(ctx context.Context, stream string) (jetstream.Consumer, error) {
	cons, err := c.js.OrderedConsumer(ctx, StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjectPrefix + stream},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("nats driver: ordered consumer: %w", err)
	}
	return cons, nil
}

// ReadBack pulls the subject's messages in order with an ordered consumer, FetchBatch at a time.
func (c *conn) ReadBack(ctx context.Context, stream string, n int, page func(int)) error {
	cons, err := c.consumer(ctx, stream)
	if err != nil {
		return err
	}
	for got := 0; got < n; {
		batch, err := cons.Fetch(min(FetchBatch, n-got), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			return fmt.Errorf("nats driver: fetch: %w", err)
		}
		k := 0
		for range batch.Messages() {
			k++
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("nats driver: fetch: %w", err)
		}
		if k == 0 {
			return fmt.Errorf("nats driver: subject of %q ended after %d messages", stream, got)
		}
		got += k
		page(k)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// CatchUp consumes the subject from its first message with an ordered consumer's Consume (the
// server pushes batches of pulls ahead of the client).
func (c *conn) CatchUp(ctx context.Context, stream string, n int, got func(int)) error {
	cons, err := c.consumer(ctx, stream)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	seen := 0
	cc, err := cons.Consume(func(jetstream.Msg) {
		if seen < n {
			seen++
			got(1)
			if seen == n {
				close(done)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("nats driver: consume: %w", err)
	}
	defer cc.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
