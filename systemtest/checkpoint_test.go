package systemtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
)

// Issue 4, acceptance point 2, with real processes: a filtered $all subscription on a follower
// whose filter matches nothing receives checkpoints through unmatched history and unmatched live
// appends; resuming from the last checkpoint after the subscriber went away misses
// nothing that matches later and repeats nothing.
func TestFilteredSubscriptionCheckpointsAndResume(t *testing.T) {
	c := mustStartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var follower string
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.GRPCAddr
		if n != leader && follower == "" {
			follower = n.GRPCAddr
		}
	}
	cl, err := client.New(addrs, client.WithBackoff(20*time.Millisecond, 300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	appendTo := func(stream string) *client.AppendResult {
		t.Helper()
		r, err := cl.Append(ctx, stream, client.Any(), []client.EventData{{Type: "T", Data: []byte("{}")}})
		if err != nil {
			t.Fatalf("append to %s: %v", stream, err)
		}
		return r
	}
	filter := client.Filter{StreamPrefixes: []string{"wanted-"}}
	opts := client.SubscribeOptions{FromStart: true, Filter: filter, Address: follower,
		CheckpointInterval: 50 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond}

	var last *client.AppendResult
	for range 20 {
		last = appendTo("other")
	}
	sub, err := cl.Subscribe(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Checkpoints reach the end of the unmatched history, then follow unmatched live appends:
	// the subscriber never sees an event, yet its resume point keeps up with the log.
	var checkpoint uint64
	waitCheckpoint := func(upTo uint64) {
		t.Helper()
		for checkpoint < upTo {
			m, err := sub.Next()
			if err != nil {
				t.Fatalf("subscription: %v", err)
			}
			switch m.Kind {
			case client.MessageEvent:
				t.Fatalf("the filter matches nothing yet, got an event at %d", m.Position)
			case client.MessageCheckpoint, client.MessageCaughtUp:
				if m.Position < checkpoint {
					t.Fatalf("checkpoint went back from %d to %d", checkpoint, m.Position)
				}
				checkpoint = m.Position
			}
		}
	}
	waitCheckpoint(last.LastPosition)
	for range 10 {
		last = appendTo("other")
	}
	waitCheckpoint(last.LastPosition)
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}

	// Written while nobody listens: matching and unmatched events interleaved.
	var want []uint64
	for i := range 30 {
		if i%3 == 0 {
			want = append(want, appendTo(fmt.Sprintf("wanted-%d", i%2)).LastPosition)
		} else {
			appendTo("other")
		}
	}
	resumed := opts
	resumed.FromStart, resumed.From = false, checkpoint
	sub2, err := cl.Subscribe(ctx, resumed)
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	var got []uint64
	for len(got) < len(want) {
		m, err := sub2.Next()
		if err != nil {
			t.Fatalf("resumed subscription: %v", err)
		}
		if m.Kind == client.MessageEvent {
			got = append(got, m.Position)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("resumed from checkpoint %d: got positions %v, want %v", checkpoint, got, want)
	}
}
