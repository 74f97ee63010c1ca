package systemtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/localcluster"
)

// Issue 4 (subscriptions), with real processes: a client subscribed to $all from the start on a
// follower, while 8 clients append, receives every acknowledged event exactly once and in
// position order, across kill -9 and restart of the leader and then of the node serving the
// subscription (the client resumes on another node by itself).
func TestSubscribeAcrossKills(t *testing.T) {
	c := mustStartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var follower *localcluster.Node
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.GRPCAddr
		if n != leader && follower == nil {
			follower = n
		}
	}

	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		nAck  atomic.Int64
	)
	load, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 4))
			for load.Err() == nil {
				id := newUUID()
				if _, ok := appendUntilAcked(load, c, rng, fmt.Sprintf("sub-%d", i), id); !ok {
					return
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
				nAck.Add(1)
			}
		}()
	}
	defer func() { stopLoad(); wg.Wait() }()

	sc, err := client.New(addrs, client.WithBackoff(20*time.Millisecond, 300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sub, err := sc.Subscribe(ctx, client.SubscribeOptions{FromStart: true, Address: follower.GRPCAddr,
		HeartbeatInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var (
		smu      sync.Mutex
		ids      []string
		poss     []uint64
		lastNode string
		subErr   error
	)
	go func() {
		for {
			m, err := sub.Next()
			smu.Lock()
			if err != nil {
				subErr = err
				smu.Unlock()
				return
			}
			if m.Kind == client.MessageEvent {
				ids, poss = append(ids, m.Event.ID), append(poss, m.Position)
			}
			lastNode = m.NodeID
			smu.Unlock()
		}
	}()
	// waitFor polls a condition (acknowledgements and deliveries do not signal), bounded by the
	// test's deadline.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for ctx.Err() == nil {
			smu.Lock()
			ok, serr := cond(), subErr
			smu.Unlock()
			if ok {
				return
			}
			if serr != nil {
				t.Fatalf("waiting for %s: subscription ended: %v", what, serr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("waiting for %s: %v", what, ctx.Err())
	}
	acks := func(n int64) func() bool { return func() bool { return nAck.Load() >= n } }
	nodeByID := func(id string) *localcluster.Node {
		for _, n := range c.Nodes {
			if n.ID == id {
				return n
			}
		}
		t.Fatalf("no node %q", id)
		return nil
	}
	killAndRestart := func(n *localcluster.Node, why string) {
		t.Helper()
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
		var rest []*localcluster.Node
		for _, o := range c.Nodes {
			if o != n {
				rest = append(rest, o)
			}
		}
		if _, err := c.WaitLeader(ctx, rest...); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed %s (%s)", n.ID, why)
		waitFor("appends without "+n.ID, acks(nAck.Load()+100))
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
	}

	waitFor("deliveries under load", func() bool { return len(ids) >= 100 && nAck.Load() >= 100 })
	killAndRestart(leader, "the leader")
	smu.Lock()
	serving := lastNode
	smu.Unlock()
	killAndRestart(nodeByID(serving), "the node serving the subscription")
	waitFor("appends after the restarts", acks(nAck.Load()+100))
	stopLoad()
	wg.Wait()

	marker, ok := appendUntilAcked(ctx, c, rand.New(rand.NewPCG(99, 4)), "marker", newUUID())
	if !ok {
		t.Fatal("marker append not acknowledged")
	}
	waitFor("the marker", func() bool { return len(poss) > 0 && poss[len(poss)-1] >= marker.GetLastPosition() })

	smu.Lock()
	defer smu.Unlock()
	seen := map[string]int{}
	for i, p := range poss {
		if p != uint64(i+1) {
			t.Fatalf("delivery %d has position %d: gap or duplicate", i, p)
		}
		seen[ids[i]]++
	}
	mu.Lock()
	defer mu.Unlock()
	for id := range acked {
		if seen[id] != 1 {
			t.Fatalf("acknowledged event %s delivered %d times", id, seen[id])
		}
	}
	resumes, lastErr := sub.Resumes()
	if resumes == 0 {
		t.Fatal("the subscription never resumed although its node was killed")
	}
	t.Logf("%d events delivered in order, %d acknowledged; %d resumes (last: %v)", len(poss), len(acked), resumes, lastErr)
}
