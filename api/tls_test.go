package api_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/testcluster"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// lockedLog collects the nodes' log lines.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// eventually polls cond every 20 ms for up to d, failing with what.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded
	}
}

func tlsAppend(ctx context.Context, cc *grpc.ClientConn, stream string) error {
	_, err := cairnpb.NewEventsClient(cc).Append(ctx, &cairnpb.AppendRequest{Stream: stream,
		Events: []*cairnpb.EventData{{Id: uuid.NewString(), Type: "Placed", Data: []byte(`{}`)}}})
	return err
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// Acceptance (issue 9, transport): a node with a certificate of another CA, or of the right CA
// but another cluster name, cannot gossip (without the key), join raft, forward, or call the
// client API, while the cluster keeps serving; a client without a certificate is refused.
func TestMutualTLSKeepsOutNodesOfAnotherCAOrCluster(t *testing.T) {
	before := goleak.IgnoreCurrent()
	logs := &lockedLog{}
	tc := testcluster.NewWithOptions(t, 3, testcluster.Options{TLS: true, LogLevel: slog.LevelWarn, Logs: logs})
	leader := tc.WaitLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	good := dial(t, leader.Addr, credentials.NewTLS(tc.ClientTLS(t)))
	if err := tlsAppend(ctx, good, "orders-1"); err != nil {
		t.Fatalf("append with the cluster's client certificate: %v", err)
	}

	// Impostor material. A: another CA and its own gossip key. B: another CA but a copy of the
	// cluster's gossip key. C: the cluster's CA and gossip key, another cluster name.
	otherDir := t.TempDir()
	if err := tlsutil.WriteDev(tlsutil.DevOptions{Dir: otherDir, Cluster: testcluster.ClusterName,
		Nodes: []string{"evil-a", "evil-b"}, Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	ca, err := tlsutil.LoadCA(filepath.Join(tc.TLSDir, tlsutil.CACertFile), filepath.Join(tc.TLSDir, tlsutil.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cf := tlsutil.Files{CA: filepath.Join(tc.TLSDir, tlsutil.CACertFile), Cert: filepath.Join(otherDir, "c.crt"),
		Key: filepath.Join(otherDir, "c.key")}
	cp, kp, err := ca.Issue(tlsutil.Identity{Cluster: "other", Role: tlsutil.RoleNode, Name: "evil-c"}, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WriteFiles(cf, cp, kp); err != nil {
		t.Fatal(err)
	}
	clusterKey := filepath.Join(tc.TLSDir, tlsutil.GossipKeyFile)
	secA := testcluster.Security{Files: tlsutil.NodeFiles(otherDir, "evil-a"), GossipKeyFile: filepath.Join(otherDir, tlsutil.GossipKeyFile)}
	secB := testcluster.Security{Files: tlsutil.NodeFiles(otherDir, "evil-b"), GossipKeyFile: clusterKey}
	secC := testcluster.Security{Files: cf, Cluster: "other", GossipKeyFile: clusterKey}

	var impostors []*testcluster.Node
	for _, x := range []struct {
		id  string
		sec testcluster.Security
	}{{"evil-a", secA}, {"evil-b", secB}, {"evil-c", secC}} {
		impostors = append(impostors, tc.StartNode(t, x.id, 0, x.sec))
	}
	evilA, evilB, evilC := impostors[0], impostors[1], impostors[2]

	// B and C hold the gossip key, so gossip lets them in; the leader then asks each over
	// mutual TLS who it is, and refuses both.
	for _, id := range []string{"evil-b", "evil-c"} {
		eventually(t, 20*time.Second, "the leader refuses "+id, func() bool {
			return strings.Contains(logs.String(), "not adding gossip member: it does not answer over mutual TLS") &&
				strings.Contains(logs.String(), "id="+id)
		})
	}
	// A has another gossip key: no member ever sees it, and it sees nobody.
	for _, n := range tc.Nodes {
		if slices.Contains(n.GossipMembers(), "evil-a") {
			t.Fatalf("%s gossips with a node holding another gossip key: %v", n.ID(), n.GossipMembers())
		}
	}
	if got := evilA.GossipMembers(); !slices.Equal(got, []string{"evil-a"}) {
		t.Fatalf("the node with another gossip key sees members %v", got)
	}

	// The cluster keeps serving, and nobody joined raft.
	for i := range 5 {
		if err := tlsAppend(ctx, good, fmt.Sprintf("orders-%d", i)); err != nil {
			t.Fatalf("append while impostors knock: %v", err)
		}
	}
	st, err := cairnpb.NewClusterClient(good).Status(ctx, &cairnpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetMembers()) != 3 {
		t.Fatalf("raft configuration has %d members, want the 3 real ones: %v", len(st.GetMembers()), st.GetMembers())
	}
	for _, ev := range impostors {
		if id, _ := ev.Leader(); id != "" {
			t.Fatalf("impostor %s learnt a leader (%s) through raft", ev.ID(), id)
		}
		if ev.FSM().AppliedIndex() != 0 {
			t.Fatalf("impostor %s applied entries", ev.ID())
		}
	}

	// Forwarding from an impostor (its own forwarding dialer, as its api would use) and calling
	// the client API with its node certificate both fail the handshake.
	for _, x := range []struct {
		name string
		sec  testcluster.Security
	}{{"another CA", secB}, {"another cluster name", secC}} {
		l, err := tlsutil.Load(x.sec.Files, x.sec.Cluster, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		creds := credentials.NewTLS(l.ClientConfig(tlsutil.ProtoGRPC, tlsutil.RoleNode))
		fwd, err := api.SecureDialer(api.DefaultConfig(), nil, creds)(ctx, leader.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlsAppend(ctx, fwd, "orders-evil"); status.Code(err) != codes.Unavailable {
			t.Errorf("%s: forwarded append = %v, want UNAVAILABLE (handshake refused)", x.name, err)
		}
		fwd.Close()
	}
	// A client without a certificate, and a plaintext client, are refused.
	for name, creds := range map[string]credentials.TransportCredentials{
		"no certificate": credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}),
		"plaintext":      insecure.NewCredentials(),
	} {
		cc := dial(t, leader.Addr, creds)
		if err := tlsAppend(ctx, cc, "orders-anon"); status.Code(err) != codes.Unavailable {
			t.Errorf("%s: append = %v, want UNAVAILABLE", name, err)
		}
		cc.Close()
	}
	if _, _, rejected := leader.TLS.Stats(); rejected == 0 {
		t.Error("the leader counted no rejected peer")
	}
	if leader.TLS.HandshakeFailures() < 2 {
		t.Errorf("the leader counted %d failed gRPC handshakes, want the plaintext and certificate-less clients at least",
			leader.TLS.HandshakeFailures())
	}
	// Nothing written by an impostor.
	for _, s := range []string{"orders-evil", "orders-anon"} {
		r, err := cairnpb.NewEventsClient(good).Read(ctx, &cairnpb.ReadRequest{Stream: s})
		if status.Code(err) != codes.NotFound {
			t.Errorf("read %s = %v, %v; want NOT_FOUND", s, r, err)
		}
	}

	good.Close()
	for _, n := range append(tc.Nodes, evilA, evilB, evilC) {
		n.Kill()
	}
	goleak.VerifyNone(t, before, goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}
