// Package client is the Go client of Cairn, a replicated event store: it appends events to
// streams and reads them back, from a cluster of Cairn nodes over gRPC.
//
// Create one Client per process with New and share it; it is safe for concurrent use:
//
//	c, err := client.New([]string{"10.0.0.1:7101", "10.0.0.2:7101", "10.0.0.3:7101"})
//	if err != nil { ... }
//	defer c.Close()
//	res, err := c.Append(ctx, "orders-1", client.NoStream(), []client.EventData{
//		{Type: "OrderPlaced", ContentType: "application/json", Data: []byte(`{"id":1}`)},
//	})
//	events, err := c.Read(ctx, "orders-1", client.ReadOptions{})
//
// The client:
//
//   - routes writes and Linearizable/Leader reads to the leader once it knows the leader's
//     address (any node forwards them until then), and Stale reads to the nodes in turn or to a
//     chosen node (WithStaleReadAddress, ToAddress);
//   - gives events without an id a random UUID before the first attempt, so that retries are
//     recognised by the server and never write twice;
//   - retries what may be transient (no leader, not leader, node unreachable or shutting down,
//     outcome unknown) with exponential backoff and jitter, bounded by the context's deadline and
//     an attempt limit, and never retries what the server decided (wrong expected revision,
//     invalid argument, limits, id conflicts);
//   - keeps a read-your-writes token, the highest log index it has seen, and sends it with Stale
//     reads, so that reads from followers see the client's own writes and never go back in time;
//   - returns errors that match, with errors.Is, one sentinel per condition (ErrWrongExpectedRevision,
//     ErrStreamNotFound, ErrUnavailable, ...) and carry typed details for errors.As
//     (*WrongExpectedRevisionError, *InvalidArgumentError, *LimitError, *NotLeaderError, ...).
//
// DESIGN.md in this directory explains the routing and retry rules and why retries are safe.
package client
