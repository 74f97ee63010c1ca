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
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	exitErr, err := victim.Wait(20 * time.Second)
	if err != nil {
		t.Fatalf("the wiped node kept running: %v", err)
	}
	if exitErr == nil {
		t.Fatal("the wiped node exited 0")
	}
	log, _ := os.ReadFile(victim.LogPath)
	if !strings.Contains(string(log), "already a member of the cluster") {
		t.Fatalf("no clear refusal in the log of %s", victim.ID)
	}
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
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	exitErr, err := victim.Wait(20 * time.Second)
	if err != nil {
		t.Fatalf("a node with another cluster's data kept running: %v", err)
	}
	if exitErr == nil {
		t.Fatal("it exited 0")
	}
	logb, _ := os.ReadFile(victim.LogPath)
	if !strings.Contains(string(logb), "belongs to another cluster") {
		t.Fatalf("no clear refusal in the log of %s", victim.ID)
	}
	if _, err := leaderA.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "s", Expected: anyRev(),
		Events: []*cairnpb.EventData{event(newUUID())}}); err != nil {
		t.Fatalf("cluster A stopped serving: %v", err)
	}
}
