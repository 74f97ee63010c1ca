package api

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cairndb/cairn/api/cairnpb"
)

// "As of T" reads return exactly the events committed at or before T (issue 4, acceptance 3),
// and a read of $all can start at a time.
func TestTimeTravel(t *testing.T) {
	node := newFakeNode(t, "n1")
	base := time.Unix(1_800_000_000, 0)
	step := 0
	node.clock = func() time.Time { return base.Add(time.Duration(step) * time.Second) }
	ts := mustNewServer(t, node)
	ctx := ctxT(t)
	// s: revisions 0..4 at base+0s..4s; other events in between.
	for i := 0; i < 5; i++ {
		step = i
		mustAppend(t, ts.events, "s", evt(10+i, "A"))
		mustAppend(t, ts.events, "o", evt(20+i, "B"))
	}
	at := func(sec int) *timestamppb.Timestamp {
		return timestamppb.New(base.Add(time.Duration(sec) * time.Second))
	}

	r, err := ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s", StopAtTime: at(2)})
	if err != nil {
		t.Fatal(err)
	}
	if got := revisions(r.GetEvents()); len(got) != 3 || got[2] != 2 || !r.GetEndOfStream() {
		t.Fatalf("stream as of +2s: revisions %v, end %v", got, r.GetEndOfStream())
	}
	r, err = ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s", FromEnd: true, Direction: cairnpb.Direction_DIRECTION_BACKWARD,
		Limit: 10, StopAtTime: at(1)})
	if err != nil {
		t.Fatal(err)
	}
	if got := revisions(r.GetEvents()); len(got) != 2 || got[0] != 1 || got[1] != 0 {
		t.Fatalf("stream backward as of +1s: %v", got)
	}
	// Positions: s@0=1, o@0=2, s@1=3, o@1=4, ...; as of position 4 the stream has revisions 0, 1.
	r, err = ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s", StopAtPosition: 4})
	if err != nil || len(r.GetEvents()) != 2 {
		t.Fatalf("stream as of position 4: %v %v", revisions(r.GetEvents()), err)
	}

	all, err := ts.events.ReadAll(ctx, &cairnpb.ReadAllRequest{FromTime: at(3), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got := positions(all.GetEvents()); len(got) != 4 || got[0] != 7 {
		t.Fatalf("$all from +3s: %v", got)
	}
	all, err = ts.events.ReadAll(ctx, &cairnpb.ReadAllRequest{FromEnd: true, Direction: cairnpb.Direction_DIRECTION_BACKWARD,
		StopAtTime: at(0), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got := positions(all.GetEvents()); len(got) != 2 || got[0] != 2 || got[1] != 1 {
		t.Fatalf("$all backward as of +0s: %v", got)
	}
	_, err = ts.events.ReadAll(ctx, &cairnpb.ReadAllRequest{FromTime: at(1), FromEnd: true})
	wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument)
}
