package systemtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/localcluster"
)

// TestAuthEndToEnd (issue 9, acceptance 1) against real cairnd processes started with --auth and
// a bootstrap token: calls without a token are refused, a reader cannot append, and a writer
// limited to "orders-" cannot append to users-1 and sees only orders-* in $all, through any node.
func TestAuthEndToEnd(t *testing.T) {
	const bootstrap = "systemtest-bootstrap-token"
	c := mustStartClusterWith(t, localcluster.Options{Nodes: 3, Token: bootstrap,
		ExtraArgs: []string{"--auth", "--bootstrap-token", bootstrap}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.GRPCAddr)
	}
	newClient := func(opts ...client.Option) *client.Client {
		cl, err := client.New(addrs, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	ev := []client.EventData{{Type: "A"}}

	if _, err := newClient(client.WithMaxAttempts(1)).Append(ctx, "orders-1", client.Any(), ev); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("append without a token: %v", err)
	}
	admin := newClient(client.WithToken(bootstrap))
	readerSecret, _, err := admin.CreateToken(ctx, client.RoleReader, nil, "reader")
	if err != nil {
		t.Fatal(err)
	}
	writerSecret, _, err := admin.CreateToken(ctx, client.RoleWriter, []string{"orders-"}, "writer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Append(ctx, "users-1", client.Any(), ev); err != nil {
		t.Fatal(err)
	}
	// Linearizable reads and appends go to the leader, which created the tokens: no lag.
	reader := newClient(client.WithToken(readerSecret), client.WithMaxAttempts(1))
	if _, err := reader.Append(ctx, "orders-1", client.Any(), ev); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("reader append: %v", err)
	}
	if _, err := reader.Read(ctx, "users-1", client.ReadOptions{}); err != nil {
		t.Fatalf("reader read: %v", err)
	}
	writer := newClient(client.WithToken(writerSecret), client.WithMaxAttempts(1))
	if _, err := writer.Append(ctx, "users-1", client.Any(), ev); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("writer append to users-1: %v", err)
	}
	if _, err := writer.Append(ctx, "orders-1", client.Any(), ev); err != nil {
		t.Fatalf("writer append to orders-1: %v", err)
	}
	all, err := writer.ReadAll(ctx, client.ReadAllOptions{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Events) != 1 || all.Events[0].Stream != "orders-1" {
		t.Fatalf("writer's $all: %+v", all.Events)
	}
}
