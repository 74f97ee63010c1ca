package api

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/cairndb/cairn/api/cairnpb"
)

func TestTombstoneRPC(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node)
	ctx := ctxT(t)
	mustAppend(t, ts.events, "s", evt(1, "A"))

	// Wrong expected revision: ABORTED, nothing written.
	_, err := ts.events.Tombstone(ctx, &cairnpb.TombstoneRequest{Stream: "s", Expected: exactRev(5)})
	wantStatus(t, err, codes.Aborted, ReasonWrongExpectedRevision)

	resp, err := ts.events.Tombstone(ctx, &cairnpb.TombstoneRequest{Stream: "s", Expected: exactRev(0)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPosition() != 2 || resp.GetLogIndex() == 0 || resp.GetCommitTime() == nil {
		t.Fatalf("tombstone response %v", resp)
	}
	// The stream can never be written again, and reads say why.
	_, err = ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(2, "A")}})
	wantStatus(t, err, codes.FailedPrecondition, ReasonStreamTombstoned)
	_, err = ts.events.Tombstone(ctx, &cairnpb.TombstoneRequest{Stream: "s"})
	wantStatus(t, err, codes.FailedPrecondition, ReasonStreamTombstoned)
	_, err = ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s"})
	wantStatus(t, err, codes.FailedPrecondition, ReasonStreamTombstoned)

	// Bad input never reaches the state machine.
	before := node.proposalCount()
	_, err = ts.events.Tombstone(ctx, &cairnpb.TombstoneRequest{Stream: "$system"})
	st := wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument)
	wantField(t, st, "stream", violationReservedPrefix)
	if node.proposalCount() != before {
		t.Fatal("an invalid tombstone was proposed")
	}
}

func TestTombstoneForwarded(t *testing.T) {
	leader := newFakeNode(t, "leader")
	lts := mustNewServer(t, leader)
	follower := newFakeNode(t, "follower")
	follower.setFollower("leader", lts.addr)
	fts := mustNewServer(t, follower)
	ctx := ctxT(t)
	mustAppend(t, lts.events, "s", evt(1, "A"))
	if _, err := fts.events.Tombstone(ctx, &cairnpb.TombstoneRequest{Stream: "s"}); err != nil {
		t.Fatalf("tombstone through a follower: %v", err)
	}
	if info := leader.fsm.Stream("s"); !info.Tombstoned {
		t.Fatal("the leader's stream is not tombstoned")
	}
	_, err := fts.events.Tombstone(ctx, &cairnpb.TombstoneRequest{Stream: "t", RequireLeader: true})
	wantStatus(t, err, codes.Unavailable, ReasonNotLeader)
}
