package systemtest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/api/cairnpb"
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
