package api

import (
	"slices"
	"testing"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// TestCompactedEventsLeaveAllReadsAndSubscriptions: a tombstone hides the stream's events from
// $all reads and subscriptions at once, and a compaction that then redacts them changes no
// result: the compaction marker is never shown, the tombstone record and every other event stay,
// positions do not change.
func TestCompactedEventsLeaveAllReadsAndSubscriptions(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node)
	mustAppend(t, ts.events, "gone", evt(1, "A"), evt(2, "A")) // positions 1, 2
	mustAppend(t, ts.events, "kept", evt(3, "B"))              // 3
	node.tombstone(t, "gone")                                  // 4
	// A subscriber before the compaction already misses the tombstoned stream's events (and its
	// live reads fill the tail cache, which the compaction must invalidate).
	early := subscribe(t, ts, &cairnpb.SubscribeRequest{})
	if evs, _ := recvUntil(t, early, 4); !slices.Equal(positions(evs), []uint64{3, 4}) {
		t.Fatalf("subscriber before compaction got %v", positions(evs))
	}
	if got, want := readAllPositions(t, ts, nil), []uint64{3, 4}; !slices.Equal(got, want) {
		t.Fatalf("before compaction $all positions %v, want %v", got, want)
	}
	node.apply(t, &fsmpb.Request{Kind: &fsmpb.Request_Compact{Compact: &fsmpb.CompactRequest{}}}) // 5
	mustAppend(t, ts.events, "kept", evt(4, "B"))                                                 // 6

	if got, want := readAllPositions(t, ts, nil), []uint64{3, 4, 6}; !slices.Equal(got, want) {
		t.Fatalf("after compaction $all positions %v, want %v", got, want)
	}
	// A page that holds only compacted records still moves the checkpoint past them.
	resp, err := ts.events.ReadAll(ctxT(t), &cairnpb.ReadAllRequest{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if p := positions(resp.GetEvents()); !slices.Equal(p, []uint64{3}) {
		t.Fatalf("first page of one: %v, want [3]", p)
	}
	st := subscribe(t, ts, &cairnpb.SubscribeRequest{})
	evs, _ := recvUntil(t, st, 6)
	if got, want := positions(evs), []uint64{3, 4, 6}; !slices.Equal(got, want) {
		t.Fatalf("subscription delivered %v, want %v", got, want)
	}
}
