// Package etcddrv is the load tool's etcd driver. An event is a key "<stream>/<sequence>" with
// the payload as its value; an append is a Put, acknowledged after the quorum has fsynced the
// entry (etcd's default). Reading back is a paginated, linearizable range over the stream's
// prefix in key order; catch-up is a watch over the prefix from the first event's revision.
package etcddrv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairndb/cairn/bench/load"
)

// Name is the driver's system name.
const Name = "etcd"

// Driver limits: Fill writes FillBatch puts per transaction (etcd's default --max-txn-ops is
// 128) with FillInFlight transactions in flight; ReadPage keys per range request.
const (
	FillBatch    = 100
	FillInFlight = 8
	ReadPage     = 10_000
)

// New returns the etcd driver for cfg.Addrs (host:port client endpoints).
func New(cfg load.DriverConfig) (load.Driver, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("etcd driver: no endpoint")
	}
	return &driver{endpoints: cfg.Addrs}, nil
}

type driver struct {
	endpoints []string
	seq       atomic.Uint64 // key sequence shared by every connection, so keys never collide
	mu        sync.Mutex
	leader    string
}

func (d *driver) client(endpoints []string) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("etcd driver: %w", err)
	}
	return c, nil
}

// Prepare finds the leader's endpoint, so that every connection sends to it.
func (d *driver) Prepare(ctx context.Context) error {
	c, err := d.client(d.endpoints)
	if err != nil {
		return err
	}
	defer c.Close() //nolint:errcheck // a probe client
	for _, ep := range d.endpoints {
		st, err := c.Status(ctx, ep)
		if err != nil {
			continue // unreachable now: not the leader to use
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			d.mu.Lock()
			d.leader = ep
			d.mu.Unlock()
			return nil
		}
	}
	return fmt.Errorf("etcd driver: no leader among %v", d.endpoints)
}

// Connect opens a client to the leader.
func (d *driver) Connect(context.Context) (load.Conn, error) {
	d.mu.Lock()
	eps := d.endpoints
	if d.leader != "" {
		eps = []string{d.leader}
	}
	d.mu.Unlock()
	c, err := d.client(eps)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, d: d}, nil
}

type conn struct {
	c *clientv3.Client
	d *driver
}

func (c *conn) Close() error { return c.c.Close() }

func key(stream string, seq uint64) string { return fmt.Sprintf("%s/%016x", stream, seq) }

// Append puts one key.
func (c *conn) Append(ctx context.Context, stream string, data []byte) error {
	_, err := c.c.Put(ctx, key(stream, c.d.seq.Add(1)), string(data))
	return err
}

// Fill writes n keys with increasing sequence numbers, FillBatch per transaction.
func (c *conn) Fill(ctx context.Context, stream string, n int, data []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type batch struct{ from, n int }
	batches := make(chan batch)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range FillInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				ops := make([]clientv3.Op, b.n)
				for i := range ops {
					ops[i] = clientv3.OpPut(key(stream, uint64(b.from+i)), string(data))
				}
				if _, err := c.c.Txn(ctx).Then(ops...).Commit(); err != nil {
					once.Do(func() { first = fmt.Errorf("etcd driver: fill: %w", err); cancel() })
				}
			}
		}()
	}
send:
	for from := 0; from < n; from += FillBatch {
		select {
		case batches <- batch{from, min(FillBatch, n-from)}:
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

// ReadBack ranges over the stream's keys in order, ReadPage at a time.
func (c *conn) ReadBack(ctx context.Context, stream string, n int, page func(int)) error {
	prefix := stream + "/"
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	for got := 0; got < n; {
		r, err := c.c.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(int64(min(ReadPage, n-got))))
		if err != nil {
			return fmt.Errorf("etcd driver: range: %w", err)
		}
		if len(r.Kvs) == 0 {
			return fmt.Errorf("etcd driver: prefix %q ended after %d keys", prefix, got)
		}
		got += len(r.Kvs)
		from = string(r.Kvs[len(r.Kvs)-1].Key) + "\x00"
		page(len(r.Kvs))
	}
	return nil
}

// CatchUp watches the stream's prefix from the revision of its first key.
func (c *conn) CatchUp(ctx context.Context, stream string, n int, got func(int)) error {
	prefix := stream + "/"
	first, err := c.c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(1),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortAscend))
	if err != nil {
		return fmt.Errorf("etcd driver: first key: %w", err)
	}
	if len(first.Kvs) == 0 {
		return fmt.Errorf("etcd driver: prefix %q is empty", prefix)
	}
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	seen := 0
	for w := range c.c.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(first.Kvs[0].ModRevision)) {
		if err := w.Err(); err != nil {
			return fmt.Errorf("etcd driver: watch: %w", err)
		}
		k := min(len(w.Events), n-seen)
		seen += k
		got(k)
		if seen >= n {
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("etcd driver: watch ended after %d events", seen)
}
