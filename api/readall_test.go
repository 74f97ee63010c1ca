package api

import (
	"slices"
	"testing"

	"github.com/cairndb/cairn/api/cairnpb"
)

// populate writes, in this order (position: stream/type [tags]):
//
//	1 order-1/OrderPlaced [eu vip]   2 order-1/OrderShipped [eu]   3 user-1/UserCreated [vip]
//	4 order-2/OrderPlaced [us]       5 order-2/$tombstone           6 user-2/UserCreated
//
// The tombstone hides order-2's event (position 4) everywhere, $all included.
func populate(t *testing.T, ts *testServer) {
	t.Helper()
	mustAppend(t, ts.events, "order-1", evt(1, "OrderPlaced", "eu", "vip"), evt(2, "OrderShipped", "eu"))
	mustAppend(t, ts.events, "user-1", evt(3, "UserCreated", "vip"))
	mustAppend(t, ts.events, "order-2", evt(4, "OrderPlaced", "us"))
	ts.node.tombstone(t, "order-2")
	mustAppend(t, ts.events, "user-2", evt(5, "UserCreated"))
}

func TestReadAllFilter(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	populate(t, ts)
	ctx := ctxT(t)
	bwd := cairnpb.Direction_DIRECTION_BACKWARD
	for _, c := range []struct {
		name       string
		req        *cairnpb.ReadAllRequest
		positions  []uint64
		checkpoint uint64
		end        bool
	}{
		{"everything", &cairnpb.ReadAllRequest{}, []uint64{1, 2, 3, 5, 6}, 6, true},
		{"stream prefix includes tombstones", &cairnpb.ReadAllRequest{Filter: &cairnpb.Filter{
			StreamPrefixes: []string{"order-"}}}, []uint64{1, 2, 5}, 6, true},
		{"any of several prefixes", &cairnpb.ReadAllRequest{Filter: &cairnpb.Filter{
			StreamPrefixes: []string{"user-2", "order-1"}}}, []uint64{1, 2, 6}, 6, true},
		{"exact type", &cairnpb.ReadAllRequest{Filter: &cairnpb.Filter{
			EventTypes: []string{"OrderPlaced"}}}, []uint64{1}, 6, true},
		{"exact type is not a prefix", &cairnpb.ReadAllRequest{Filter: &cairnpb.Filter{
			EventTypes: []string{"Order"}}}, []uint64{}, 6, true},
		{"type prefix", &cairnpb.ReadAllRequest{Filter: &cairnpb.Filter{
			EventTypePrefixes: []string{"User"}}}, []uint64{3, 6}, 6, true},
		{"tombstones by type", &cairnpb.ReadAllRequest{Filter: &cairnpb.Filter{
			EventTypes: []string{TombstoneEventType}}}, []uint64{5}, 6, true},
		{"every tag required", &cairnpb.ReadAllRequest{Filter: &cairnpb.Filter{
			Tags: []string{"vip", "eu"}}}, []uint64{1}, 6, true},
		{"one tag", &cairnpb.ReadAllRequest{Filter: &cairnpb.Filter{
			Tags: []string{"vip"}}}, []uint64{1, 3}, 6, true},
		{"fields combine with and", &cairnpb.ReadAllRequest{Filter: &cairnpb.Filter{
			StreamPrefixes: []string{"order-"}, EventTypePrefixes: []string{"Order"}}}, []uint64{1, 2}, 6, true},
		{"backward", &cairnpb.ReadAllRequest{FromEnd: true, Direction: bwd, Filter: &cairnpb.Filter{
			StreamPrefixes: []string{"user-"}}}, []uint64{6, 3}, 1, true},
		{"backward from a position", &cairnpb.ReadAllRequest{FromPosition: 4, Direction: bwd, Limit: 2},
			[]uint64{3, 2}, 2, false},
		{"backward from the start", &cairnpb.ReadAllRequest{Direction: bwd}, []uint64{}, 0, true},
		{"forward from the end", &cairnpb.ReadAllRequest{FromEnd: true}, []uint64{6}, 6, true},
		{"from a position", &cairnpb.ReadAllRequest{FromPosition: 3, Limit: 2}, []uint64{3, 5}, 5, false},
		{"beyond the end", &cairnpb.ReadAllRequest{FromPosition: 10}, []uint64{}, 9, true},
		{"limit stops the scan", &cairnpb.ReadAllRequest{Limit: 1, Filter: &cairnpb.Filter{
			StreamPrefixes: []string{"user-"}}}, []uint64{3}, 3, false},
		{"resume after the checkpoint", &cairnpb.ReadAllRequest{FromPosition: 4, Limit: 1, Filter: &cairnpb.Filter{
			StreamPrefixes: []string{"user-"}}}, []uint64{6}, 6, true},
	} {
		r, err := ts.events.ReadAll(ctx, c.req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := positions(r.GetEvents()); !slices.Equal(got, c.positions) || r.GetCheckpointPosition() != c.checkpoint || r.GetEndOfLog() != c.end {
			t.Errorf("%s: positions %v checkpoint %d end %v, want %v checkpoint %d end %v", c.name,
				got, r.GetCheckpointPosition(), r.GetEndOfLog(), c.positions, c.checkpoint, c.end)
		}
	}

	r, err := ts.events.ReadAll(ctx, &cairnpb.ReadAllRequest{FromPosition: 5, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	tomb := r.GetEvents()[0]
	if tomb.GetType() != TombstoneEventType || tomb.GetStream() != "order-2" || tomb.GetId() != "" || tomb.GetRevision() != 1 {
		t.Fatalf("tombstone record %v", tomb)
	}
}

// TestReadAllScanBound: a sparse filter stops after MaxScanRecords records and reports how far it
// got, so the client resumes there instead of the server scanning the whole log in one call.
func TestReadAllScanBound(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"), func(c *Config) { c.MaxScanRecords = 2 })
	populate(t, ts)
	ctx := ctxT(t)
	filter := &cairnpb.Filter{EventTypes: []string{"UserCreated"}}
	type page struct {
		positions  []uint64
		checkpoint uint64
		end        bool
	}
	want := []page{{[]uint64{}, 2, false}, {[]uint64{3}, 4, false}, {[]uint64{6}, 6, true}}
	from := uint64(0)
	for i, w := range want {
		r, err := ts.events.ReadAll(ctx, &cairnpb.ReadAllRequest{FromPosition: from, Filter: filter})
		if err != nil {
			t.Fatal(err)
		}
		got := page{positions(r.GetEvents()), r.GetCheckpointPosition(), r.GetEndOfLog()}
		if !slices.Equal(got.positions, w.positions) || got.checkpoint != w.checkpoint || got.end != w.end {
			t.Fatalf("page %d from %d: %+v, want %+v", i, from, got, w)
		}
		from = r.GetCheckpointPosition() + 1
	}
	// Backward, the same bound applies.
	r, err := ts.events.ReadAll(ctx, &cairnpb.ReadAllRequest{FromEnd: true, Direction: cairnpb.Direction_DIRECTION_BACKWARD,
		Filter: &cairnpb.Filter{EventTypes: []string{"OrderShipped"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetEvents()) != 0 || r.GetCheckpointPosition() != 5 || r.GetEndOfLog() {
		t.Fatalf("backward bounded scan: %v checkpoint %d end %v", positions(r.GetEvents()), r.GetCheckpointPosition(), r.GetEndOfLog())
	}
}

func TestReadAllEmptyLog(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	ctx := ctxT(t)
	for _, req := range []*cairnpb.ReadAllRequest{{}, {FromEnd: true},
		{FromEnd: true, Direction: cairnpb.Direction_DIRECTION_BACKWARD}} {
		r, err := ts.events.ReadAll(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.GetEvents()) != 0 || !r.GetEndOfLog() || r.GetCheckpointPosition() != 0 {
			t.Fatalf("%v on an empty log: %v", req, r)
		}
	}
}
