package client_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/testcluster"
)

// TestTokens: against a real node with auth on, a client without a token is refused; the
// bootstrap admin creates a writer limited to "orders-", which cannot append to users-1 and
// whose $all reads show only orders-* streams; revoking it locks it out.
func TestTokens(t *testing.T) {
	const bootstrap = "bootstrap-token-for-client-tests"
	c := testcluster.NewWithOptions(t, 1, testcluster.Options{LogLevel: slog.LevelError,
		API: api.Config{Auth: api.AuthConfig{Enabled: true, BootstrapToken: bootstrap}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	newClient := func(opts ...client.Option) *client.Client {
		cl, err := client.New(c.Addrs(), append(opts, client.WithMaxAttempts(1))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	ev := []client.EventData{{Type: "A", Data: []byte(`{}`), ContentType: "application/json"}}

	anon := newClient()
	if _, err := anon.Append(ctx, "orders-1", client.Any(), ev); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("append without a token: %v, want ErrUnauthenticated", err)
	}
	admin := newClient(client.WithToken(bootstrap))
	secret, info, err := admin.CreateToken(ctx, client.RoleWriter, []string{"orders-"}, "orders service")
	if err != nil {
		t.Fatal(err)
	}
	if info.Role != client.RoleWriter || info.ID == "" || len(secret) < 40 {
		t.Fatalf("created %+v, secret of %d bytes", info, len(secret))
	}
	if _, err := admin.Append(ctx, "users-1", client.Any(), ev); err != nil {
		t.Fatal(err)
	}
	writer := newClient(client.WithToken(secret))
	if _, err := writer.Append(ctx, "users-1", client.Any(), ev); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("writer append to users-1: %v, want ErrPermissionDenied", err)
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
	if _, err := writer.ListTokens(ctx); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("writer lists tokens: %v", err)
	}
	tokens, err := admin.ListTokens(ctx)
	if err != nil || len(tokens) != 1 || tokens[0].ID != info.ID || tokens[0].Name != "orders service" {
		t.Fatalf("tokens %+v, %v", tokens, err)
	}
	if err := admin.RevokeToken(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Append(ctx, "orders-1", client.Any(), ev); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("revoked writer: %v, want ErrUnauthenticated", err)
	}
}

// TestTokensForwarded: a follower forwards a token holder's append and linearizable $all read to
// the leader with the caller's token, so the leader authorises and filters them the same way.
func TestTokensForwarded(t *testing.T) {
	const bootstrap = "bootstrap-token-for-client-tests"
	c := testcluster.NewWithOptions(t, 3, testcluster.Options{LogLevel: slog.LevelError,
		API: api.Config{Auth: api.AuthConfig{Enabled: true, BootstrapToken: bootstrap}}})
	leader := c.WaitLeader(t)
	follower := c.Followers(leader)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	viaFollower := func(token string) *client.Client {
		cl, err := client.New([]string{follower.Addr}, client.WithToken(token), client.WithLeaderRouting(false), client.WithMaxAttempts(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	admin := viaFollower(bootstrap)
	secret, _, err := admin.CreateToken(ctx, client.RoleWriter, []string{"orders-"}, "fwd")
	if err != nil {
		t.Fatalf("create through a follower: %v", err)
	}
	ev := []client.EventData{{Type: "A"}}
	if _, err := admin.Append(ctx, "users-1", client.Any(), ev); err != nil {
		t.Fatal(err)
	}
	writer := viaFollower(secret)
	// The follower applies the token's entry a moment after the leader committed it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := writer.Append(ctx, "orders-1", client.Any(), ev)
		if err == nil {
			break
		}
		if !errors.Is(err, client.ErrUnauthenticated) || time.Now().After(deadline) {
			t.Fatalf("writer append through a follower: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // poll until the follower has applied the token
	}
	if _, err := writer.Append(ctx, "users-1", client.Any(), ev); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("writer append to users-1 through a follower: %v", err)
	}
	all, err := writer.ReadAll(ctx, client.ReadAllOptions{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Events) != 1 || all.Events[0].Stream != "orders-1" || all.ServedBy.NodeID != leader.ID() {
		t.Fatalf("writer's forwarded $all read: %+v served by %s", all.Events, all.ServedBy.NodeID)
	}
}
