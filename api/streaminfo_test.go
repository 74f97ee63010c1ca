package api

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/cairndb/cairn/api/cairnpb"
)

func TestGetStreamInfo(t *testing.T) {
	node := newFakeNode(t, "n1")
	base := time.Unix(1_800_000_000, 0)
	step := 0
	node.clock = func() time.Time { return base.Add(time.Duration(step) * time.Second) }
	ts := mustNewServer(t, node)
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		step = i
		mustAppend(t, ts.events, "s", evt(1+i, "A"))
	}
	info, err := ts.events.GetStreamInfo(ctx, &cairnpb.GetStreamInfoRequest{Stream: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if !info.GetExists() || info.GetTombstoned() || info.GetEventCount() != 3 || info.GetLastRevision() != 2 ||
		info.GetLastPosition() != 3 || !info.GetCreated().AsTime().Equal(base) ||
		!info.GetUpdated().AsTime().Equal(base.Add(2*time.Second)) || info.GetServedBy().GetNodeId() != "n1" {
		t.Fatalf("info %v", info)
	}
	if info, err := ts.events.GetStreamInfo(ctx, &cairnpb.GetStreamInfoRequest{Stream: "never"}); err != nil || info.GetExists() {
		t.Fatalf("missing stream: %v %v", info, err)
	}
	node.tombstone(t, "s")
	// A tombstone hides every event: none is counted, the last revision is still reported.
	if info, err := ts.events.GetStreamInfo(ctx, &cairnpb.GetStreamInfoRequest{Stream: "s"}); err != nil || !info.GetTombstoned() ||
		info.GetEventCount() != 0 || info.GetLastRevision() != 2 || info.GetFirstRevision() != 3 {
		t.Fatalf("tombstoned stream: %v %v", info, err)
	}
	_, err = ts.events.GetStreamInfo(ctx, &cairnpb.GetStreamInfoRequest{Stream: ""})
	wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument)
}
