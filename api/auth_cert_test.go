package api_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/testcluster"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// TestClientCertificatesAuthenticate (issue 9: clients authenticate by client certificate or
// bearer token): with authentication on and mutual TLS, a client certificate carrying an API role
// acts with that role, also through a follower (which forwards the identity, not its own node
// certificate's); one without a role is refused; nodes still form the cluster (their
// certificates are admins for the calls they make to each other).
func TestClientCertificatesAuthenticate(t *testing.T) {
	tc := testcluster.NewWithOptions(t, 3, testcluster.Options{TLS: true, LogLevel: slog.LevelWarn,
		API: api.Config{Auth: api.AuthConfig{Enabled: true}}})
	if err := tlsutil.WriteDev(tlsutil.DevOptions{Dir: tc.TLSDir, Cluster: testcluster.ClusterName,
		Clients: []string{"orders=writer:orders-", "nobody"}}); err != nil {
		t.Fatal(err)
	}
	leader := tc.WaitLeader(t)
	follower := tc.Followers(leader)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := func(name string, addr string) cairnpb.EventsClient {
		f := tlsutil.ClientFiles(tc.TLSDir, name)
		cfg, err := client.LoadTLS(f.CA, f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return cairnpb.NewEventsClient(cc)
	}
	appendTo := func(ec cairnpb.EventsClient, stream string) error {
		_, err := ec.Append(ctx, &cairnpb.AppendRequest{Stream: stream,
			Events: []*cairnpb.EventData{{Id: uuid.NewString(), Type: "T", Data: []byte(`{}`)}}})
		return err
	}
	wantCode := func(err error, code codes.Code, what string) {
		t.Helper()
		if status.Code(err) != code {
			t.Fatalf("%s: %v, want %v", what, err, code)
		}
	}

	admin := conn("admin", leader.Addr)
	if err := appendTo(admin, "users-1"); err != nil {
		t.Fatalf("admin certificate appends: %v", err)
	}
	for _, n := range []*testcluster.Node{leader, follower} {
		orders := conn("orders", n.Addr)
		wantCode(appendTo(orders, "users-1"), codes.PermissionDenied, "orders writer appends to users-1 on "+n.ID())
		if err := appendTo(orders, "orders-"+n.ID()); err != nil {
			t.Fatalf("orders writer appends to orders-%s through %s: %v", n.ID(), n.ID(), err)
		}
		all, err := orders.ReadAll(ctx, &cairnpb.ReadAllRequest{Limit: 100})
		if err != nil {
			t.Fatalf("orders writer reads $all on %s: %v", n.ID(), err)
		}
		var streams []string
		for _, e := range all.GetEvents() {
			streams = append(streams, e.GetStream())
		}
		if slices.Contains(streams, "users-1") || !slices.Contains(streams, "orders-"+leader.ID()) {
			t.Fatalf("orders writer's $all on %s shows %v", n.ID(), streams)
		}
		wantCode(appendTo(conn("nobody", n.Addr), "orders-1"), codes.Unauthenticated, "certificate without a role on "+n.ID())
	}
}
