package fsm

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/fsm/fsmpb"
)

// revisions returns the revisions of a forward read of the whole stream, or the read's error.
func revisions(t *testing.T, f *FSM, name string) ([]uint64, error) {
	t.Helper()
	evs, err := f.ReadStream(name, Start, Forward, 1<<20)
	var out []uint64
	for _, e := range evs {
		out = append(out, e.Revision)
	}
	return out, err
}

func wantRevisions(t *testing.T, f *FSM, name string, want ...uint64) {
	t.Helper()
	got, err := revisions(t, f, name)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("read %q: revisions %v, err %v; want %v", name, got, err, want)
	}
}

// visibleAll returns the positions of $all that Hidden does not hide.
func visibleAll(t *testing.T, f *FSM, now int64) []uint64 {
	t.Helper()
	recs, err := f.ReadAll(Start, Forward, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	hidden := f.Hidden(now)
	var out []uint64
	for i := range recs {
		if !hidden(&recs[i]) {
			out = append(out, recs[i].Position)
		}
	}
	return out
}

func fiveEvents(t *testing.T, f *FSM, stream string, firstID uint64, index uint64, ts int64) {
	t.Helper()
	for i := range uint64(5) {
		mustOK(t, apply1(t, f, index+i, ts+int64(i)*10, appendReq(part(stream, any_(), ev(firstID+i)))))
	}
}

func TestMetadataLimitsHideAPrefix(t *testing.T) {
	now := int64(1000)
	f := mustOpen(t, t.TempDir(), func(c *Config) { c.Now = func() int64 { return now } })
	fiveEvents(t, f, "s", 1, 1, 100) // revisions 0-4 at positions 1-5, ts 100..140
	wantRevisions(t, f, "s", 0, 1, 2, 3, 4)

	// max_count keeps the newest events.
	r := mustOK(t, apply1(t, f, 6, 200, setMetaReq("s", noStream(), &fsmpb.StreamMetadata{MaxCount: proto.Uint64(2)})))
	if r.Streams[0].FirstRevision != 0 || r.Streams[0].FirstPosition != 6 {
		t.Fatalf("first metadata result %+v", r.Streams[0])
	}
	wantRevisions(t, f, "s", 3, 4)
	if info := f.Stream("s"); info.FirstRevision != 3 || info.Count != 2 || !info.HasMetadata || info.MetadataRevision != 0 || !info.Exists {
		t.Fatalf("info %+v", info)
	}
	// $all hides the same events and the metadata record itself.
	if got := visibleAll(t, f, now); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("$all visible %v", got)
	}
	// Backward reads end at the first visible revision.
	evs, err := f.ReadStream("s", End, Backward, 10)
	if err != nil || len(evs) != 2 || evs[1].Revision != 3 {
		t.Fatalf("backward: %v %+v", err, evs)
	}
	if evs, err := f.ReadStream("s", 2, Backward, 10); err != nil || len(evs) != 0 {
		t.Fatalf("backward from a hidden revision: %v %d events", err, len(evs))
	}

	// Replacing the metadata: truncate_before alone (max_count is gone).
	wantViolation(t, apply1(t, f, 7, 200, setMetaReq("s", exact(5), &fsmpb.StreamMetadata{})), ErrWrongExpectedRevision,
		Violation{Stream: "s", Expected: expectedOf(exact(5)), StreamExists: true, ActualRevision: 0, Metadata: true})
	mustOK(t, apply1(t, f, 8, 200, setMetaReq("s", exact(0), &fsmpb.StreamMetadata{TruncateBefore: proto.Uint64(1)})))
	wantRevisions(t, f, "s", 1, 2, 3, 4)

	// max_age: at now=1000, age 875 hides ts < 125, i.e. revisions 0-2 (ts 100, 110, 120).
	mustOK(t, apply1(t, f, 9, 200, setMetaReq("s", exists(), &fsmpb.StreamMetadata{MaxAgeNanos: 875})))
	wantRevisions(t, f, "s", 3, 4)
	now = 2000 // everything is older now: the stream exists but shows nothing
	wantRevisions(t, f, "s")
	if info := f.Stream("s"); !info.Exists || info.Count != 0 || info.FirstRevision != 5 {
		t.Fatalf("info with everything expired %+v", info)
	}
	// Appends continue the numbering; the new event is young enough.
	mustOK(t, apply1(t, f, 10, 1990, appendReq(part("s", exact(4), ev(6)))))
	wantRevisions(t, f, "s", 5)

	md, err := f.StreamMetadata(t.Context(), "s")
	if err != nil || !md.Exists || md.Revision != 2 || md.Metadata.MaxAge != 875 || md.Metadata.HasMaxCount {
		t.Fatalf("metadata %+v %v", md, err)
	}
}

func TestMetadataValidationAndUserKeys(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	for i, md := range []*fsmpb.StreamMetadata{
		{MaxCount: proto.Uint64(0)},
		{MaxAgeNanos: -1},
		{User: []*fsmpb.UserKey{{Key: "$acl"}}},
		{User: []*fsmpb.UserKey{{Key: ""}}},
		{User: []*fsmpb.UserKey{{Key: "a"}, {Key: "a"}}},
		{User: []*fsmpb.UserKey{{Key: "big", Value: make([]byte, MaxMetadataUserBytes)}}},
	} {
		if r := apply1(t, f, uint64(i+1), 10, setMetaReq("s", any_(), md)); !errors.Is(r.Err, ErrInvalidCommand) {
			t.Fatalf("metadata %v: %v, want ErrInvalidCommand", md, r.Err)
		}
	}
	if f.LastPosition() != 0 {
		t.Fatalf("rejected metadata wrote records: last position %d", f.LastPosition())
	}
	// Absent metadata is empty metadata (it clears every limit).
	mustOK(t, apply1(t, f, 9, 10, setMetaReq("empty", any_(), nil)))
	// A stream needs no events to have metadata; user keys come back sorted and intact.
	mustOK(t, apply1(t, f, 10, 10, setMetaReq("new", noStream(), &fsmpb.StreamMetadata{User: []*fsmpb.UserKey{
		{Key: "z", Value: []byte("last")}, {Key: "a", Value: []byte("first")}}})))
	md, err := f.StreamMetadata(t.Context(), "new")
	if err != nil || !md.Exists || string(md.Metadata.User["a"]) != "first" || string(md.Metadata.User["z"]) != "last" {
		t.Fatalf("metadata %+v %v", md, err)
	}
	if info := f.Stream("new"); info.Exists || !info.HasMetadata {
		t.Fatalf("info %+v", info)
	}
	if _, err := f.ReadStream("new", Start, Forward, 1); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("read of a stream with only metadata: %v", err)
	}
	// Tombstoned streams take no metadata.
	mustOK(t, apply1(t, f, 11, 10, tombstoneReq("new", any_())))
	wantViolation(t, apply1(t, f, 12, 10, setMetaReq("new", any_(), &fsmpb.StreamMetadata{})), ErrStreamTombstoned,
		Violation{Stream: "new", Expected: expectedOf(any_()), StreamExists: true, Tombstoned: true, Metadata: true})
}

func TestSoftDelete(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	if r := apply1(t, f, 1, 10, softDeleteReq("s", any_())); !errors.Is(r.Err, ErrStreamNotFound) {
		t.Fatalf("soft delete of a missing stream: %v", r.Err)
	}
	fiveEvents(t, f, "s", 1, 2, 100) // revisions 0-4, positions 1-5
	wantViolation(t, apply1(t, f, 7, 200, softDeleteReq("s", exact(3))), ErrWrongExpectedRevision,
		Violation{Stream: "s", Expected: expectedOf(exact(3)), StreamExists: true, ActualRevision: 4})
	r := mustOK(t, apply1(t, f, 8, 200, softDeleteReq("s", exact(4))))
	if r.Streams[0].FirstPosition != 6 {
		t.Fatalf("delete result %+v", r.Streams[0])
	}
	if _, err := revisions(t, f, "s"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("read after soft delete: %v", err)
	}
	if info := f.Stream("s"); info.Exists || !info.Deleted || info.LastRevision != 4 || info.Count != 0 {
		t.Fatalf("info %+v", info)
	}
	// $all hides the events but shows the delete record.
	if got := visibleAll(t, f, 0); !slices.Equal(got, []uint64{6}) {
		t.Fatalf("$all visible %v", got)
	}
	// STREAM_EXISTS fails on a deleted stream; NO_STREAM appends, continuing the revisions.
	wantViolation(t, apply1(t, f, 9, 200, appendReq(part("s", exists(), ev(10)))), ErrWrongExpectedRevision,
		Violation{Stream: "s", Expected: expectedOf(exists()), StreamExists: true, ActualRevision: 4, Deleted: true})
	a := mustOK(t, apply1(t, f, 10, 200, appendReq(part("s", noStream(), ev(11)))))
	if a.Streams[0].FirstRevision != 5 {
		t.Fatalf("append after delete: first revision %d, want 5", a.Streams[0].FirstRevision)
	}
	wantRevisions(t, f, "s", 5)
	if info := f.Stream("s"); !info.Exists || info.Deleted || info.FirstRevision != 5 || info.Count != 1 {
		t.Fatalf("info after re-append %+v", info)
	}
	if got := visibleAll(t, f, 0); !slices.Equal(got, []uint64{6, 7}) {
		t.Fatalf("$all visible %v", got)
	}
	// A tombstone after a soft delete hides everything and fails reads.
	mustOK(t, apply1(t, f, 11, 200, tombstoneReq("s", any_())))
	if _, err := revisions(t, f, "s"); !errors.Is(err, ErrStreamTombstoned) {
		t.Fatalf("read after tombstone: %v", err)
	}
	if got := visibleAll(t, f, 0); !slices.Equal(got, []uint64{6, 8}) {
		t.Fatalf("$all visible after tombstone %v", got)
	}
}

func TestStreamRevisionAtTime(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	fiveEvents(t, f, "s", 1, 1, 100)                                     // ts 100..140
	mustOK(t, apply1(t, f, 6, 125, appendReq(part("o", any_(), ev(9))))) // position 6, ts 140 (clamped)
	for _, c := range []struct {
		ts   int64
		want uint64
	}{{0, 0}, {100, 0}, {101, 1}, {120, 2}, {140, 4}, {141, 5}} {
		if got := f.StreamRevisionAtTime("s", c.ts); got != c.want {
			t.Fatalf("revision at %d: %d, want %d", c.ts, got, c.want)
		}
	}
}

// Lifecycle state is in the records: a restart and a snapshot install rebuild it.
func TestLifecycleSurvivesRestartAndSnapshot(t *testing.T) {
	dir := t.TempDir()
	now := func() int64 { return 1000 }
	f := mustOpen(t, dir, func(c *Config) { c.Now = now })
	fiveEvents(t, f, "a", 1, 1, 100)
	fiveEvents(t, f, "b", 11, 6, 100)
	mustOK(t, apply1(t, f, 11, 200, setMetaReq("a", any_(), &fsmpb.StreamMetadata{MaxCount: proto.Uint64(3),
		User: []*fsmpb.UserKey{{Key: "k", Value: []byte("v")}}})))
	mustOK(t, apply1(t, f, 12, 200, softDeleteReq("b", any_())))
	before := observe(t, f)
	wantMeta, err := f.StreamMetadata(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	data := mustSnapshot(t, f)
	f.Close()

	again := mustOpen(t, dir, func(c *Config) { c.Now = now })
	restored := mustOpen(t, t.TempDir(), func(c *Config) { c.Now = now })
	if err := restored.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	for name, g := range map[string]*FSM{"restart": again, "restore": restored} {
		after := observe(t, g)
		for s, info := range before.Streams {
			if after.Streams[s] != info {
				t.Fatalf("%s: stream %q %+v, want %+v", name, s, after.Streams[s], info)
			}
		}
		wantRevisions(t, g, "a", 2, 3, 4)
		if _, err := revisions(t, g, "b"); !errors.Is(err, ErrStreamNotFound) {
			t.Fatalf("%s: read of deleted stream: %v", name, err)
		}
		md, err := g.StreamMetadata(t.Context(), "a")
		if err != nil || md.Revision != wantMeta.Revision || md.Position != wantMeta.Position ||
			string(md.Metadata.User["k"]) != "v" || md.Metadata.MaxCount != 3 {
			t.Fatalf("%s: metadata %+v %v, want %+v", name, md, err, wantMeta)
		}
	}
}
