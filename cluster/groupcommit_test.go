package cluster

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// groupCommitRun runs clients closed-loop proposers (each proposes, waits, proposes again) for
// rounds proposals each on a single node with the given in-flight window, and returns the raft
// entries the batcher sent and the proposals they carried. It checks that every entry is sent
// holding a slot of the window.
func groupCommitRun(t *testing.T, window, clients, rounds int) (entries, requests int64) {
	cfg := testConfig(t, "solo", t.TempDir(), nil, 1)
	cfg.MaxInflightEntries = window
	var e, r atomic.Int64
	var node atomic.Pointer[Node]
	cfg.OnBatch = func(k, _ int) {
		e.Add(1)
		r.Add(int64(k))
		if nd := node.Load(); nd != nil {
			if held := len(nd.slots); held < 1 || held > window {
				t.Errorf("entry sent with %d slots of %d held", held, window)
			}
		}
	}
	n := mustNewNode(t, cfg)
	node.Store(n.Node)
	waitLeader(t, []*testNode{n})
	e.Store(0)
	r.Store(0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	positions := map[uint64]bool{}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				res, err := n.Propose(ctxT(t, 10*time.Second), appendReq("s", uint64(c*rounds+i+1)))
				if err != nil || res.Err != nil {
					t.Errorf("propose: %v %v", err, res.Err)
					return
				}
				mu.Lock()
				if p := res.Streams[0].FirstPosition; positions[p] {
					t.Errorf("position %d given twice", p)
				} else {
					positions[p] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return e.Load(), r.Load()
}

// TestGroupCommit: with a window of one raft entry in flight, proposals that arrive while an
// entry is on its way wait and leave together in the next one: 16 closed-loop proposers settle
// into two cohorts that alternate, about 8 proposals per entry. Windows of 2 (the default) and
// 64 are logged for comparison, not asserted, as they depend on timing.
func TestGroupCommit(t *testing.T) {
	c, err := testConfig(t, "x", t.TempDir(), nil, 1).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxInflightEntries != 2 {
		t.Fatalf("default MaxInflightEntries = %d, want 2", c.MaxInflightEntries)
	}
	const clients, rounds = 16, 30
	entries, requests := groupCommitRun(t, 1, clients, rounds)
	if requests != clients*rounds {
		t.Fatalf("%d requests in entries, want %d", requests, clients*rounds)
	}
	perEntry := float64(requests) / float64(entries)
	two, twoReq := groupCommitRun(t, 2, clients, rounds)
	wide, wideReq := groupCommitRun(t, 64, clients, rounds)
	t.Logf("%d closed-loop proposers, proposals per entry: %.1f with window 1, %.1f with 2, %.1f with 64", clients,
		perEntry, float64(twoReq)/float64(two), float64(wideReq)/float64(wide))
	if perEntry < clients/4 {
		t.Fatalf("window 1: %.1f proposals per raft entry from %d closed-loop proposers: not grouped", perEntry, clients)
	}
}
