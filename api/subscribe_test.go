package api

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// subscribe opens a subscription that ends with the test.
func subscribe(t *testing.T, ts *testServer, req *cairnpb.SubscribeRequest) grpc.ServerStreamingClient[cairnpb.SubscribeResponse] {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	t.Cleanup(cancel)
	st, err := ts.events.Subscribe(ctx, req)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return st
}

// recv returns the next message, failing the test on an error.
func recv(t *testing.T, st grpc.ServerStreamingClient[cairnpb.SubscribeResponse]) *cairnpb.SubscribeResponse {
	t.Helper()
	m, err := st.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return m
}

// recvUntil collects events until one at position >= last arrived, checking the invariants that
// hold for every subscription: events in increasing position order, checkpoints strictly
// increasing and beyond every event sent, applied_index at least every event's log index.
func recvUntil(t *testing.T, st grpc.ServerStreamingClient[cairnpb.SubscribeResponse], last uint64) (evs []*cairnpb.RecordedEvent, msgs []*cairnpb.SubscribeResponse) {
	t.Helper()
	var known, applied uint64
	for {
		m := recv(t, st)
		msgs = append(msgs, m)
		if m.GetNodeId() == "" || m.GetAppliedIndex() < applied {
			t.Fatalf("message %v: node id missing or applied index went back from %d", m, applied)
		}
		applied = m.GetAppliedIndex()
		switch k := m.GetKind().(type) {
		case *cairnpb.SubscribeResponse_Event, *cairnpb.SubscribeResponse_Events:
			for _, e := range eventsOf(m) {
				if e.GetPosition() <= known && len(evs) > 0 {
					t.Fatalf("event at position %d after position %d was known", e.GetPosition(), known)
				}
				if e.GetLogIndex() > m.GetAppliedIndex() {
					t.Fatalf("event of log index %d in a message with applied index %d", e.GetLogIndex(), m.GetAppliedIndex())
				}
				known = e.GetPosition()
				evs = append(evs, e)
			}
			if known >= last {
				return evs, msgs
			}
		case *cairnpb.SubscribeResponse_Checkpoint_:
			if k.Checkpoint.GetPosition() <= known {
				t.Fatalf("checkpoint %d not beyond %d", k.Checkpoint.GetPosition(), known)
			}
			known = k.Checkpoint.GetPosition()
		case *cairnpb.SubscribeResponse_CaughtUp_:
			known = max(known, k.CaughtUp.GetPosition())
		}
	}
}

// eventsOf returns the events of an event or events message, nil for other kinds.
func eventsOf(m *cairnpb.SubscribeResponse) []*cairnpb.RecordedEvent {
	if e := m.GetEvent(); e != nil {
		return []*cairnpb.RecordedEvent{e}
	}
	return m.GetEvents().GetEvents()
}

// firstEvent returns the first event of an event or events message.
func firstEvent(t *testing.T, m *cairnpb.SubscribeResponse) *cairnpb.RecordedEvent {
	t.Helper()
	evs := eventsOf(m)
	if len(evs) == 0 {
		t.Fatalf("want an event, got %v", m)
	}
	return evs[0]
}

// TestSubscribeHandOverUnderConcurrentAppends subscribes to $all and to one stream from the start
// while writers append: history, the hand-over and live delivery together must give every
// position exactly once, in order, with one caught_up that splits them.
func TestSubscribeHandOverUnderConcurrentAppends(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	for i := range 100 { // history to catch up on
		mustAppend(t, ts.events, fmt.Sprintf("w-%d", i%4), evt(10_000+i, "T"))
	}
	all := subscribe(t, ts, &cairnpb.SubscribeRequest{FromStart: true})
	one := subscribe(t, ts, &cairnpb.SubscribeRequest{Stream: "w-1", FromStart: true})
	const writers, perWriter = 4, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if _, err := ts.events.Append(ctxT(t), &cairnpb.AppendRequest{Stream: fmt.Sprintf("w-%d", w),
					Expected: anyRev(), Events: []*cairnpb.EventData{evt(w*1000+i, "T")}}); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	marker := mustAppend(t, ts.events, "w-1", evt(20_000, "Marker"))
	total := marker.GetLastPosition()

	evs, msgs := recvUntil(t, all, total)
	if uint64(len(evs)) != total {
		t.Fatalf("$all subscriber got %d events, want %d", len(evs), total)
	}
	for i, e := range evs {
		if e.GetPosition() != uint64(i+1) {
			t.Fatalf("event %d at position %d: gap or duplicate", i, e.GetPosition())
		}
	}
	caughtUps := 0
	for i, m := range msgs {
		if cu := m.GetCaughtUp(); cu != nil {
			caughtUps++
			for _, before := range msgs[:i] {
				for _, e := range eventsOf(before) {
					if e.GetPosition() > cu.GetPosition() {
						t.Fatalf("event %d sent before caught_up at %d", e.GetPosition(), cu.GetPosition())
					}
				}
			}
		}
	}
	if caughtUps == 0 {
		t.Fatal("no caught_up")
	}
	if batches := len(msgs) - caughtUps; batches >= len(evs) {
		t.Fatalf("%d events in %d messages: the catch-up did not pack events", len(evs), batches)
	}

	sevs, _ := recvUntil(t, one, total)
	if len(sevs) != 100/4+perWriter+1 {
		t.Fatalf("stream subscriber got %d events, want %d", len(sevs), 100/4+perWriter+1)
	}
	for i, e := range sevs {
		if e.GetRevision() != uint64(i) || e.GetStream() != "w-1" {
			t.Fatalf("stream event %d: %s@%d", i, e.GetStream(), e.GetRevision())
		}
	}
	if st := ts.svc.SubscriptionStats(); st.Active != 2 || st.Started != 2 || st.Events < total {
		t.Fatalf("stats %+v", st)
	}
}

// TestSubscribeCheckpointsWhileIdle: a filter that matches nothing still yields checkpoints as the
// log grows, strictly increasing, then heartbeats while the log is idle; no checkpoint repeats.
func TestSubscribeCheckpointsWhileIdle(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	mustAppend(t, ts.events, "a", evt(1, "T"))
	st := subscribe(t, ts, &cairnpb.SubscribeRequest{FromStart: true,
		Filter:             &cairnpb.Filter{EventTypes: []string{"Nothing"}},
		CheckpointInterval: durationpb.New(minSubscribeInterval),
		HeartbeatInterval:  durationpb.New(minSubscribeInterval)})
	if cu := recv(t, st).GetCaughtUp(); cu == nil || cu.GetPosition() != 1 || cu.Revision != nil {
		t.Fatalf("want caught_up at 1, got %v", cu)
	}
	for i := range 5 {
		mustAppend(t, ts.events, "a", evt(2+i, "T"))
	}
	last, heartbeats := uint64(1), 0
	for last < 6 || heartbeats < 2 {
		m := recv(t, st)
		switch {
		case m.GetCheckpoint() != nil:
			p := m.GetCheckpoint().GetPosition()
			if p <= last || p > 6 {
				t.Fatalf("checkpoint %d after %d (log ends at 6)", p, last)
			}
			last = p
		case m.GetHeartbeat() != nil:
			if last == 6 {
				heartbeats++ // idle: heartbeats, and no checkpoint repeats
			}
		default:
			t.Fatalf("unexpected message %v", m)
		}
	}
}

// TestSubscribeResumeFromCheckpoint: a filtered subscription that resumes from a checkpoint (or
// the last event) misses nothing and repeats nothing.
func TestSubscribeResumeFromCheckpoint(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	filter := &cairnpb.Filter{StreamPrefixes: []string{"keep-"}}
	n := 0
	appendMix := func(k int) {
		for range k {
			n++
			stream := "skip"
			if n%3 == 0 {
				stream = "keep-" + fmt.Sprint(n%2)
			}
			mustAppend(t, ts.events, stream, evt(n, "T"))
		}
	}
	appendMix(30)
	ctx, cancel := context.WithCancel(ctxT(t))
	st, err := ts.events.Subscribe(ctx, &cairnpb.SubscribeRequest{Filter: filter,
		CheckpointInterval: durationpb.New(minSubscribeInterval)})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	resume := uint64(0)
	for {
		m := recv(t, st)
		for _, e := range eventsOf(m) {
			got = append(got, e.GetPosition())
			resume = e.GetPosition()
		}
		if cu := m.GetCaughtUp(); cu != nil {
			resume = cu.GetPosition()
			break
		}
	}
	appendMix(10) // the subscriber sees these through checkpoints only if it keeps reading
	for resume < uint64(n) {
		m := recv(t, st)
		for _, e := range eventsOf(m) {
			got = append(got, e.GetPosition())
			resume = e.GetPosition()
		}
		if c := m.GetCheckpoint(); c != nil {
			resume = c.GetPosition()
		}
	}
	cancel()
	appendMix(20) // written while nobody listens
	st2 := subscribe(t, ts, &cairnpb.SubscribeRequest{From: resume, Filter: filter})
	evs, _ := recvUntil(t, st2, uint64(n))
	for _, e := range evs {
		got = append(got, e.GetPosition())
	}
	want := readAllPositions(t, ts, filter)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("subscription with a resume delivered\n%v\nwant\n%v", got, want)
	}
}

func readAllPositions(t *testing.T, ts *testServer, f *cairnpb.Filter) []uint64 {
	t.Helper()
	resp, err := ts.events.ReadAll(ctxT(t), &cairnpb.ReadAllRequest{Filter: f, Limit: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	return positions(resp.GetEvents())
}

func TestSubscribeStreamStartsAndTombstone(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	mustAppend(t, ts.events, "s", evt(1, "A"), evt(2, "B"), evt(3, "C"))

	// from is exclusive.
	st := subscribe(t, ts, &cairnpb.SubscribeRequest{Stream: "s", From: 0})
	evs, _ := recvUntil(t, st, 3)
	if fmt.Sprint(revisions(evs)) != "[1 2]" {
		t.Fatalf("from revision 0 (exclusive): %v", revisions(evs))
	}
	// from_end delivers only later events; caught_up names the last revision.
	end := subscribe(t, ts, &cairnpb.SubscribeRequest{Stream: "s", FromEnd: true})
	if cu := recv(t, end).GetCaughtUp(); cu == nil || cu.Revision == nil || *cu.Revision != 2 || cu.GetPosition() != 3 {
		t.Fatalf("caught_up %v", cu)
	}
	// A stream that does not exist yet is waited for.
	later := subscribe(t, ts, &cairnpb.SubscribeRequest{Stream: "later", FromStart: true})
	if cu := recv(t, later).GetCaughtUp(); cu == nil || cu.Revision != nil {
		t.Fatalf("caught_up on a missing stream %v", cu)
	}
	mustAppend(t, ts.events, "s", evt(4, "D"))
	mustAppend(t, ts.events, "later", evt(5, "E"))
	if e := firstEvent(t, recv(t, end)); e.GetRevision() != 3 || e.GetStream() != "s" {
		t.Fatalf("live event %v", e)
	}
	if e := firstEvent(t, recv(t, later)); e.GetRevision() != 0 || e.GetStream() != "later" {
		t.Fatalf("event of the new stream %v", e)
	}

	// A tombstone ends a live stream subscription; subscribing to a tombstoned stream fails.
	ts.node.tombstone(t, "s")
	for {
		m, err := end.Recv()
		if err != nil {
			st := wantStatus(t, err, codes.FailedPrecondition, ReasonStreamTombstoned)
			if !strings.Contains(st.Message(), "s") {
				t.Fatalf("message %q", st.Message())
			}
			break
		}
		if len(eventsOf(m)) > 0 {
			t.Fatalf("event after the tombstone: %v", m)
		}
	}
	_, err := subscribe(t, ts, &cairnpb.SubscribeRequest{Stream: "s", FromStart: true}).Recv()
	wantStatus(t, err, codes.FailedPrecondition, ReasonStreamTombstoned)
	// $all shows the tombstone record like reads do.
	all := subscribe(t, ts, &cairnpb.SubscribeRequest{From: 5})
	if e := firstEvent(t, recv(t, all)); e.GetType() != TombstoneEventType || e.GetStream() != "s" {
		t.Fatalf("tombstone in $all: %v", e)
	}
	if cu := recv(t, all).GetCaughtUp(); cu.GetPosition() != 6 {
		t.Fatalf("caught_up %v", cu)
	}
}

func TestSubscribeValidation(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	for _, c := range []struct {
		req   *cairnpb.SubscribeRequest
		field string
	}{
		{&cairnpb.SubscribeRequest{FromStart: true, FromEnd: true}, "from_end"},
		{&cairnpb.SubscribeRequest{From: 3, FromStart: true}, "from"},
		{&cairnpb.SubscribeRequest{Stream: "bad\x01name"}, "stream"},
		{&cairnpb.SubscribeRequest{Filter: &cairnpb.Filter{Tags: []string{""}}}, "filter.tags[0]"},
		{&cairnpb.SubscribeRequest{HeartbeatInterval: durationpb.New(-1)}, "heartbeat_interval"},
		{&cairnpb.SubscribeRequest{Options: &cairnpb.ReadOptions{Consistency: 42}}, "options.consistency"},
	} {
		_, err := subscribe(t, ts, c.req).Recv()
		br := detailOf[*errdetails.BadRequest](t, wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument))
		if v := br.GetFieldViolations(); len(v) != 1 || v[0].GetField() != c.field {
			t.Fatalf("request %v: violations %v, want one on %s", c.req, v, c.field)
		}
	}
	// "$all" is the global log, like "".
	mustAppend(t, ts.events, "x", evt(1, "A"))
	if e := firstEvent(t, recv(t, subscribe(t, ts, &cairnpb.SubscribeRequest{Stream: AllStreamName, FromStart: true}))); e.GetPosition() != 1 {
		t.Fatalf("$all by name: %v", e)
	}
}

// TestSubscribeDrain: a node that stops serving ends its subscriptions with SHUTTING_DOWN and
// refuses new ones until it serves again.
func TestSubscribeDrain(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	st := subscribe(t, ts, &cairnpb.SubscribeRequest{FromStart: true})
	if recv(t, st).GetCaughtUp() == nil {
		t.Fatal("want caught_up")
	}
	ts.svc.SetServing(false)
	_, err := st.Recv()
	wantStatus(t, err, codes.Unavailable, ReasonShuttingDown)
	_, err = subscribe(t, ts, &cairnpb.SubscribeRequest{}).Recv()
	wantStatus(t, err, codes.Unavailable, ReasonShuttingDown)
	ts.svc.SetServing(true)
	if recv(t, subscribe(t, ts, &cairnpb.SubscribeRequest{})).GetCaughtUp() == nil {
		t.Fatal("want caught_up after serving again")
	}
}

// TestSubscribeLinearizableOnFollower: a follower serves a linearizable subscription by getting
// a read index from the leader; with no leader known it refuses (NO_LEADER / NOT_LEADER).
func TestSubscribeLinearizableOnFollower(t *testing.T) {
	leader, follower := leaderAndFollower(t)
	follower.node.apply(t, &fsmpb.Request{Kind: &fsmpb.Request_Append{Append: &fsmpb.AppendRequest{Parts: []*fsmpb.StreamAppend{{
		Stream: "f", Expected: &fsmpb.ExpectedRevision{Kind: fsmpb.ExpectedRevision_KIND_ANY},
		Events: []*fsmpb.Event{{Id: idBytes(t, uuidN(1)), Type: "T"}}}}}}})
	st := subscribe(t, follower, &cairnpb.SubscribeRequest{FromStart: true})
	m := recv(t, st)
	if firstEvent(t, m).GetStream() != "f" || m.GetNodeId() != "n2" {
		t.Fatalf("first message %v", m)
	}
	if follower.svc.Stats().Forwarded != 1 {
		t.Fatalf("follower stats %+v: want one forwarded fence read", follower.svc.Stats())
	}
	if leader.svc.Stats().Forwarded != 0 {
		t.Fatal("the leader forwarded")
	}
	follower.node.setFollower("", "")
	_, err := subscribe(t, follower, &cairnpb.SubscribeRequest{}).Recv()
	if c := status.Code(err); c != codes.Unavailable {
		t.Fatalf("without a leader: %v", err)
	}
	// STALE needs no leader.
	if recv(t, subscribe(t, follower, &cairnpb.SubscribeRequest{FromEnd: true,
		Options: &cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_STALE}})).GetCaughtUp() == nil {
		t.Fatal("stale subscription on a follower without leader")
	}
}

// TestSlowSubscriberDoesNotBlockAppends: a subscriber that never reads fills its flow-control
// windows; appends and another subscriber go on regardless.
func TestSlowSubscriberDoesNotBlockAppends(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	stuck := subscribe(t, ts, &cairnpb.SubscribeRequest{FromStart: true}) // never read
	_ = stuck
	live := subscribe(t, ts, &cairnpb.SubscribeRequest{FromStart: true})
	big := make([]byte, 16<<10)
	const n = 200 // 3.2 MB, far beyond gRPC's stream and connection windows
	var last uint64
	for i := range n {
		resp, err := ts.events.Append(ctxT(t), &cairnpb.AppendRequest{Stream: "big", Expected: anyRev(),
			Events: []*cairnpb.EventData{{Id: uuidN(i + 1), Type: "T", Data: big}}})
		if err != nil {
			t.Fatalf("append %d with a stuck subscriber: %v", i, err)
		}
		last = resp.GetLastPosition()
	}
	evs, _ := recvUntil(t, live, last)
	if len(evs) != n {
		t.Fatalf("live subscriber got %d events, want %d", len(evs), n)
	}
}

func idBytes(t *testing.T, s string) []byte {
	t.Helper()
	id, err := parseUUID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id[:]
}

// TestTailCache: live reads come from the shared cache, which fills from the store in order,
// restarts where a live reader is when it was elsewhere, refuses positions behind it, and stays
// within its bounds.
func TestTailCache(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	for i := range 10 {
		mustAppend(t, ts.events, "c", evt(i+1, "T"))
	}
	store := ts.node.Store()
	var c tailCache
	recs, ok, err := c.read(store, 3, 10, 4)
	if err != nil || !ok || len(recs) != 4 || recs[0].rec.Position != 3 || recs[3].pb.GetPosition() != 6 {
		t.Fatalf("first read: %v %v %d", err, ok, len(recs))
	}
	if first, next := c.bounds(); first != 3 || next != 11 {
		t.Fatalf("cache holds [%d, %d), want [3, 11)", first, next)
	}
	// Bounded by upTo, served without a store read.
	if recs, ok, _ := c.read(store, 9, 9, 100); !ok || len(recs) != 1 || recs[0].rec.Position != 9 || c.fills.Load() != 1 {
		t.Fatalf("cached read: %v %d, %d fills", ok, len(recs), c.fills.Load())
	}
	if _, ok, _ := c.read(store, 2, 10, 4); ok {
		t.Fatal("a position behind the cache was served from it")
	}
	for i := range 5 {
		mustAppend(t, ts.events, "c", evt(100+i, "T"))
	}
	if recs, ok, _ := c.read(store, 11, 15, 100); !ok || len(recs) != 5 || recs[4].rec.Position != 15 {
		t.Fatalf("extension: %v %d", ok, len(recs))
	}
	// A live reader far ahead of the cache restarts it.
	for i := range 5 {
		mustAppend(t, ts.events, "c", evt(200+i, "T"))
	}
	if recs, ok, _ := c.read(store, 18, 20, 100); !ok || len(recs) != 3 || recs[0].rec.Position != 18 || c.resets.Load() != 1 {
		t.Fatalf("restart: %v %d, %d resets", ok, len(recs), c.resets.Load())
	}
	// Bounds: never more than twice the record bound after a fill.
	c.mu.Lock()
	for range 2*tailCacheRecords + 1 {
		c.recs = append(c.recs, c.recs[0])
	}
	c.mu.Unlock()
	first, next := c.bounds()
	_, _, _ = c.read(store, next, next, 1) // the fake records are not real positions; only the trim matters
	if f, n := c.bounds(); n-f > tailCacheRecords+1 || f <= first {
		t.Fatalf("after trim the cache holds [%d, %d)", f, n)
	}
}

// TestSubscribeFellBehind: a live subscriber that finds a large backlog is told fell_behind,
// keeps receiving every event in order from the store, and gets a caught_up again at the end.
func TestSubscribeFellBehind(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"), func(c *Config) { c.Subscribe.FellBehindRecords = 5 })
	st := subscribe(t, ts, &cairnpb.SubscribeRequest{FromStart: true})
	if recv(t, st).GetCaughtUp() == nil {
		t.Fatal("want caught_up")
	}
	evs := make([]*cairnpb.EventData, 300)
	for i := range evs {
		evs[i] = evt(i+1, "T")
	}
	mustAppend(t, ts.events, "burst", evs...)
	got, msgs := recvUntil(t, st, 300)
	if len(got) != 300 {
		t.Fatalf("got %d events", len(got))
	}
	var kinds []string
	for _, m := range msgs {
		switch {
		case m.GetFellBehind() != nil:
			kinds = append(kinds, "fell_behind")
		case m.GetCaughtUp() != nil:
			kinds = append(kinds, "caught_up")
		}
	}
	if len(kinds) == 0 || kinds[0] != "fell_behind" {
		t.Fatalf("markers %v, want fell_behind first", kinds)
	}
	if m := recv(t, st); m.GetCaughtUp().GetPosition() != 300 {
		t.Fatalf("after the backlog: %v, want caught_up at 300", m)
	}
	if s := ts.svc.SubscriptionStats(); s.FellBehind != 1 || s.CaughtUp != 2 || s.TailFills == 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestMoreStreamsThanWorkers: RPCs run on a pool of StreamWorkers goroutines (ServerOptions).
// Long-lived subscriptions beyond the pool must neither starve nor block other calls: each of
// StreamWorkers+8 concurrent subscriptions is served, and appends still go through.
func TestMoreStreamsThanWorkers(t *testing.T) {
	// One connection carries them all, so the per-connection subscription limit is raised.
	ts := mustNewServer(t, newFakeNode(t, "n1"), func(c *Config) { c.MaxSubscriptionsPerConn = StreamWorkers + 8 })
	first := mustAppend(t, ts.events, "s", evt(1, "T"))
	subs := make([]grpc.ServerStreamingClient[cairnpb.SubscribeResponse], StreamWorkers+8)
	for i := range subs {
		subs[i] = subscribe(t, ts, &cairnpb.SubscribeRequest{FromStart: true})
	}
	for _, s := range subs {
		recvUntil(t, s, first.GetLastPosition()) // every subscription is being served at once
	}
	second := mustAppend(t, ts.events, "s", evt(2, "T"))
	for i, s := range subs {
		if evs, _ := recvUntil(t, s, second.GetLastPosition()); len(evs) != 1 || evs[0].GetPosition() != second.GetLastPosition() {
			t.Fatalf("subscription %d: got %v, want the second event", i, evs)
		}
	}
}
