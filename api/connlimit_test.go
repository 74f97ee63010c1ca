package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api/cairnpb"
)

// openSub starts a subscription to $all on c and waits for its first message, so it is running
// on the server when openSub returns. The returned cancel ends it.
func openSub(t *testing.T, c cairnpb.EventsClient) (context.CancelFunc, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	sub, err := c.Subscribe(ctx, &cairnpb.SubscribeRequest{Stream: "$all", FromStart: true})
	if err == nil {
		_, err = sub.Recv()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return cancel, nil
}

// TestSubscriptionsPerConnection: past MaxSubscriptionsPerConn running subscriptions on one
// connection the next is RESOURCE_EXHAUSTED subscriptions_per_connection; other connections are
// not affected, and a slot frees when a subscription ends.
func TestSubscriptionsPerConnection(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node, func(c *Config) { c.MaxSubscriptionsPerConn = 2 })
	mustAppend(t, ts.events, "s", evt(1, "A"))
	var cancels []context.CancelFunc
	for range 2 {
		cancel, err := openSub(t, ts.events)
		if err != nil {
			t.Fatal(err)
		}
		cancels = append(cancels, cancel)
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	_, err := openSub(t, ts.events)
	st := wantStatus(t, err, codes.ResourceExhausted, ReasonLimitExceeded)
	if d := detailOf[*cairnpb.LimitExceeded](t, st); d.GetLimit() != "subscriptions_per_connection" || d.GetMax() != 2 || d.GetActual() != 3 {
		t.Fatalf("detail %v", d)
	}

	other, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cancel, err := openSub(t, cairnpb.NewEventsClient(other))
	if err != nil {
		t.Fatalf("a subscription on another connection: %v", err)
	}
	cancel()

	cancels[0]()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cancel, err := openSub(t, ts.events)
		if err == nil {
			cancel()
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("after ending a subscription: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // poll: the server ends the cancelled one asynchronously
	}
	ts.svc.connSubs.mu.Lock()
	defer ts.svc.connSubs.mu.Unlock()
	if len(ts.svc.connSubs.byConn) != 1 { // only ts.conn's remaining subscription
		t.Fatalf("connections tracked: %v", ts.svc.connSubs.byConn)
	}
}

// TestMaxConcurrentStreams: past MaxConcurrentStreams RPCs on one connection, the next waits
// for a slot (here until its deadline) instead of adding load.
func TestMaxConcurrentStreams(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node, func(c *Config) { c.MaxConcurrentStreams = 1 })
	cancel, err := openSub(t, ts.events)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer stop()
	_, err = ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(1, "A")}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("second RPC while the one stream slot is taken: %v, want DEADLINE_EXCEEDED", err)
	}
	cancel()
	mustAppend(t, ts.events, "s", evt(1, "A")) // waits for the freed slot
}

// TestMaxHeaderListBytes: a request whose metadata is over MaxHeaderListBytes is refused before
// the service runs.
func TestMaxHeaderListBytes(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node, func(c *Config) { c.MaxHeaderListBytes = 4 << 10 })
	mustAppend(t, ts.events, "s", evt(1, "A")) // settles the connection, so the client knows the limit
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-big", strings.Repeat("x", 8<<10))
	_, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(2, "A")}})
	if err == nil || !strings.Contains(err.Error(), "header list size") {
		t.Fatalf("oversized metadata: %v, want a header list size error", err)
	}
	if node.proposalCount() != 1 {
		t.Fatalf("%d proposals, want 1", node.proposalCount())
	}
}

// TestMaxConnectionIdle: a connection without RPCs is closed by the server after
// MaxConnectionIdle, and the client reconnects transparently.
func TestMaxConnectionIdle(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node, func(c *Config) { c.MaxConnectionIdle = 100 * time.Millisecond })
	mustAppend(t, ts.events, "s", evt(1, "A"))
	ctx := ctxT(t)
	for s := ts.conn.GetState(); s == connectivity.Ready; s = ts.conn.GetState() {
		if !ts.conn.WaitForStateChange(ctx, s) {
			t.Fatal("the idle connection was not closed by the server")
		}
	}
	mustAppend(t, ts.events, "s", evt(2, "A"))
}

// TestMaxConnectionAge: with MaxConnectionAge set, the server closes a connection after that
// age plus the grace, ending even a long-running subscription (UNAVAILABLE, so clients resume
// elsewhere), and the client reconnects for the next call.
func TestMaxConnectionAge(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node, func(c *Config) {
		c.MaxConnectionAge, c.MaxConnectionAgeGrace = 200*time.Millisecond, 100*time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := ts.events.Subscribe(ctx, &cairnpb.SubscribeRequest{Stream: "$all", FromStart: true})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := sub.Recv()
		if err == nil {
			continue // caught-up marker, heartbeats
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("subscription ended with %v, want UNAVAILABLE from the connection's age limit", err)
		}
		break
	}
	mustAppend(t, ts.events, "s", evt(1, "A"))
}
