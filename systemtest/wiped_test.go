package systemtest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/localcluster"
)

// A member whose data dir was wiped and that comes back under the same id must be refused: as an
// empty voter it could vote for a candidate that lacks committed entries. It exits with a clear
// error, and the cluster keeps serving; with a new id it would join as a new member.
func TestWipedMemberIsRefused(t *testing.T) {
	c := mustStartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "s", Expected: anyRev(),
		Events: []*cairnpb.EventData{event(newUUID())}}); err != nil {
		t.Fatal(err)
	}
	var victim = c.Nodes[0]
	if victim == leader {
		victim = c.Nodes[1]
	}
	if err := victim.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(victim.DataDir); err != nil {
		t.Fatal(err)
	}
	mustRefuseToStart(t, victim, "already a member of the cluster")
	if _, err := leader.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "s", Expected: anyRev(),
		Events: []*cairnpb.EventData{event(newUUID())}}); err != nil {
		t.Fatalf("the cluster stopped serving: %v", err)
	}
}

// A node whose data dir holds another cluster's data (a mixed-up volume) under the same node id is
// refused with a clear error instead of joining, and the cluster keeps serving.
func TestOtherClustersDataIsRefused(t *testing.T) {
	a := mustStartCluster(t, 3)
	b := mustStartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, c := range []*localcluster.Cluster{a, b} {
		leader, err := c.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leader.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "s", Expected: anyRev(),
			Events: []*cairnpb.EventData{event(newUUID())}}); err != nil {
			t.Fatal(err)
		}
	}
	leaderA, _ := a.WaitLeader(ctx)
	victim := a.Nodes[0]
	if victim == leaderA {
		victim = a.Nodes[1]
	}
	var donor *localcluster.Node
	for _, n := range b.Nodes {
		if n.ID == victim.ID {
			donor = n
		}
	}
	if err := victim.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := donor.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(victim.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(donor.DataDir, victim.DataDir); err != nil {
		t.Fatal(err)
	}
	mustRefuseToStart(t, victim, "belongs to another cluster")
	if _, err := leaderA.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "s", Expected: anyRev(),
		Events: []*cairnpb.EventData{event(newUUID())}}); err != nil {
		t.Fatalf("cluster A stopped serving: %v", err)
	}
}

// mustRefuseToStart starts n and expects it to exit non-zero by itself, saying why in its log.
func mustRefuseToStart(t *testing.T, n *localcluster.Node, why string) {
	t.Helper()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	exitErr, err := n.Wait(20 * time.Second)
	if err != nil {
		t.Fatalf("%s kept running: %v", n.ID, err)
	}
	if exitErr == nil {
		t.Fatalf("%s exited 0", n.ID)
	}
	if log, _ := os.ReadFile(n.LogPath); !strings.Contains(string(log), why) {
		t.Fatalf("no clear refusal (%q) in the log of %s", why, n.ID)
	}
}
