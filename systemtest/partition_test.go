package systemtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/cairndb/cairn/api/cairnpb"
)

// Acceptance (issue 3, point 6): a leader cut off from the others (here frozen with SIGSTOP while
// the rest elect a new leader and commit a write) must never serve a LINEARIZABLE read of stale
// data once it runs again. Reads sent while it is frozen sit in its socket buffer and are
// processed the moment it thaws — exactly when it still believes it leads.
func TestPausedOldLeaderNeverServesStaleLinearizableRead(t *testing.T) {
	c := mustStartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	old, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "reg", Expected: anyRev(),
		Events: []*cairnpb.EventData{event(newUUID())}}); err != nil {
		t.Fatal(err)
	}
	// Open connections now: a frozen process still completes TCP handshakes via the kernel, but
	// not the HTTP/2 settings exchange gRPC needs.
	conn, err := old.Conn()
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Pause(); err != nil {
		t.Fatal(err)
	}
	var rest = c.Nodes[:0:0]
	for _, n := range c.Nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	newLeader, err := c.WaitLeader(ctx, rest...)
	if err != nil {
		t.Fatal(err)
	}
	second, err := newLeader.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "reg", Expected: anyRev(),
		Events: []*cairnpb.EventData{event(newUUID())}})
	if err != nil {
		t.Fatal(err)
	}

	// The second write is acknowledged: every linearizable read that starts now must see it.
	const readers = 16
	var wg sync.WaitGroup
	results := make(chan error, readers)
	counts := make(chan int, readers)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			defer rcancel()
			resp, err := cairnpb.NewEventsClient(conn).Read(rctx, &cairnpb.ReadRequest{Stream: "reg", Limit: 10,
				Options: &cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_LINEARIZABLE}}, grpc.WaitForReady(true))
			if err != nil {
				results <- err
				return
			}
			counts <- len(resp.GetEvents())
		}()
	}
	time.Sleep(100 * time.Millisecond) // let the reads reach the frozen node's socket: no event to wait on
	if err := old.Resume(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	close(counts)
	served := 0
	for n := range counts {
		served++
		if n != 2 {
			t.Fatalf("a linearizable read after the second write (log index %d) returned %d events: stale", second.GetLogIndex(), n)
		}
	}
	for err := range results {
		t.Logf("read refused (allowed): %v", err)
	}
	t.Logf("%d of %d linearizable reads served while the old leader thawed, all fresh", served, readers)

	// Once it has caught up with the new term, the old leader forwards linearizable reads to the
	// new one and they are served, fresh.
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := cairnpb.NewEventsClient(conn).Read(ctx, &cairnpb.ReadRequest{Stream: "reg", Limit: 10,
			Options: &cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_LINEARIZABLE}})
		if err == nil {
			if len(resp.GetEvents()) != 2 || resp.GetServedBy().GetNodeId() == old.ID {
				t.Fatalf("read through the old leader: %d events, served by %s", len(resp.GetEvents()), resp.GetServedBy().GetNodeId())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no linearizable read served through the old leader within 15s: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // retry backoff, bounded by the deadline
	}
}
