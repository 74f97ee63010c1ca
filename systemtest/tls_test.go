package systemtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/localcluster"
)

// A cluster of real cairnd processes with mutual TLS on every channel: it elects a leader and
// serves over TLS, refuses plaintext, a fourth node with a certificate of the same CA joins and
// is promoted (the leader's identity check passes for a real member), and a process started
// without TLS flags or --dev-insecure refuses to start.
func TestTLSClusterOfProcesses(t *testing.T) {
	c := mustStartClusterWith(t, localcluster.Options{Nodes: 3, TLS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "tls-1", Events: []*cairnpb.EventData{event(newUUID())}}); err != nil {
		t.Fatalf("append over mutual TLS: %v", err)
	}
	// Forwarding over mutual TLS: append through a follower.
	for _, n := range c.Nodes {
		if n != leader {
			if _, err := n.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "tls-1", Events: []*cairnpb.EventData{event(newUUID())}}); err != nil {
				t.Fatalf("append through follower %s: %v", n.ID, err)
			}
			break
		}
	}

	plain, err := grpc.NewClient(leader.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = cairnpb.NewClusterClient(plain).Status(pctx, &cairnpb.StatusRequest{})
	pcancel()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext status against a TLS node = %v, want UNAVAILABLE", err)
	}

	n4, err := c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	for {
		st, err := leader.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		promoted := false
		for _, m := range st.GetMembers() {
			promoted = promoted || m.GetId() == n4.ID && m.GetSuffrage() == "voter"
		}
		if promoted {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not promoted over TLS: %v", n4.ID, ctx.Err())
		case <-time.After(100 * time.Millisecond): // polling the configuration, bounded by ctx
		}
	}
	b, err := os.ReadFile(leader.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "mutual TLS on every channel") || strings.Contains(string(b), "INSECURE") {
		t.Fatal("the leader's log does not say it runs with mutual TLS")
	}

	// No TLS flags and no --dev-insecure: the process refuses to start, saying why.
	solo, err := localcluster.Start(localcluster.Options{Binary: binary, Dir: filepath.Join(t.TempDir(), "solo"), Nodes: 1,
		ExtraArgs: []string{"--dev-insecure=false"}})
	if err != nil {
		t.Fatal(err)
	}
	defer solo.Close()
	exitErr, err := solo.Nodes[0].Wait(10 * time.Second)
	if err != nil || exitErr == nil {
		t.Fatalf("cairnd without TLS or --dev-insecure: exit %v, %v; want a failed exit", exitErr, err)
	}
	if b, _ := os.ReadFile(solo.Nodes[0].LogPath); !strings.Contains(string(b), "no TLS material") {
		t.Fatalf("refusal does not explain itself:\n%s", b)
	}
}
