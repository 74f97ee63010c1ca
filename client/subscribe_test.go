package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/testcluster"
)

// TestSubscribeBasics runs the single-cluster subscription scenarios: a stream subscription with
// its caught_up, tombstone end and Close, on a follower.
func TestSubscribeBasics(t *testing.T) {
	tc, leader := mustNewCluster(t, 3)
	follower := tc.Followers(leader)[0]
	c := newTestClient(t, tc.Addrs())
	ctx := ctxTimeout(t, 30*time.Second)

	if _, err := c.Append(ctx, "sub-1", client.NoStream(), oneEvent()); err != nil { // revisions 0, 1
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, client.SubscribeOptions{Stream: "sub-1", FromStart: true, Address: follower.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	want := []client.MessageKind{client.MessageEvent, client.MessageEvent, client.MessageCaughtUp}
	for i, k := range want {
		m, err := sub.Next()
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind != k || m.NodeID != follower.ID() {
			t.Fatalf("message %d: %+v, want %v from %s", i, m, k, follower.ID())
		}
		if k == client.MessageEvent && (m.Event.Revision != uint64(i) || m.Event.Stream != "sub-1") {
			t.Fatalf("event %+v", m.Event)
		}
		if k == client.MessageCaughtUp && (!m.HasRevision || m.Revision != 1) {
			t.Fatalf("caught up %+v", m)
		}
	}
	res, err := c.Append(ctx, "sub-1", client.Exact(1), oneEvent()[:1])
	if err != nil {
		t.Fatal(err)
	}
	m, err := sub.Next()
	if err != nil || m.Kind != client.MessageEvent || m.Event.ID != res.EventIDs[0] || m.Event.Revision != 2 {
		t.Fatalf("live event: %v %+v", err, m)
	}
	if _, err := c.Tombstone(ctx, "sub-1", client.Exact(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(); !errors.Is(err, client.ErrStreamTombstoned) {
		t.Fatalf("after tombstone: %v", err)
	}

	// Close ends a subscription blocked in Next.
	all, err := c.Subscribe(ctx, client.SubscribeOptions{FromEnd: true, Consistency: client.Stale})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := all.Next(); err != nil || m.Kind != client.MessageCaughtUp {
		t.Fatalf("from end: %v %+v", err, m)
	}
	done := make(chan error, 1)
	go func() {
		_, err := all.Next()
		done <- err
	}()
	_ = all.Close()
	if err := <-done; !errors.Is(err, client.ErrSubscriptionClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if _, err := c.Subscribe(ctx, client.SubscribeOptions{FromStart: true, FromEnd: true}); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("FromStart with FromEnd: %v", err)
	}
}

// TestSubscribeAcrossFailures: a subscriber to $all, started on a follower from the first event
// while 8 writers append, receives every acknowledged event exactly once and in position order
// across the catch-up/live hand-over, a leader kill, and the kill of the node it is subscribed
// to (it resumes on another node). Five nodes, so that a quorum survives both kills.
func TestSubscribeAcrossFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("five-node failover test")
	}
	tc, leader := mustNewCluster(t, 5)
	follower := tc.Followers(leader)[0]
	ctx := ctxTimeout(t, 90*time.Second)
	wc := newTestClient(t, tc.Addrs(), client.WithBackoff(20*time.Millisecond, 200*time.Millisecond), client.WithMaxAttempts(50))

	// History before the subscription starts, so that it has something to catch up on.
	for i := range 50 {
		if _, err := wc.Append(ctx, fmt.Sprintf("w-%d", i%8), client.Any(), oneEvent()[:1]); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		nAck  atomic.Int64
	)
	load, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for load.Err() == nil {
				ev := client.EventData{ID: client.NewEventID(), Type: "Load"}
				for load.Err() == nil { // the same id until acknowledged: retries are idempotent
					if _, err := wc.Append(load, fmt.Sprintf("w-%d", w), client.Any(), []client.EventData{ev}); err == nil {
						mu.Lock()
						acked[ev.ID] = true
						mu.Unlock()
						nAck.Add(1)
						break
					}
				}
			}
		}()
	}
	defer func() { stopLoad(); wg.Wait() }()

	sc := newTestClient(t, tc.Addrs(), client.WithBackoff(20*time.Millisecond, 300*time.Millisecond))
	sub, err := sc.Subscribe(ctx, client.SubscribeOptions{FromStart: true, Address: follower.Addr,
		HeartbeatInterval: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	type delivered struct {
		id   string
		pos  uint64
		node string
	}
	var (
		smu      sync.Mutex
		got      []delivered
		caughtUp bool
		lastNode string
		subErr   error
	)
	progress := make(chan struct{}, 1)
	go func() {
		for {
			m, err := sub.Next()
			smu.Lock()
			switch {
			case err != nil:
				subErr = err
			case m.Kind == client.MessageEvent:
				got = append(got, delivered{m.Event.ID, m.Position, m.NodeID})
			case m.Kind == client.MessageCaughtUp:
				caughtUp = true
			}
			if m.NodeID != "" {
				lastNode = m.NodeID
			}
			smu.Unlock()
			select {
			case progress <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	// waitFor waits until cond holds, re-checking on every subscription message and every
	// 50 ms (acknowledgements do not signal); the test's deadline bounds it.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			smu.Lock()
			ok, serr := cond(), subErr
			smu.Unlock()
			if ok {
				return
			}
			if serr != nil {
				t.Fatalf("waiting for %s: subscription ended: %v", what, serr)
			}
			select {
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v", what, ctx.Err())
			case <-progress:
			case <-tick.C:
			}
		}
	}
	acks := func(n int64) func() bool { return func() bool { return nAck.Load() >= n } }

	waitFor("caught up under load", func() bool { return caughtUp && nAck.Load() >= 100 })
	leader.Kill()
	newLeader := tc.WaitLeader(t)
	t.Logf("killed leader %s, new leader %s", leader.ID(), newLeader.ID())
	waitFor("appends after the leader change", acks(nAck.Load()+100))

	smu.Lock()
	served := lastNode
	smu.Unlock()
	var victim *testcluster.Node
	for _, n := range tc.Live() {
		if n.ID() == served {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("subscription served by %q, not a live node", served)
	}
	victim.Kill()
	tc.WaitLeader(t)
	t.Logf("killed %s, the node serving the subscription", victim.ID())
	waitFor("appends after the second kill", acks(nAck.Load()+100))
	stopLoad()
	wg.Wait()

	marker, err := wc.Append(ctx, "marker", client.Any(), oneEvent()[:1])
	if err != nil {
		t.Fatal(err)
	}
	waitFor("the marker", func() bool { return len(got) > 0 && got[len(got)-1].pos >= marker.LastPosition })

	smu.Lock()
	defer smu.Unlock()
	seen := map[string]int{}
	nodes := map[string]bool{}
	for i, d := range got {
		if d.pos != uint64(i+1) {
			t.Fatalf("delivery %d has position %d: gap or duplicate", i, d.pos)
		}
		seen[d.id]++
		nodes[d.node] = true
	}
	mu.Lock()
	for id := range acked {
		if seen[id] != 1 {
			t.Fatalf("acknowledged event %s delivered %d times", id, seen[id])
		}
	}
	nacked := len(acked)
	mu.Unlock()
	resumes, lastErr := sub.Resumes()
	if resumes == 0 || len(nodes) < 2 {
		t.Fatalf("subscription did not move: %d resumes, served by %v", resumes, nodes)
	}
	t.Logf("%d events delivered in order (%d acknowledged by 8 writers), served by %d nodes, %d resumes (last: %v)",
		len(got), nacked, len(nodes), resumes, lastErr)
}
