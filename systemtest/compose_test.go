//go:build compose

package systemtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/client"
)

// composeProject keeps the smoke test's containers and volumes apart from a user's own
// `make compose-up` cluster (same file, other project name).
const composeProject = "cairn-smoke"

func composeCmd() []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	return []string{"docker-compose"}
}

func compose(t *testing.T, args ...string) string {
	t.Helper()
	c := composeCmd()
	full := append(append(c[1:], "-p", composeProject, "-f", "../docker-compose.yml"), args...)
	out, err := exec.Command(c[0], full...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", c[0], strings.Join(full, " "), err, out)
	}
	return string(out)
}

type composeNode struct {
	service string
	events  cairnpb.EventsClient
	cluster cairnpb.ClusterClient
}

func healthy(t *testing.T, service string) bool {
	id := strings.TrimSpace(compose(t, "ps", "-q", service))
	if id == "" {
		return false
	}
	out, err := exec.Command("docker", "inspect", "--format", "{{.State.Health.Status}}", id).Output()
	return err == nil && strings.TrimSpace(string(out)) == "healthy"
}

func waitHealthy(t *testing.T, services ...string) {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for _, s := range services {
		for !healthy(t, s) {
			if time.Now().After(deadline) {
				t.Fatalf("%s not healthy within 120s:\n%s", s, compose(t, "logs", "--tail", "50", s))
			}
			time.Sleep(500 * time.Millisecond) // polling docker's health status, bounded
		}
	}
}

func TestComposeSmoke(t *testing.T) {
	mk := exec.Command("make", "-C", "..", "images", "compose-tls")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make images compose-tls: %v\n%s", err, out)
	}
	// The compose cluster runs with mutual TLS; the host connects with the admin client
	// certificate `make compose-tls` wrote.
	tlsDir := filepath.Join("..", ".cairn", "compose-tls")
	tlsCfg, err := client.LoadTLS(filepath.Join(tlsDir, "ca.crt"), filepath.Join(tlsDir, "client-admin.crt"),
		filepath.Join(tlsDir, "client-admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(compose(t, "logs", "--tail", "80"))
		}
		compose(t, "down", "-v", "--remove-orphans")
	})
	compose(t, "down", "-v", "--remove-orphans") // leftovers of an interrupted run
	compose(t, "up", "-d")
	waitHealthy(t, "node1", "node2", "node3")

	nodes := map[string]*composeNode{}
	for i, s := range []string{"node1", "node2", "node3"} {
		cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", 17101+i), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		nodes[s] = &composeNode{service: s, events: cairnpb.NewEventsClient(cc), cluster: cairnpb.NewClusterClient(cc)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Append and read back through every published port.
	for s, n := range nodes {
		resp, err := n.events.Append(ctx, &cairnpb.AppendRequest{Stream: "smoke-" + s, Expected: anyRev(),
			Events: []*cairnpb.EventData{event(newUUID())}})
		if err != nil {
			t.Fatalf("append through %s: %v", s, err)
		}
		r, err := n.events.Read(ctx, &cairnpb.ReadRequest{Stream: "smoke-" + s, Options: stale(resp.GetLogIndex())})
		if err != nil || len(r.GetEvents()) != 1 {
			t.Fatalf("read through %s: %v", s, err)
		}
	}

	st, err := nodes["node1"].cluster.Status(ctx, &cairnpb.StatusRequest{})
	if err != nil || st.GetLeaderId() == "" {
		t.Fatalf("status: %v %v", st, err)
	}
	leader := st.GetLeaderId()
	compose(t, "kill", leader)
	t.Logf("killed leader %s", leader)

	// Appends continue through the survivors; every acknowledged one must survive.
	var others []*composeNode
	for s, n := range nodes {
		if s != leader {
			others = append(others, n)
		}
	}
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	load, stop := context.WithTimeout(ctx, 6*time.Second)
	defer stop()
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 2))
			for load.Err() == nil {
				id := newUUID()
				for load.Err() == nil {
					n := others[rng.IntN(len(others))]
					cctx, ccancel := context.WithTimeout(load, 2*time.Second)
					_, err := n.events.Append(cctx, &cairnpb.AppendRequest{Stream: fmt.Sprintf("heal-%d", i), Expected: anyRev(),
						Events: []*cairnpb.EventData{event(id)}})
					ccancel()
					if err == nil {
						mu.Lock()
						acked = append(acked, id)
						mu.Unlock()
						break
					}
					if !retryable(err) {
						t.Errorf("append: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(acked) < 20 {
		t.Fatalf("only %d appends acknowledged with the leader down", len(acked))
	}
	compose(t, "start", leader)
	waitHealthy(t, leader)

	marker, err := others[0].events.Append(ctx, &cairnpb.AppendRequest{Stream: "marker", Expected: anyRev(),
		Events: []*cairnpb.EventData{event(newUUID())}})
	if err != nil {
		t.Fatal(err)
	}
	var digest string
	for s, n := range nodes {
		seen := map[string]bool{}
		from := uint64(1)
		for {
			r, err := n.events.ReadAll(ctx, &cairnpb.ReadAllRequest{FromPosition: from, Limit: 5000, Options: stale(marker.GetLogIndex())},
				grpc.WaitForReady(true))
			if err != nil {
				t.Fatalf("read $all on %s: %v", s, err)
			}
			for _, e := range r.GetEvents() {
				seen[e.GetId()] = true
			}
			if r.GetEndOfLog() || len(r.GetEvents()) == 0 {
				break
			}
			from = r.GetEvents()[len(r.GetEvents())-1].GetPosition() + 1
		}
		for _, id := range acked {
			if !seen[id] {
				t.Fatalf("%s lost acknowledged event %s", s, id)
			}
		}
		d, err := n.cluster.Digest(ctx, &cairnpb.DigestRequest{UpToPosition: marker.GetLastPosition()})
		if err != nil || d.GetLastPosition() != marker.GetLastPosition() {
			t.Fatalf("digest on %s: %v %v", s, d, err)
		}
		if digest != "" && d.GetSha256() != digest {
			t.Fatalf("%s diverged: digest %s, others %s", s, d.GetSha256(), digest)
		}
		digest = d.GetSha256()
	}
	t.Logf("%d appends acknowledged during the outage; all 3 nodes hold them and agree (digest %s)", len(acked), digest[:12])
}
