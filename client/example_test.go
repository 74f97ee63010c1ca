package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
)

// ExampleClient shows typical use: append with an expected revision, handle a conflict, and
// read back from a follower with read-your-writes. It needs a running cluster, so it is compiled
// but not run; TestExampleFlow runs the same steps against an in-process cluster.
func ExampleClient() {
	c, err := client.New([]string{"127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := exampleFlow(ctx, c); err != nil {
		log.Fatal(err)
	}
}

// exampleFlow is the body of ExampleClient.
func exampleFlow(ctx context.Context, c *client.Client) error {
	// Create the stream: NoStream fails if someone else created it first.
	res, err := c.Append(ctx, "orders-1", client.NoStream(), []client.EventData{
		{Type: "OrderPlaced", ContentType: "application/json", Data: []byte(`{"id":1}`)},
	})
	if err != nil {
		return err
	}
	fmt.Printf("appended at revision %d\n", res.LastRevision)

	// Optimistic concurrency: append only if nobody else appended since revision 0.
	_, err = c.Append(ctx, "orders-1", client.Exact(0), []client.EventData{{Type: "OrderPaid"}})
	var wrong *client.WrongExpectedRevisionError
	switch {
	case errors.As(err, &wrong):
		fmt.Printf("conflict: stream is at revision %d\n", wrong.Violations[0].ActualRevision)
	case err != nil:
		return err
	}

	// A stale read may be served by any node; the client's read-your-writes token makes that
	// node wait until it has applied our appends.
	rd, err := c.Read(ctx, "orders-1", client.ReadOptions{Consistency: client.Stale})
	if err != nil {
		return err
	}
	for _, e := range rd.Events {
		fmt.Printf("%d %s %s\n", e.Revision, e.Type, e.Data)
	}
	return nil
}

// TestExampleFlow runs ExampleClient's steps against an in-process cluster.
func TestExampleFlow(t *testing.T) {
	tc, _ := mustNewCluster(t, 3)
	c := newTestClient(t, tc.Addrs())
	if err := exampleFlow(ctxTimeout(t, 20*time.Second), c); err != nil {
		t.Fatal(err)
	}
	rd, err := c.Read(ctxTimeout(t, 10*time.Second), "orders-1", client.ReadOptions{})
	if err != nil || len(rd.Events) != 2 || rd.Events[1].Type != "OrderPaid" {
		t.Fatalf("after the example: %v %+v", err, rd)
	}
}
