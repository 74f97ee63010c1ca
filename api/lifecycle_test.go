package api

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/fsm"
)

func noStreamRev() *cairnpb.ExpectedRevision {
	return &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_NO_STREAM}
}

func readRevisions(t *testing.T, ts *testServer, stream string) []uint64 {
	t.Helper()
	r, err := ts.events.Read(ctxT(t), &cairnpb.ReadRequest{Stream: stream})
	if err != nil {
		t.Fatalf("read %q: %v", stream, err)
	}
	return revisions(r.GetEvents())
}

func TestStreamMetadataRPCs(t *testing.T) {
	ts := mustNewServer(t, newFakeNode(t, "n1"))
	ctx := ctxT(t)
	for i := range 5 {
		mustAppend(t, ts.events, "s", evt(1+i, "A"))
	}
	mustAppend(t, ts.events, "other", evt(10, "B"))

	// No metadata yet.
	got, err := ts.events.GetStreamMetadata(ctx, &cairnpb.GetStreamMetadataRequest{Stream: "s"})
	if err != nil || got.GetExists() {
		t.Fatalf("metadata before any: %v %v", got, err)
	}
	set, err := ts.events.SetStreamMetadata(ctx, &cairnpb.SetStreamMetadataRequest{Stream: "s", Expected: noStreamRev(),
		Metadata: &cairnpb.StreamMetadata{MaxCount: proto.Uint64(2), User: map[string][]byte{"owner": []byte("team-a")}}})
	if err != nil || set.GetMetadataRevision() != 0 || set.GetPosition() != 7 {
		t.Fatalf("set: %v %v", set, err)
	}
	got, err = ts.events.GetStreamMetadata(ctx, &cairnpb.GetStreamMetadataRequest{Stream: "s"})
	if err != nil || !got.GetExists() || got.GetMetadataRevision() != 0 || got.GetMetadata().GetMaxCount() != 2 ||
		string(got.GetMetadata().GetUser()["owner"]) != "team-a" || got.GetMetadata().TruncateBefore != nil {
		t.Fatalf("get: %v %v", got, err)
	}
	// Reads, $all and stream info hide what max_count excludes, at once.
	if revs := readRevisions(t, ts, "s"); !slices.Equal(revs, []uint64{3, 4}) {
		t.Fatalf("read after max_count 2: %v", revs)
	}
	if pos := readAllPositions(t, ts, nil); !slices.Equal(pos, []uint64{4, 5, 6}) {
		t.Fatalf("$all after max_count 2: %v (metadata record and hidden events must not show)", pos)
	}
	info, err := ts.events.GetStreamInfo(ctx, &cairnpb.GetStreamInfoRequest{Stream: "s"})
	if err != nil || info.GetFirstRevision() != 3 || info.GetEventCount() != 2 || info.GetLastRevision() != 4 ||
		info.GetMetadataRevision() != 0 || info.GetMetadata().GetMaxCount() != 2 {
		t.Fatalf("info: %v %v", info, err)
	}

	// Wrong metadata revision: ABORTED with a metadata violation.
	_, err = ts.events.SetStreamMetadata(ctx, &cairnpb.SetStreamMetadataRequest{Stream: "s", Expected: noStreamRev(),
		Metadata: &cairnpb.StreamMetadata{}})
	st := wantStatus(t, err, codes.Aborted, ReasonWrongExpectedRevision)
	v := detailOf[*cairnpb.WrongExpectedRevision](t, st).GetViolations()
	if len(v) != 1 || !v[0].GetMetadata() || !v[0].GetStreamExists() || v[0].GetActualRevision() != 0 {
		t.Fatalf("violations %v", v)
	}
	// truncate_before and max_age replace max_count.
	if _, err := ts.events.SetStreamMetadata(ctx, &cairnpb.SetStreamMetadataRequest{Stream: "s", Expected: exactRev(0),
		Metadata: &cairnpb.StreamMetadata{TruncateBefore: proto.Uint64(1), MaxAge: durationpb.New(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if revs := readRevisions(t, ts, "s"); !slices.Equal(revs, []uint64{1, 2, 3, 4}) {
		t.Fatalf("read after truncate_before 1: %v", revs)
	}
}

func TestStreamMetadataErrors(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node)
	ctx := ctxT(t)
	set := func(stream string, md *cairnpb.StreamMetadata) error {
		_, err := ts.events.SetStreamMetadata(ctx, &cairnpb.SetStreamMetadataRequest{Stream: stream, Metadata: md})
		return err
	}
	for _, c := range []struct {
		name, stream, field, reason string
		md                          *cairnpb.StreamMetadata
	}{
		{"empty stream name", "", "stream", violationRequired, nil},
		{"reserved stream", "$x", "stream", violationReservedPrefix, nil},
		{"max_count 0", "s", "metadata.max_count", violationOutOfRange, &cairnpb.StreamMetadata{MaxCount: proto.Uint64(0)}},
		{"negative max_age", "s", "metadata.max_age", violationInvalidDuration, &cairnpb.StreamMetadata{MaxAge: durationpb.New(-time.Second)}},
		{"reserved user key", "s", "metadata.user", violationUnexpectedValue, &cairnpb.StreamMetadata{User: map[string][]byte{"$acl": nil}}},
		{"empty user key", "s", "metadata.user", violationUnexpectedValue, &cairnpb.StreamMetadata{User: map[string][]byte{"": nil}}},
	} {
		wantField(t, wantStatus(t, set(c.stream, c.md), codes.InvalidArgument, ReasonInvalidArgument), c.field, c.reason)
	}
	many := map[string][]byte{}
	for i := range fsm.MaxMetadataUserKeys + 1 {
		many[strings.Repeat("k", i+1)] = nil
	}
	wantStatus(t, set("s", &cairnpb.StreamMetadata{User: many}), codes.ResourceExhausted, ReasonLimitExceeded)
	big := map[string][]byte{"k": make([]byte, fsm.MaxMetadataUserBytes)}
	wantStatus(t, set("s", &cairnpb.StreamMetadata{User: big}), codes.ResourceExhausted, ReasonLimitExceeded)
	if n := node.proposalCount(); n != 0 {
		t.Fatalf("%d invalid requests reached Propose", n)
	}
	// A tombstoned stream takes no metadata.
	mustAppend(t, ts.events, "dead", evt(1, "A"))
	node.tombstone(t, "dead")
	wantStatus(t, set("dead", &cairnpb.StreamMetadata{}), codes.FailedPrecondition, ReasonStreamTombstoned)
	_, err := ts.events.GetStreamMetadata(ctx, &cairnpb.GetStreamMetadataRequest{Stream: ""})
	wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument)
}

func TestDeleteStreamRPC(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node)
	ctx := ctxT(t)
	del := func(stream string, exp *cairnpb.ExpectedRevision) (*cairnpb.DeleteStreamResponse, error) {
		return ts.events.DeleteStream(ctx, &cairnpb.DeleteStreamRequest{Stream: stream, Expected: exp})
	}
	_, err := del("missing", nil)
	wantStatus(t, err, codes.NotFound, ReasonStreamNotFound)
	_, err = del("", nil)
	wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument)

	mustAppend(t, ts.events, "s", evt(1, "A"), evt(2, "A"))
	_, err = del("s", exactRev(0))
	st := wantStatus(t, err, codes.Aborted, ReasonWrongExpectedRevision)
	if v := detailOf[*cairnpb.WrongExpectedRevision](t, st).GetViolations(); len(v) != 1 || v[0].GetActualRevision() != 1 {
		t.Fatalf("violations %v", v)
	}
	r, err := del("s", exactRev(1))
	if err != nil || r.GetPosition() != 3 {
		t.Fatalf("delete: %v %v", r, err)
	}
	_, err = ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s"})
	wantStatus(t, err, codes.NotFound, ReasonStreamNotFound)
	info, err := ts.events.GetStreamInfo(ctx, &cairnpb.GetStreamInfoRequest{Stream: "s"})
	if err != nil || info.GetExists() || !info.GetDeleted() || info.GetLastRevision() != 1 || info.GetEventCount() != 0 {
		t.Fatalf("info after delete: %v %v", info, err)
	}
	// $all shows the delete record, not the events.
	all, err := ts.events.ReadAll(ctx, &cairnpb.ReadAllRequest{})
	if err != nil || len(all.GetEvents()) != 1 || all.GetEvents()[0].GetType() != fsm.TypeSoftDelete || all.GetCheckpointPosition() != 3 {
		t.Fatalf("$all after delete: %v %v", all, err)
	}
	// STREAM_EXISTS fails on a deleted stream (the violation says deleted); NO_STREAM appends
	// and the revisions continue.
	_, err = ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(3, "A")},
		Expected: &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_STREAM_EXISTS}})
	st = wantStatus(t, err, codes.Aborted, ReasonWrongExpectedRevision)
	if v := detailOf[*cairnpb.WrongExpectedRevision](t, st).GetViolations(); len(v) != 1 || !v[0].GetDeleted() {
		t.Fatalf("violations %v", v)
	}
	a, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(4, "A")}, Expected: noStreamRev()})
	if err != nil || a.GetFirstRevision() != 2 {
		t.Fatalf("append after delete: %v %v", a, err)
	}
	if revs := readRevisions(t, ts, "s"); !slices.Equal(revs, []uint64{2}) {
		t.Fatalf("read after re-append: %v", revs)
	}
	// A tombstoned stream cannot be soft-deleted.
	node.tombstone(t, "s")
	_, err = del("s", nil)
	wantStatus(t, err, codes.FailedPrecondition, ReasonStreamTombstoned)
}

// Subscriptions skip hidden events, in catch-up and live, on $all and on the stream, and can
// start at a commit time.
func TestSubscribeHidesAndStartsAtTime(t *testing.T) {
	node := newFakeNode(t, "n1")
	base := time.Unix(1_800_000_000, 0)
	step := 0
	node.clock = func() time.Time { return base.Add(time.Duration(step) * time.Second) }
	ts := mustNewServer(t, node)
	ctx := ctxT(t)
	for i := range 4 { // positions 1-4, revisions 0-3, at base+0..3 s
		step = i
		mustAppend(t, ts.events, "s", evt(1+i, "A"))
	}
	step = 4
	if _, err := ts.events.SetStreamMetadata(ctx, &cairnpb.SetStreamMetadataRequest{Stream: "s",
		Metadata: &cairnpb.StreamMetadata{TruncateBefore: proto.Uint64(2)}}); err != nil { // position 5
		t.Fatal(err)
	}
	all := subscribe(t, ts, &cairnpb.SubscribeRequest{FromStart: true})
	evs, _ := recvUntil(t, all, 4)
	if got := positions(evs); !slices.Equal(got, []uint64{3, 4}) {
		t.Fatalf("$all catch-up: %v, want [3 4]", got)
	}
	stream := subscribe(t, ts, &cairnpb.SubscribeRequest{Stream: "s", FromStart: true})
	evs, _ = recvUntil(t, stream, 4)
	if got := revisions(evs); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("stream catch-up: %v, want [2 3]", got)
	}
	// Live: a new limit applies to events appended and delivered after it.
	step = 5
	if _, err := ts.events.SetStreamMetadata(ctx, &cairnpb.SetStreamMetadataRequest{Stream: "s",
		Metadata: &cairnpb.StreamMetadata{TruncateBefore: proto.Uint64(5)}}); err != nil { // position 6
		t.Fatal(err)
	}
	mustAppend(t, ts.events, "s", evt(5, "A"))     // position 7, revision 4: hidden
	mustAppend(t, ts.events, "s", evt(6, "A"))     // position 8, revision 5
	mustAppend(t, ts.events, "other", evt(7, "B")) // position 9
	if evs, _ = recvUntil(t, all, 9); !slices.Equal(positions(evs), []uint64{8, 9}) {
		t.Fatalf("$all live: %v, want [8 9]", positions(evs))
	}
	if evs, _ = recvUntil(t, stream, 8); !slices.Equal(revisions(evs), []uint64{5}) {
		t.Fatalf("stream live: %v, want [5]", revisions(evs))
	}

	// from_time: inclusive, binary search over commit times.
	step = 10
	mustAppend(t, ts.events, "late", evt(8, "C")) // position 10 at base+10 s
	from := timestamppb.New(base.Add(10 * time.Second))
	fromTime := subscribe(t, ts, &cairnpb.SubscribeRequest{FromTime: from})
	if evs, _ = recvUntil(t, fromTime, 10); !slices.Equal(positions(evs), []uint64{10}) {
		t.Fatalf("$all from time: %v, want [10]", positions(evs))
	}
	streamTime := subscribe(t, ts, &cairnpb.SubscribeRequest{Stream: "s", FromTime: timestamppb.New(base.Add(5 * time.Second))})
	if evs, _ = recvUntil(t, streamTime, 8); !slices.Equal(revisions(evs), []uint64{5}) {
		t.Fatalf("stream from time: %v, want [5]", revisions(evs))
	}
	// from_time excludes the other start points.
	bad, err := ts.events.Subscribe(ctx, &cairnpb.SubscribeRequest{FromTime: from, FromStart: true})
	if err == nil {
		_, err = bad.Recv()
	}
	wantField(t, wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument), "from_time", violationUnexpectedValue)
}

// Lifecycle writes go to the leader through a follower unless require_leader is set; metadata
// reads are forwarded like Read.
func TestLifecycleForwarded(t *testing.T) {
	leader := newFakeNode(t, "leader")
	lts := mustNewServer(t, leader)
	follower := newFakeNode(t, "follower")
	follower.setFollower("leader", lts.addr)
	fts := mustNewServer(t, follower)
	ctx := ctxT(t)
	mustAppend(t, lts.events, "s", evt(1, "A"), evt(2, "A"))
	if _, err := fts.events.SetStreamMetadata(ctx, &cairnpb.SetStreamMetadataRequest{Stream: "s",
		Metadata: &cairnpb.StreamMetadata{MaxCount: proto.Uint64(1)}}); err != nil {
		t.Fatalf("set metadata through a follower: %v", err)
	}
	if info := leader.fsm.Stream("s"); !info.HasMetadata || info.FirstRevision != 1 {
		t.Fatalf("leader's stream after forwarded metadata: %+v", info)
	}
	md, err := fts.events.GetStreamMetadata(ctx, &cairnpb.GetStreamMetadataRequest{Stream: "s"})
	if err != nil || md.GetMetadata().GetMaxCount() != 1 || md.GetServedBy().GetNodeId() != "leader" {
		t.Fatalf("metadata read through a follower: %v %v", md, err)
	}
	if _, err := fts.events.DeleteStream(ctx, &cairnpb.DeleteStreamRequest{Stream: "s"}); err != nil {
		t.Fatalf("delete through a follower: %v", err)
	}
	if info := leader.fsm.Stream("s"); !info.Deleted {
		t.Fatalf("leader's stream after forwarded delete: %+v", info)
	}
	_, err = fts.events.SetStreamMetadata(ctx, &cairnpb.SetStreamMetadataRequest{Stream: "t", RequireLeader: true})
	wantStatus(t, err, codes.Unavailable, ReasonNotLeader)
	_, err = fts.events.DeleteStream(ctx, &cairnpb.DeleteStreamRequest{Stream: "t", RequireLeader: true})
	wantStatus(t, err, codes.Unavailable, ReasonNotLeader)
}

// Stream reads can start at a commit time (forward only), and hiding still applies.
func TestReadFromTime(t *testing.T) {
	node := newFakeNode(t, "n1")
	base := time.Unix(1_800_000_000, 0)
	step := 0
	node.clock = func() time.Time { return base.Add(time.Duration(step) * time.Second) }
	ts := mustNewServer(t, node)
	ctx := ctxT(t)
	for i := range 4 { // revisions 0-3 at base+0..3 s
		step = i
		mustAppend(t, ts.events, "s", evt(1+i, "A"))
	}
	read := func(req *cairnpb.ReadRequest) []uint64 {
		t.Helper()
		r, err := ts.events.Read(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return revisions(r.GetEvents())
	}
	at := func(sec int) *timestamppb.Timestamp {
		return timestamppb.New(base.Add(time.Duration(sec) * time.Second))
	}
	if got := read(&cairnpb.ReadRequest{Stream: "s", FromTime: at(2)}); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("from +2s: %v, want [2 3]", got)
	}
	if got := read(&cairnpb.ReadRequest{Stream: "s", FromTime: at(2), StopAtTime: at(2)}); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("from +2s as of +2s: %v, want [2]", got)
	}
	if got := read(&cairnpb.ReadRequest{Stream: "s", FromTime: at(9)}); len(got) != 0 {
		t.Fatalf("from the future: %v", got)
	}
	if _, err := ts.events.SetStreamMetadata(ctx, &cairnpb.SetStreamMetadataRequest{Stream: "s",
		Metadata: &cairnpb.StreamMetadata{TruncateBefore: proto.Uint64(3)}}); err != nil {
		t.Fatal(err)
	}
	if got := read(&cairnpb.ReadRequest{Stream: "s", FromTime: at(0)}); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("from the start with truncate_before 3: %v, want [3]", got)
	}
	_, err := ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s", FromTime: at(1), Direction: cairnpb.Direction_DIRECTION_BACKWARD})
	wantField(t, wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument), "from_time", violationUnexpectedValue)
}
