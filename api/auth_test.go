package api

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api/cairnpb"
)

const bootstrapToken = "bootstrap-secret-for-tests"

// authServer serves a Service with auth enabled over node. interceptors=false builds the
// grpc.Server without the Service's interceptors, to check that the service fails closed.
func authServer(t *testing.T, node *fakeNode, interceptors bool) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Auth = AuthConfig{Enabled: true, BootstrapToken: bootstrapToken}
	svc := NewService(node, cfg, discardLogger())
	opts := ServerOptions(svc.Config())
	if interceptors {
		opts = svc.ServerOptions()
	}
	srv := grpc.NewServer(opts...)
	svc.Register(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
		_ = svc.Close()
	})
	return &testServer{addr: lis.Addr().String(), node: node, svc: svc, srv: srv, conn: conn,
		events: cairnpb.NewEventsClient(conn), cluster: cairnpb.NewClusterClient(conn)}
}

// as returns ctx carrying token as a bearer token.
func as(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", BearerPrefix+token)
}

// callEveryMethod calls every method of the Events, Cluster and Auth services with an empty
// request and returns each one's error, by full method name.
func callEveryMethod(t *testing.T, ctx context.Context, conn *grpc.ClientConn) map[string]error {
	t.Helper()
	out := map[string]error{}
	for _, desc := range []grpc.ServiceDesc{cairnpb.Events_ServiceDesc, cairnpb.Cluster_ServiceDesc, cairnpb.Auth_ServiceDesc} {
		for _, m := range desc.Methods {
			name := "/" + desc.ServiceName + "/" + m.MethodName
			body, resp := []byte{}, []byte{}
			out[name] = conn.Invoke(ctx, name, &body, &resp, grpc.ForceCodecV2(rawClientCodec{}))
		}
		for _, sd := range desc.Streams {
			name := "/" + desc.ServiceName + "/" + sd.StreamName
			sctx, cancel := context.WithCancel(ctx)
			cs, err := conn.NewStream(sctx, &grpc.StreamDesc{ServerStreams: true}, name, grpc.ForceCodecV2(rawClientCodec{}))
			if err == nil {
				body := []byte{}
				if err = cs.SendMsg(&body); err == nil {
					var resp []byte
					err = cs.RecvMsg(&resp)
				}
			}
			cancel()
			out[name] = err
		}
	}
	return out
}

// Acceptance (issue 9, point 1): without a valid token every RPC is refused; a reader cannot
// append; a writer limited to "orders-" cannot append to users-1 and its $all reads and
// subscriptions show only orders-* streams.
func TestAuthRolesAndPrefixes(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := authServer(t, node, true)
	ctx := ctxT(t)

	for _, token := range []string{"", "cairn_not-a-real-token"} {
		c := ctx
		if token != "" {
			c = as(ctx, token)
		}
		calls := callEveryMethod(t, c, ts.conn)
		if len(calls) < 15 {
			t.Fatalf("only %d methods called", len(calls))
		}
		for name, err := range calls {
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("token %q: %s: %v, want UNAUTHENTICATED", token, name, err)
			}
		}
	}
	// Health checks stay open for probes.
	if _, err := healthpb.NewHealthClient(ts.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health without a token: %v", err)
	}

	admin := as(ctx, bootstrapToken)
	authc := cairnpb.NewAuthClient(ts.conn)
	create := func(role cairnpb.Role, prefixes ...string) string {
		t.Helper()
		resp, err := authc.CreateToken(admin, &cairnpb.CreateTokenRequest{Role: role, Prefixes: prefixes, Name: role.String()})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetSecret()
	}
	reader, writer := create(cairnpb.Role_ROLE_READER), create(cairnpb.Role_ROLE_WRITER, "orders-")

	if _, err := ts.events.Append(admin, &cairnpb.AppendRequest{Stream: "users-1", Events: []*cairnpb.EventData{evt(1, "A")}}); err != nil {
		t.Fatalf("admin append: %v", err)
	}
	_, err := ts.events.Append(as(ctx, reader), &cairnpb.AppendRequest{Stream: "orders-1", Events: []*cairnpb.EventData{evt(2, "A")}})
	wantStatus(t, err, codes.PermissionDenied, ReasonPermissionDenied)
	if _, err := ts.events.Read(as(ctx, reader), &cairnpb.ReadRequest{Stream: "users-1"}); err != nil {
		t.Fatalf("reader read: %v", err)
	}

	w := as(ctx, writer)
	_, err = ts.events.Append(w, &cairnpb.AppendRequest{Stream: "users-1", Events: []*cairnpb.EventData{evt(3, "A")}})
	wantStatus(t, err, codes.PermissionDenied, ReasonPermissionDenied)
	_, err = ts.events.AppendMulti(w, &cairnpb.AppendMultiRequest{Appends: []*cairnpb.StreamAppend{
		{Stream: "orders-2", Events: []*cairnpb.EventData{evt(4, "A")}}, {Stream: "users-2", Events: []*cairnpb.EventData{evt(5, "A")}}}})
	wantStatus(t, err, codes.PermissionDenied, ReasonPermissionDenied)
	if _, err := ts.events.Append(w, &cairnpb.AppendRequest{Stream: "orders-1", Events: []*cairnpb.EventData{evt(6, "A")}}); err != nil {
		t.Fatalf("writer append to orders-1: %v", err)
	}
	_, err = ts.events.Read(w, &cairnpb.ReadRequest{Stream: "users-1"})
	wantStatus(t, err, codes.PermissionDenied, ReasonPermissionDenied)
	// Lifecycle writes follow the stream's write permission; the tombstone stays admin-only.
	_, err = ts.events.SetStreamMetadata(w, &cairnpb.SetStreamMetadataRequest{Stream: "users-1"})
	wantStatus(t, err, codes.PermissionDenied, ReasonPermissionDenied)
	_, err = ts.events.DeleteStream(w, &cairnpb.DeleteStreamRequest{Stream: "users-1"})
	wantStatus(t, err, codes.PermissionDenied, ReasonPermissionDenied)
	_, err = ts.events.GetStreamMetadata(w, &cairnpb.GetStreamMetadataRequest{Stream: "users-1"})
	wantStatus(t, err, codes.PermissionDenied, ReasonPermissionDenied)
	if _, err := ts.events.SetStreamMetadata(w, &cairnpb.SetStreamMetadataRequest{Stream: "orders-1"}); err != nil {
		t.Fatalf("writer sets metadata of orders-1: %v", err)
	}
	if _, err := ts.events.GetStreamMetadata(w, &cairnpb.GetStreamMetadataRequest{Stream: "orders-1"}); err != nil {
		t.Fatalf("writer reads metadata of orders-1: %v", err)
	}
	_, err = ts.events.Tombstone(w, &cairnpb.TombstoneRequest{Stream: "orders-1"})
	wantStatus(t, err, codes.PermissionDenied, ReasonPermissionDenied)
	_, err = ts.events.Read(w, &cairnpb.ReadRequest{Stream: "$auth"})
	wantStatus(t, err, codes.PermissionDenied, ReasonPermissionDenied)
	_, err = authc.ListTokens(w, &cairnpb.ListTokensRequest{})
	wantStatus(t, err, codes.PermissionDenied, ReasonPermissionDenied)

	streamsOf := func(evs []*cairnpb.RecordedEvent) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.GetStream())
		}
		return out
	}
	all, err := ts.events.ReadAll(w, &cairnpb.ReadAllRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got := streamsOf(all.GetEvents()); len(got) != 1 || got[0] != "orders-1" {
		t.Fatalf("writer's $all: %v, want only orders-1", got)
	}
	adminAll, err := ts.events.ReadAll(admin, &cairnpb.ReadAllRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got := streamsOf(adminAll.GetEvents()); len(got) != 4 { // 2 $auth records, users-1, orders-1
		t.Fatalf("admin's $all: %v", got)
	}

	sctx, cancel := context.WithCancel(w)
	defer cancel()
	sub, err := ts.events.Subscribe(sctx, &cairnpb.SubscribeRequest{Stream: "$all", FromStart: true})
	if err != nil {
		t.Fatal(err)
	}
	var subStreams []string
	for {
		m, err := sub.Recv()
		if err != nil {
			t.Fatalf("subscription: %v", err)
		}
		if m.GetCaughtUp() != nil {
			break
		}
		if e := m.GetEvent(); e != nil {
			subStreams = append(subStreams, e.GetStream())
		}
		subStreams = append(subStreams, streamsOf(m.GetEvents().GetEvents())...)
	}
	if len(subStreams) != 1 || subStreams[0] != "orders-1" {
		t.Fatalf("writer's $all subscription: %v, want only orders-1", subStreams)
	}
	ssub, err := ts.events.Subscribe(sctx, &cairnpb.SubscribeRequest{Stream: "users-1", FromStart: true})
	if err == nil {
		_, err = ssub.Recv()
	}
	wantStatus(t, err, codes.PermissionDenied, ReasonPermissionDenied)

	// Revocation takes effect at once.
	list, err := authc.ListTokens(admin, &cairnpb.ListTokensRequest{})
	if err != nil || len(list.GetTokens()) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}
	for _, tok := range list.GetTokens() {
		if tok.GetRole() == cairnpb.Role_ROLE_WRITER {
			if _, err := authc.RevokeToken(admin, &cairnpb.RevokeTokenRequest{Id: tok.GetId()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, err = ts.events.Append(w, &cairnpb.AppendRequest{Stream: "orders-1", Events: []*cairnpb.EventData{evt(7, "A")}})
	wantStatus(t, err, codes.Unauthenticated, ReasonUnauthenticated)

	st := ts.svc.Stats()
	if st.Errors[ReasonPermissionDenied] < 7 || st.Errors[ReasonUnauthenticated] < 30 {
		t.Fatalf("denials counted: %v", st.Errors)
	}
}

// TestAuthFailsClosedWithoutInterceptor: with auth enabled, a server built without the
// Service's interceptors refuses every call rather than serving it unchecked.
func TestAuthFailsClosedWithoutInterceptor(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := authServer(t, node, false)
	ctx := as(ctxT(t), bootstrapToken)
	_, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(1, "A")}})
	wantStatus(t, err, codes.Unauthenticated, ReasonUnauthenticated)
	sub, err := ts.events.Subscribe(ctx, &cairnpb.SubscribeRequest{Stream: "$all", FromStart: true})
	if err == nil {
		_, err = sub.Recv()
	}
	wantStatus(t, err, codes.Unauthenticated, ReasonUnauthenticated)
	if node.proposalCount() != 0 {
		t.Fatal("a call reached Propose")
	}
}

// TestDenialLogLimiter: at most denialLogBurst refusals are logged per second; the next line
// logged reports how many were left out.
func TestDenialLogLimiter(t *testing.T) {
	var l logLimiter
	start := time.Unix(1000, 0)
	for i := range denialLogBurst {
		if ok, _ := l.allow(start); !ok {
			t.Fatalf("line %d refused", i)
		}
	}
	for range 5 {
		if ok, _ := l.allow(start.Add(500 * time.Millisecond)); ok {
			t.Fatal("a line past the burst was allowed")
		}
	}
	if ok, sup := l.allow(start.Add(time.Second)); !ok || sup != 5 {
		t.Fatalf("next window: %v, suppressed %d, want true, 5", ok, sup)
	}
}
