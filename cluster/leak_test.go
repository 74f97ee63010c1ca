package cluster

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// No goroutine outlives a node's Close: raft, gossip, the batcher, the resolver, the leader and
// membership loops, the verifier and the peer connections all stop.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	nodes := mustNewCluster(t, 3)
	leader := waitLeader(t, nodes)
	if _, err := leader.Propose(ctxT(t, 5*time.Second), appendReq("s", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.ReadFence(context.Background(), ReadOptions{Consistency: Linearizable}); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Status(ctxT(t, 5*time.Second), true); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Logf("close %s: %v", n.ID(), err)
		}
	}
	// memberlist's Shutdown does not wait for a probe already under way: that goroutine ends by
	// itself within one probe interval (a library detail, not ours to fix), so it is ignored.
	goleak.VerifyNone(t, before, goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}
