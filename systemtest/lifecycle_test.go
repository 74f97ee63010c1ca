package systemtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/client"
)

// Issue 4, acceptance points 3 and 4 with real processes: max_count, max_age, truncate_before,
// soft delete and tombstone behave as documented in reads (on the leader and on every follower),
// in $all, in subscriptions ($all and stream, catch-up and live) and in appends; subscriptions
// start at a commit time; and "as of T" reads return exactly the events committed at or before T.
func TestStreamLifecycleEndToEnd(t *testing.T) {
	c := mustStartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.GRPCAddr
	}
	cl, err := client.New(addrs, client.WithBackoff(20*time.Millisecond, 300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var lastIndex uint64
	appendN := func(stream string, n int) *client.AppendResult {
		t.Helper()
		var res *client.AppendResult
		for range n {
			r, err := cl.Append(ctx, stream, client.Any(), []client.EventData{{Type: "T", Data: []byte("{}")}})
			if err != nil {
				t.Fatalf("append to %s: %v", stream, err)
			}
			res, lastIndex = r, max(lastIndex, r.LogIndex)
		}
		return res
	}
	observe := func(r uint64) { lastIndex = max(lastIndex, r) }
	u := func(v uint64) *uint64 { return &v }

	// The streams and what each must show (visible revisions), built up step by step.
	appendN("mc", 5) // revisions 0-4
	r, err := cl.SetStreamMetadata(ctx, "mc", client.NoStream(), &client.StreamMetadata{MaxCount: u(2)})
	if err != nil {
		t.Fatal(err)
	}
	observe(r.LogIndex)
	appendN("mc", 1) // revision 5: max_count 2 now shows 4, 5
	appendN("tb", 5)
	if r, err = cl.SetStreamMetadata(ctx, "tb", client.Any(), &client.StreamMetadata{TruncateBefore: u(3)}); err != nil {
		t.Fatal(err)
	}
	observe(r.LogIndex)
	appendN("sd", 3)
	if _, err := cl.DeleteStream(ctx, "sd", client.Exact(1)); !errors.Is(err, client.ErrWrongExpectedRevision) {
		t.Fatalf("delete with a stale revision: %v", err)
	}
	d, err := cl.DeleteStream(ctx, "sd", client.Exact(2))
	if err != nil {
		t.Fatal(err)
	}
	observe(d.LogIndex)
	appendN("ts", 2)
	tomb, err := cl.Tombstone(ctx, "ts", client.Any())
	if err != nil {
		t.Fatal(err)
	}
	observe(tomb.LogIndex)
	want := map[string][]uint64{"mc": {4, 5}, "tb": {3, 4}}

	// Reads on every node (stale, after the last write) and linearizable ones agree.
	checkReads := func(when string) {
		t.Helper()
		for _, n := range c.Nodes {
			opts := client.ReadOptions{Consistency: client.Stale, MinLogIndex: lastIndex}
			for stream, revs := range want {
				rd, err := cl.Read(ctx, stream, opts, client.ToAddress(n.GRPCAddr))
				if err != nil {
					t.Fatalf("%s: read %s on %s: %v", when, stream, n.ID, err)
				}
				if got := eventRevisions(rd.Events); !slices.Equal(got, revs) {
					t.Fatalf("%s: %s on %s has revisions %v, want %v", when, stream, n.ID, got, revs)
				}
			}
			if _, err := cl.Read(ctx, "sd", opts, client.ToAddress(n.GRPCAddr)); want["sd"] == nil && !errors.Is(err, client.ErrStreamNotFound) {
				t.Fatalf("%s: read of soft-deleted stream on %s: %v", when, n.ID, err)
			}
			if _, err := cl.Read(ctx, "ts", opts, client.ToAddress(n.GRPCAddr)); !errors.Is(err, client.ErrStreamTombstoned) {
				t.Fatalf("%s: read of tombstoned stream on %s: %v", when, n.ID, err)
			}
			// $all shows exactly the visible events plus the delete and tombstone records.
			all, err := readAll(ctx, n, lastIndex)
			if err != nil {
				t.Fatal(err)
			}
			if got, exp := visibleSet(all), expectedSet(want); !slices.Equal(got, exp) {
				t.Fatalf("%s: $all on %s shows\n%v\nwant\n%v", when, n.ID, got, exp)
			}
		}
	}
	checkReads("after the limits")

	info, err := cl.GetStreamInfo(ctx, "sd", client.ReadOptions{})
	if err != nil || info.Exists || !info.Deleted || info.LastRevision != 2 {
		t.Fatalf("info of soft-deleted stream: %+v %v", info, err)
	}
	// Appends: a soft-deleted stream takes NO_STREAM and continues its revisions; a tombstoned
	// one takes nothing.
	a, err := cl.Append(ctx, "sd", client.NoStream(), []client.EventData{{Type: "T", Data: []byte("{}")}})
	if err != nil || a.FirstRevision != 3 {
		t.Fatalf("append after soft delete: %+v %v", a, err)
	}
	observe(a.LogIndex)
	want["sd"] = []uint64{3}
	if _, err := cl.Append(ctx, "ts", client.Any(), []client.EventData{{Type: "T"}}); !errors.Is(err, client.ErrStreamTombstoned) {
		t.Fatalf("append to tombstoned stream: %v", err)
	}
	checkReads("after re-creating the soft-deleted stream")

	// Subscriptions: $all from the start on each follower-or-leader, and the stream "mc", see
	// exactly what reads see (catch-up), then live events subject to the limits.
	subAll, err := cl.Subscribe(ctx, client.SubscribeOptions{FromStart: true, Address: c.Nodes[1].GRPCAddr,
		HeartbeatInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer subAll.Close()
	subMC, err := cl.Subscribe(ctx, client.SubscribeOptions{Stream: "mc", FromStart: true, Address: c.Nodes[2].GRPCAddr,
		HeartbeatInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer subMC.Close()
	caughtUp := collectUntilCaughtUp(t, subAll)
	if got, exp := visibleSetOf(caughtUp), expectedSet(want); !slices.Equal(got, exp) {
		t.Fatalf("$all subscription catch-up\n%v\nwant\n%v", got, exp)
	}
	if got := eventRevisions(collectUntilCaughtUp(t, subMC)); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("stream subscription catch-up: %v, want [4 5]", got)
	}
	// Live: max_count 1 from now on; appends to mc arrive, as does everything else visible.
	if _, err := cl.SetStreamMetadata(ctx, "mc", client.Exact(0), &client.StreamMetadata{MaxCount: u(1)}); err != nil {
		t.Fatal(err)
	}
	live := appendN("mc", 1) // revision 6
	if m := nextEvent(t, subAll); m.Stream != "mc" || m.Revision != 6 {
		t.Fatalf("$all live: got %s@%d, want mc@6", m.Stream, m.Revision)
	}
	if m := nextEvent(t, subMC); m.Revision != 6 {
		t.Fatalf("stream live: got revision %d, want 6", m.Revision)
	}
	want["mc"] = []uint64{6}
	checkReads("after max_count 1")

	// Subscribe from a commit time: the first event is the first committed at or after it.
	fromT, err := cl.Subscribe(ctx, client.SubscribeOptions{FromTime: live.CommitTime, HeartbeatInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer fromT.Close()
	if m := nextEvent(t, fromT); m.Position != live.FirstPosition {
		t.Fatalf("subscription from time %v starts at position %d, want %d", live.CommitTime, m.Position, live.FirstPosition)
	}

	// max_age: hides events older than it, at read time (wall clock of the serving node).
	first := appendN("age", 3)
	if _, err := cl.SetStreamMetadata(ctx, "age", client.Any(), &client.StreamMetadata{MaxAge: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	rd, err := cl.Read(ctx, "age", client.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if young := time.Since(first.CommitTime) < 1500*time.Millisecond; young && len(rd.Events) != 3 {
		t.Fatalf("max_age 2s right after the appends: %d events, want 3", len(rd.Events))
	}
	// Wait (bounded) until they have aged out; then a new event is visible alone.
	for deadline := time.Now().Add(20 * time.Second); ; {
		rd, err = cl.Read(ctx, "age", client.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rd.Events) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events older than max_age still visible: %d", len(rd.Events))
		}
		if err := waitCtx(ctx, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	fresh := appendN("age", 1)
	if rd, err = cl.Read(ctx, "age", client.ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	if time.Since(fresh.CommitTime) < 1500*time.Millisecond && !slices.Equal(eventRevisions(rd.Events), []uint64{3}) {
		t.Fatalf("after max_age expired the old events: revisions %v, want [3]", eventRevisions(rd.Events))
	}

	// As of T (acceptance point 3): exactly the events committed at or before T, on every node.
	var commits []time.Time
	for range 4 {
		res := appendN("asof", 1)
		commits = append(commits, res.CommitTime)
	}
	for _, n := range c.Nodes {
		for k, at := range commits {
			resp, err := n.Events().Read(ctx, &cairnpb.ReadRequest{Stream: "asof", StopAtTime: timestamppb.New(at),
				Options: stale(lastIndex)})
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, e := range resp.GetEvents() {
				got = append(got, e.GetRevision())
			}
			var exp []uint64
			for j := range commits {
				if !commits[j].After(at) {
					exp = append(exp, uint64(j))
				}
			}
			if !slices.Equal(got, exp) {
				t.Fatalf("as of the commit of revision %d on %s: %v, want %v", k, n.ID, got, exp)
			}
		}
	}

	// Compaction (acceptance point 4): making the hidden events gone changes no read result, on
	// any node, for stream reads, $all reads and a new $all subscription.
	ci, err := cl.Compact(ctx, false)
	if err != nil {
		t.Fatalf("compact: %v", err)
	}
	observe(ci.LogIndex)
	checkReads("after compaction")
	subAfter, err := cl.Subscribe(ctx, client.SubscribeOptions{FromStart: true, Address: c.Nodes[2].GRPCAddr,
		HeartbeatInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer subAfter.Close()
	if got, exp := visibleSetOf(collectUntilCaughtUp(t, subAfter)), expectedSet(want); !slices.Equal(got, exp) {
		t.Fatalf("$all subscription after compaction\n%v\nwant\n%v", got, exp)
	}
}

func eventRevisions(evs []client.RecordedEvent) []uint64 {
	var out []uint64
	for _, e := range evs {
		out = append(out, e.Revision)
	}
	return out
}

// expectedSet lists the visible events of want as "stream@revision", plus the lifecycle records
// $all shows, sorted.
func expectedSet(want map[string][]uint64) []string {
	out := []string{"sd:$deleted", "ts:$tombstone"}
	for s, revs := range want {
		for _, r := range revs {
			out = append(out, fmt.Sprintf("%s@%d", s, r))
		}
	}
	sort.Strings(out)
	return out
}

func visibleSet(all []*cairnpb.RecordedEvent) []string {
	var out []string
	for _, e := range all {
		if e.GetType() != "T" {
			out = append(out, e.GetStream()+":"+e.GetType())
			continue
		}
		if e.GetStream() != "age" && e.GetStream() != "asof" {
			out = append(out, fmt.Sprintf("%s@%d", e.GetStream(), e.GetRevision()))
		}
	}
	sort.Strings(out)
	return out
}

func visibleSetOf(evs []client.RecordedEvent) []string {
	pb := make([]*cairnpb.RecordedEvent, len(evs))
	for i, e := range evs {
		pb[i] = &cairnpb.RecordedEvent{Stream: e.Stream, Revision: e.Revision, Type: e.Type}
	}
	return visibleSet(pb)
}

// collectUntilCaughtUp returns the events a subscription delivers before its first caught-up.
func collectUntilCaughtUp(t *testing.T, sub *client.Subscription) []client.RecordedEvent {
	t.Helper()
	var out []client.RecordedEvent
	for {
		m, err := sub.Next()
		if err != nil {
			t.Fatalf("subscription: %v", err)
		}
		switch m.Kind {
		case client.MessageEvent:
			out = append(out, *m.Event)
		case client.MessageCaughtUp:
			return out
		}
	}
}

// nextEvent returns the subscription's next event.
func nextEvent(t *testing.T, sub *client.Subscription) client.RecordedEvent {
	t.Helper()
	for {
		m, err := sub.Next()
		if err != nil {
			t.Fatalf("subscription: %v", err)
		}
		if m.Kind == client.MessageEvent {
			return *m.Event
		}
	}
}

// waitCtx waits d or until ctx ends (a poll interval, not a stand-in for a condition).
func waitCtx(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
