package driver

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestLocalIsolateLeader starts three real nodes behind the proxies and checks that raft traffic
// really goes through them: isolating the leader's links makes the others elect a new leader.
func TestLocalIsolateLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts cairnd processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := Build(ctx, root, t.TempDir(), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := NewLocal(LocalOptions{Binary: bin, Dir: dir, Nodes: 3, Seed: 1,
		ExtraArgs: []string{"--heartbeat-timeout", "500ms", "--election-timeout", "500ms"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			for n, p := range l.LogPaths() {
				b, _ := os.ReadFile(p)
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("=== %s\n%s", n, b)
			}
		}
		if err := l.Close(false); err != nil {
			t.Error(err)
		}
	}()
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	old, err := WaitLeader(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Isolate(old); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for _, n := range l.Nodes() {
		if n != old {
			rest = append(rest, n)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		nl, err := WaitLeader(ctx, l, rest...)
		if err == nil && nl != old {
			t.Logf("isolated %s; %s took over", old, nl)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader after isolating %s: %v %v", old, nl, err)
		}
		time.Sleep(100 * time.Millisecond) // polling the cluster's state; no event to wait on
	}
	l.HealNetwork()
	if err := l.Kill(old); err != nil {
		t.Fatal(err)
	}
	if err := l.StartNode(old); err != nil {
		t.Fatal(err)
	}
	if _, err := WaitLeader(ctx, l); err != nil {
		t.Fatal(err)
	}
}
