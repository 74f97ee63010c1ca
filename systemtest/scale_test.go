package systemtest

import (
	"context"
	"testing"
	"time"

	"github.com/cairndb/cairn/api/cairnpb"
)

// A node started later with only --join is added by the leader as a non-voter, catches up, and
// is promoted to voter (DESIGN §9); the same command line without --bootstrap-expect.
func TestScaleUpJoinsAsNonVoterThenPromoted(t *testing.T) {
	c := mustStartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var last *cairnpb.AppendResponse
	for range 50 {
		if last, err = leader.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "s", Expected: anyRev(),
			Events: []*cairnpb.EventData{event(newUUID())}}); err != nil {
			t.Fatal(err)
		}
	}
	n4, err := c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	sawNonVoter := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := leader.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		suffrage := ""
		for _, m := range st.GetMembers() {
			if m.GetId() == n4.ID {
				suffrage = m.GetSuffrage()
			}
		}
		sawNonVoter = sawNonVoter || suffrage == "nonvoter"
		if suffrage == "voter" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not promoted within 30s (suffrage %q)", n4.ID, suffrage)
		}
		time.Sleep(100 * time.Millisecond) // polling the leader's configuration, bounded
	}
	if !sawNonVoter {
		// Promotion waits PromoteAfter (5 s) of being caught up, so the phase is long enough to see.
		t.Fatal("the new node became a voter without first being a non-voter")
	}
	resp, err := n4.Events().Read(ctx, &cairnpb.ReadRequest{Stream: "s", Limit: 100, Options: stale(last.GetLogIndex())})
	if err != nil || len(resp.GetEvents()) != 50 {
		t.Fatalf("new node: %v, %d events", err, len(resp.GetEvents()))
	}
}
