package fsm

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm/fsmpb"
)

func wantViolation(t *testing.T, r Result, sentinel error, want Violation) {
	t.Helper()
	if !errors.Is(r.Err, sentinel) {
		t.Fatalf("got error %v, want %v", r.Err, sentinel)
	}
	var ce *ConditionError
	if !errors.As(r.Err, &ce) || len(ce.Violations) != 1 {
		t.Fatalf("got %#v, want one violation", r.Err)
	}
	if diff := cmp.Diff(want, ce.Violations[0]); diff != "" {
		t.Fatalf("violation (-want +got):\n%s", diff)
	}
}

func TestExpectedRevision(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	// "s" has revisions 0 and 1.
	mustOK(t, apply1(t, f, 1, 100, appendReq(part("s", noStream(), ev(1), ev(2)))))

	tests := []struct {
		name       string
		stream     string
		exp        *fsmpb.ExpectedRevision
		wantErr    error
		wantRev    uint64 // first revision written, on success
		wantExists bool   // actual state reported in the violation
		wantActual uint64
	}{
		{name: "any on new stream", stream: "n1", exp: any_(), wantRev: 0},
		{name: "any on existing stream", stream: "s", exp: any_(), wantRev: 2},
		{name: "no stream on new stream", stream: "n2", exp: noStream(), wantRev: 0},
		{name: "no stream on existing stream", stream: "s", exp: noStream(), wantErr: ErrWrongExpectedRevision, wantExists: true, wantActual: 2},
		{name: "stream exists on new stream", stream: "n3", exp: exists(), wantErr: ErrWrongExpectedRevision},
		{name: "stream exists on existing stream", stream: "s", exp: exists(), wantRev: 3},
		{name: "exact match", stream: "s", exp: exact(3), wantRev: 4},
		{name: "exact behind", stream: "s", exp: exact(1), wantErr: ErrWrongExpectedRevision, wantExists: true, wantActual: 4},
		{name: "exact ahead", stream: "s", exp: exact(9), wantErr: ErrWrongExpectedRevision, wantExists: true, wantActual: 4},
		{name: "exact on new stream", stream: "n4", exp: exact(0), wantErr: ErrWrongExpectedRevision},
	}
	index := uint64(2)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.LastPosition()
			r := apply1(t, f, index, 100, appendReq(part(tt.stream, tt.exp, ev(uint64(100+i)))))
			index++
			if tt.wantErr != nil {
				wantViolation(t, r, tt.wantErr, Violation{Stream: tt.stream, Expected: expectedOf(tt.exp),
					StreamExists: tt.wantExists, ActualRevision: tt.wantActual})
				if f.LastPosition() != before {
					t.Fatalf("a failed append wrote: last position %d -> %d", before, f.LastPosition())
				}
				return
			}
			mustOK(t, r)
			if got := r.Streams[0].FirstRevision; got != tt.wantRev {
				t.Fatalf("first revision %d, want %d", got, tt.wantRev)
			}
			if r.Streams[0].FirstPosition != before+1 || f.LastPosition() != before+1 {
				t.Fatalf("position %d, last %d; want %d", r.Streams[0].FirstPosition, f.LastPosition(), before+1)
			}
		})
	}
}

func TestIdempotentRetryEveryExpectedForm(t *testing.T) {
	for _, tt := range []struct {
		name    string
		exp     *fsmpb.ExpectedRevision
		prefill bool // "s" already has one event when the original append arrives
	}{
		{"any", any_(), true},
		{"no stream", noStream(), false},
		{"stream exists", exists(), true},
		{"exact", exact(0), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := mustOpen(t, t.TempDir())
			if tt.prefill {
				mustOK(t, apply1(t, f, 1, 10, appendReq(part("s", noStream(), ev(1)))))
			}
			req := appendReq(part("s", tt.exp, ev(2), ev(3)))
			orig := mustOK(t, apply1(t, f, 2, 20, req))
			// Other writes move the stream on before the retry arrives.
			mustOK(t, apply1(t, f, 3, 30, appendReq(part("s", any_(), ev(4)))))
			last := f.LastPosition()

			retry := mustOK(t, apply1(t, f, 4, 40, req))
			if !retry.Idempotent {
				t.Fatal("retry not recognised as idempotent")
			}
			orig.Idempotent = true
			if diff := cmp.Diff(orig, retry); diff != "" {
				t.Fatalf("retry result differs from the original (-orig +retry):\n%s", diff)
			}
			if f.LastPosition() != last {
				t.Fatalf("retry wrote: last position %d -> %d", last, f.LastPosition())
			}
		})
	}
}

func TestIdempotencyConflicts(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	mustOK(t, apply1(t, f, 1, 10, appendReq(part("s", noStream(), ev(1), ev(2)))))
	mustOK(t, apply1(t, f, 2, 10, appendReq(part("other", noStream(), ev(3)))))
	last := f.LastPosition()
	for i, tt := range []struct {
		name string
		req  *fsmpb.Request
	}{
		{"partial overlap", appendReq(part("s", any_(), ev(2), ev(9)))},
		{"stored in another stream", appendReq(part("s", any_(), ev(3)))},
		{"stored in another order", appendReq(part("s", any_(), ev(2), ev(1)))},
		{"repeated within the request", appendReq(part("x", any_(), ev(7), ev(7)))},
		{"multi: one part stored, one new", appendReq(part("s", any_(), ev(1), ev(2)), part("y", any_(), ev(8)))},
		{"multi: parts stored by different appends", appendReq(part("s", any_(), ev(1), ev(2)), part("other", any_(), ev(3)))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := apply1(t, f, uint64(3+i), 10, tt.req)
			var ce *EventIDConflictError
			if !errors.Is(r.Err, ErrEventIDConflict) || !errors.As(r.Err, &ce) {
				t.Fatalf("got %v, want ErrEventIDConflict", r.Err)
			}
			if f.LastPosition() != last {
				t.Fatalf("conflict wrote: last position %d -> %d", last, f.LastPosition())
			}
		})
	}
}

func TestTombstone(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	orig := mustOK(t, apply1(t, f, 1, 10, appendReq(part("s", noStream(), ev(1)))))
	wantViolation(t, apply1(t, f, 2, 10, tombstoneReq("s", exact(5))), ErrWrongExpectedRevision,
		Violation{Stream: "s", Expected: expectedOf(exact(5)), StreamExists: true})
	ts := mustOK(t, apply1(t, f, 3, 10, tombstoneReq("s", exact(0))))
	if ts.Streams[0].FirstPosition != 2 {
		t.Fatalf("tombstone position %d, want 2", ts.Streams[0].FirstPosition)
	}
	tombstoned := Violation{Stream: "s", Expected: expectedOf(any_()), StreamExists: true, Tombstoned: true}
	wantViolation(t, apply1(t, f, 4, 10, appendReq(part("s", any_(), ev(2)))), ErrStreamTombstoned, tombstoned)
	tombstoned.Expected = expectedOf(any_())
	wantViolation(t, apply1(t, f, 5, 10, tombstoneReq("s", any_())), ErrStreamTombstoned, tombstoned)
	if _, err := f.ReadStream("s", Start, Forward, 10); !errors.Is(err, ErrStreamTombstoned) {
		t.Fatalf("read of tombstoned stream: %v", err)
	}
	if info := f.Stream("s"); !info.Tombstoned || !info.Exists {
		t.Fatalf("stream info %+v", info)
	}
	// A retry of an append that was stored before the tombstone still returns its original result.
	retry := mustOK(t, apply1(t, f, 6, 10, appendReq(part("s", noStream(), ev(1)))))
	if !retry.Idempotent || retry.LogIndex != orig.LogIndex {
		t.Fatalf("retry after tombstone: %+v", retry)
	}
	// A stream that never existed can be tombstoned too.
	mustOK(t, apply1(t, f, 7, 10, tombstoneReq("never", noStream())))
	all, err := f.ReadAll(Start, Forward, 100)
	if err != nil || len(all) != 3 || all[1].Kind != KindTombstone || all[2].Kind != KindTombstone {
		t.Fatalf("$all: %v %+v", err, all)
	}
}

func TestAppendMulti(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	mustOK(t, apply1(t, f, 1, 10, appendReq(part("a", noStream(), ev(1)))))

	// Every violated condition is reported, and nothing is written.
	r := apply1(t, f, 2, 10, appendReq(part("a", noStream(), ev(2)), part("b", any_(), ev(3)), part("c", exists(), ev(4))))
	var ce *ConditionError
	if !errors.As(r.Err, &ce) || len(ce.Violations) != 2 || ce.Violations[0].Stream != "a" || ce.Violations[1].Stream != "c" {
		t.Fatalf("got %v, want violations on a and c", r.Err)
	}
	if f.LastPosition() != 1 {
		t.Fatalf("failed multi-append wrote up to %d", f.LastPosition())
	}

	// Success: events land in request order in $all; a check-only part reports the current revision.
	r = mustOK(t, apply1(t, f, 3, 10, appendReq(part("b", noStream(), ev(5), ev(6)), part("a", exact(0), ev(7)), part("a-check", any_()))))
	want := []StreamResult{
		{Stream: "b", Count: 2, FirstRevision: 0, LastRevision: 1, FirstPosition: 2, LastPosition: 3},
		{Stream: "a", Count: 1, FirstRevision: 1, LastRevision: 1, FirstPosition: 4, LastPosition: 4},
		{Stream: "a-check"},
	}
	if diff := cmp.Diff(want, r.Streams); diff != "" {
		t.Fatalf("stream results (-want +got):\n%s", diff)
	}
	// A check-only part that fails fails the whole request.
	r = apply1(t, f, 4, 10, appendReq(part("b", any_(), ev(8)), part("a", exact(0))))
	if !errors.Is(r.Err, ErrWrongExpectedRevision) || f.LastPosition() != 4 {
		t.Fatalf("got %v, last %d", r.Err, f.LastPosition())
	}
	// The multi-append retried is idempotent.
	retry := mustOK(t, apply1(t, f, 5, 10, appendReq(part("b", noStream(), ev(5), ev(6)), part("a", exact(0), ev(7)))))
	if !retry.Idempotent || retry.LogIndex != 3 || retry.Streams[1].FirstPosition != 4 {
		t.Fatalf("retry: %+v", retry)
	}
}

func TestInvalidCommandsWriteNothing(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	bad := []struct {
		name string
		l    *raft.Log
	}{
		{"undecodable", &raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{0xff, 0xff, 0xff}}},
		{"short id", entry(t, 2, 1, appendReq(part("s", any_(), &fsmpb.Event{Id: []byte{1, 2}})))},
		{"nil id", entry(t, 3, 1, appendReq(part("s", any_(), &fsmpb.Event{Id: make([]byte, 16)})))},
		{"empty stream", entry(t, 4, 1, appendReq(part("", any_(), ev(1))))},
		{"no events", entry(t, 5, 1, appendReq(part("s", any_())))},
		{"no parts", entry(t, 6, 1, appendReq())},
		{"unspecified expected", entry(t, 7, 1, appendReq(part("s", nil, ev(1))))},
		{"stream twice", entry(t, 8, 1, appendReq(part("s", any_(), ev(1)), part("s", any_(), ev(2))))},
		{"oversize event", entry(t, 9, 1, appendReq(part("s", any_(), &fsmpb.Event{Id: id(1), Data: make([]byte, 17<<20)})))},
		{"empty request", entry(t, 10, 1, &fsmpb.Request{})},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			switch out := f.Apply(tt.l).(type) {
			case error:
				err = out
			case []Result:
				err = out[0].Err
			}
			if !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("got %v, want ErrInvalidCommand", err)
			}
			if f.LastPosition() != 0 || f.AppliedIndex() != tt.l.Index {
				t.Fatalf("last position %d, applied %d", f.LastPosition(), f.AppliedIndex())
			}
		})
	}
	b, _ := EncodeCommand(&fsmpb.Command{Version: 99})
	if err, _ := f.Apply(&raft.Log{Index: 11, Type: raft.LogCommand, Data: b}).(error); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("unknown version: %v", err)
	}
}

func TestTimestampsNeverGoBackwards(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	r1 := mustOK(t, apply1(t, f, 1, 1000, appendReq(part("s", any_(), ev(1)))))
	// A new leader with a slower clock.
	r2 := mustOK(t, apply1(t, f, 2, 500, appendReq(part("s", any_(), ev(2)))))
	r3 := mustOK(t, apply1(t, f, 3, 2000, appendReq(part("s", any_(), ev(3)))))
	if r1.Timestamp != 1000 || r2.Timestamp != 1000 || r3.Timestamp != 2000 {
		t.Fatalf("timestamps %d %d %d, want 1000 1000 2000", r1.Timestamp, r2.Timestamp, r3.Timestamp)
	}
	evs, err := f.ReadStream("s", Start, Forward, 10)
	if err != nil || evs[1].Timestamp != 1000 {
		t.Fatalf("stored timestamp: %v %+v", err, evs)
	}
}

func TestRestartSkipsReplayAndKeepsDedupe(t *testing.T) {
	dir := t.TempDir()
	f := mustOpen(t, dir)
	var logs []*raft.Log
	for i := uint64(1); i <= 20; i++ {
		logs = append(logs, entry(t, i, int64(i), appendReq(part("s", any_(), ev(i)))))
	}
	// A configuration entry and a rejected append at the end write nothing.
	logs = append(logs, &raft.Log{Index: 21, Type: raft.LogConfiguration})
	logs = append(logs, entry(t, 22, 22, appendReq(part("s", noStream(), ev(99)))))
	for _, l := range logs {
		f.Apply(l)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	f = mustOpen(t, dir)
	if f.AppliedIndex() != 20 || f.LastPosition() != 20 {
		t.Fatalf("recovered applied %d, last position %d; want 20, 20", f.AppliedIndex(), f.LastPosition())
	}
	// raft replays everything (no snapshot): nothing may be applied twice.
	out := f.ApplyBatch(logs)
	for i := 0; i < 20; i++ {
		if out[i] != nil {
			t.Fatalf("replayed entry %d was applied again: %v", i+1, out[i])
		}
	}
	if res := out[21].([]Result); !errors.Is(res[0].Err, ErrWrongExpectedRevision) {
		t.Fatalf("replayed rejected append: %v", res[0].Err)
	}
	if f.LastPosition() != 20 || f.AppliedIndex() != 22 {
		t.Fatalf("after replay: last position %d, applied %d", f.LastPosition(), f.AppliedIndex())
	}
	// The dedupe index survived the restart: a retry of entry 5 returns its original result.
	retry := mustOK(t, apply1(t, f, 23, 23, appendReq(part("s", any_(), ev(5)))))
	if !retry.Idempotent || retry.LogIndex != 5 || retry.Streams[0].FirstPosition != 5 || retry.Timestamp != 5 {
		t.Fatalf("retry after restart: %+v", retry)
	}
}

func TestDedupeHorizon(t *testing.T) {
	f := mustOpen(t, t.TempDir(), func(c *Config) { c.Dedupe = DedupeHorizon{MaxEvents: 3, MaxAge: time.Hour} })
	for i := uint64(1); i <= 5; i++ {
		mustOK(t, apply1(t, f, i, int64(i), appendReq(part("s", any_(), ev(i)))))
	}
	// ev(2) left the horizon (only the last 3 events are remembered): appending it again writes it.
	r := mustOK(t, apply1(t, f, 6, 6, appendReq(part("s", any_(), ev(2)))))
	if r.Idempotent || r.Streams[0].FirstRevision != 5 {
		t.Fatalf("outside the count horizon: %+v", r)
	}
	// ev(5) is inside: a retry is recognised.
	if r := mustOK(t, apply1(t, f, 7, 7, appendReq(part("s", any_(), ev(5))))); !r.Idempotent {
		t.Fatalf("inside the horizon: %+v", r)
	}
	// Two hours later (in log time) everything older has left the age horizon.
	later := int64(7 + 2*time.Hour)
	mustOK(t, apply1(t, f, 8, later, appendReq(part("t", any_(), ev(50)))))
	if r := mustOK(t, apply1(t, f, 9, later, appendReq(part("s", any_(), ev(5))))); r.Idempotent {
		t.Fatalf("outside the age horizon: %+v", r)
	}
	if f.idx.dedupe.len() != 2 {
		t.Fatalf("dedupe holds %d ids, want 2", f.idx.dedupe.len())
	}
}

func TestWaitApplied(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	done := make(chan error, 1)
	go func() { done <- f.WaitApplied(context.Background(), 2) }()
	mustOK(t, apply1(t, f, 1, 1, appendReq(part("s", any_(), ev(1)))))
	select {
	case err := <-done:
		t.Fatalf("WaitApplied(2) returned %v at applied 1", err)
	default:
	}
	mustOK(t, apply1(t, f, 2, 1, appendReq(part("s", any_(), ev(2)))))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Data is readable once the watermark covers it.
	if evs, err := f.ReadStream("s", Start, Forward, 10); err != nil || len(evs) != 2 {
		t.Fatalf("read after WaitApplied: %v, %d events", err, len(evs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := f.WaitApplied(ctx, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	go func() { done <- f.WaitApplied(context.Background(), 100) }()
	f.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestReadStreamAndAll(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	for i := uint64(1); i <= 10; i++ {
		stream := "even"
		if i%2 == 1 {
			stream = "odd"
		}
		mustOK(t, apply1(t, f, i, int64(i), appendReq(part(stream, any_(), ev(i)))))
	}
	revs := func(evs []RecordedEvent) (out []uint64) {
		for _, e := range evs {
			out = append(out, e.Revision)
		}
		return out
	}
	positions := func(evs []RecordedEvent) (out []uint64) {
		for _, e := range evs {
			out = append(out, e.Position)
		}
		return out
	}
	for _, tt := range []struct {
		name  string
		from  uint64
		dir   Direction
		limit int
		want  []uint64
	}{
		{"forward from start", Start, Forward, 3, []uint64{0, 1, 2}},
		{"forward from 3", 3, Forward, 10, []uint64{3, 4}},
		{"forward past end", 7, Forward, 10, nil},
		{"backward from end", End, Backward, 2, []uint64{4, 3}},
		{"backward from 1", 1, Backward, 10, []uint64{1, 0}},
	} {
		t.Run("stream "+tt.name, func(t *testing.T) {
			evs, err := f.ReadStream("odd", tt.from, tt.dir, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, revs(evs)); diff != "" {
				t.Fatalf("revisions (-want +got):\n%s", diff)
			}
		})
	}
	odd, _ := f.ReadStream("odd", Start, Forward, 10)
	if diff := cmp.Diff([]uint64{1, 3, 5, 7, 9}, positions(odd)); diff != "" {
		t.Fatalf("positions (-want +got):\n%s", diff)
	}
	if e := odd[0]; e.ID != [16]byte(id(1)) || e.Type != "Tested" || string(e.Data) != `{"n":1}` || e.Tags[0] != "t1" || e.Index != 1 {
		t.Fatalf("event fields: %+v", e)
	}
	if _, err := f.ReadStream("missing", Start, Forward, 1); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("missing stream: %v", err)
	}
	all, err := f.ReadAll(8, Forward, 100)
	if err != nil || !cmp.Equal([]uint64{8, 9, 10}, positions(all)) {
		t.Fatalf("$all forward from 8: %v %v", err, positions(all))
	}
	all, err = f.ReadAll(End, Backward, 2)
	if err != nil || !cmp.Equal([]uint64{10, 9}, positions(all)) {
		t.Fatalf("$all backward: %v %v", err, positions(all))
	}
	if all, _ := f.ReadAll(Start, Backward, 10); !cmp.Equal([]uint64{1}, positions(all)) {
		t.Fatalf("$all backward from Start: %v", positions(all))
	}
	if all, _ := f.ReadAll(11, Forward, 10); len(all) != 0 {
		t.Fatalf("$all past the end: %v", positions(all))
	}
}
