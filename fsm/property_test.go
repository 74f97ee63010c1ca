package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/cairndb/cairn/fsm/fsmpb"
)

// TestPropertyStateMachine drives a real FSM with random appends, multi-stream appends, retries,
// id conflicts, tombstones, stream metadata (max_count, truncate_before), soft deletes, batches,
// restarts and snapshot installs, and compares every result
// and every read with a model written from the write semantics of DESIGN §2 (not from the FSM's
// code). Reproduce a failure with the -rapid.seed printed on failure; -rapid.checks and
// -rapid.steps scale the run.
func TestPropertyStateMachine(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := newPropState(t, rt)
		rt.Repeat(map[string]func(*rapid.T){
			"":          s.check,
			"append":    func(rt *rapid.T) { s.runOne(rt, s.genAppend) },
			"multi":     func(rt *rapid.T) { s.runOne(rt, s.genMulti) },
			"retry":     func(rt *rapid.T) { s.runOne(rt, s.genRetry) },
			"conflict":  func(rt *rapid.T) { s.runOne(rt, s.genConflict) },
			"tombstone": func(rt *rapid.T) { s.runOne(rt, s.genTombstone) },
			"metadata":  func(rt *rapid.T) { s.runOne(rt, s.genMetadata) },
			"delete":    func(rt *rapid.T) { s.runOne(rt, s.genSoftDelete) },
			"batch":     s.batch,
			"restart":   s.restart,
			"snapshot":  s.snapshotRestore,
		})
	})
}

// rapidTB adapts a *rapid.T to testing.TB so the package's testing.TB helpers (entry) run inside
// a property: their failures go to rapid, which then shrinks the case. testing.TB has an
// unexported method, so the enclosing test is embedded for it and for what rapid.T lacks
// (TempDir, Setenv...: not used here).
type rapidTB struct {
	testing.TB
	rt *rapid.T
}

func (r rapidTB) Helper()                           { r.rt.Helper() }
func (r rapidTB) Cleanup(f func())                  { r.rt.Cleanup(f) }
func (r rapidTB) Context() context.Context          { return r.rt.Context() }
func (r rapidTB) Output() io.Writer                 { return r.rt.Output() }
func (r rapidTB) Log(args ...any)                   { r.rt.Log(args...) }
func (r rapidTB) Logf(format string, args ...any)   { r.rt.Logf(format, args...) }
func (r rapidTB) Error(args ...any)                 { r.rt.Error(args...) }
func (r rapidTB) Errorf(format string, args ...any) { r.rt.Errorf(format, args...) }
func (r rapidTB) Fatal(args ...any)                 { r.rt.Fatal(args...) }
func (r rapidTB) Fatalf(format string, args ...any) { r.rt.Fatalf(format, args...) }
func (r rapidTB) Fail()                             { r.rt.Fail() }
func (r rapidTB) FailNow()                          { r.rt.FailNow() }
func (r rapidTB) Failed() bool                      { return r.rt.Failed() }
func (r rapidTB) Skip(args ...any)                  { r.rt.Skip(args...) }
func (r rapidTB) Skipf(format string, args ...any)  { r.rt.Skipf(format, args...) }
func (r rapidTB) SkipNow()                          { r.rt.SkipNow() }

// ---------------------------------------------------------------------------------------------
// The model.

// mRecord is one record of the model's global log; its position is its index in the log plus 1.
type mRecord struct {
	stream     string
	tombstone  bool
	meta       bool   // a metadata record: revision is the metadata revision
	softDelete bool   // a soft-delete record: revision is the stream's next revision
	maxCount   uint64 // metadata: 0 for none
	truncate   uint64 // metadata: truncate_before
	maxAge     int64  // metadata: max_age in ns, 0 for none
	id         uint64 // event id number, as passed to id() and ev(); 0 for a tombstone
	revision   uint64 // the event's revision; unused for a tombstone
	index      uint64 // raft index of the entry that wrote it
	ts         int64  // commit timestamp
}

type mStream struct {
	events        []uint64 // event id numbers in revision order
	tombstoned    bool
	metaCount     uint64  // metadata records written
	maxCount      uint64  // latest metadata's max_count, 0 for none
	truncate      uint64  // latest metadata's truncate_before
	maxAge        int64   // latest metadata's max_age, 0 for none
	eventTs       []int64 // commit timestamp of each event, by revision
	hasDelete     bool
	deletedBefore uint64 // revisions below it were hidden by the latest soft delete
}

// deleted: soft-deleted and not appended to since (DESIGN §5, KurrentDB semantics).
func (s *mStream) deleted() bool {
	return s.hasDelete && len(s.events) > 0 && s.deletedBefore >= uint64(len(s.events))
}

// visibleFrom is the first visible revision at time now: a tombstone hides everything;
// otherwise the latest soft delete, truncate_before and max_count each hide a prefix, and max_age
// hides events committed before now - max_age.
func (s *mStream) visibleFrom(now int64) uint64 {
	n := uint64(len(s.events))
	if s.tombstoned {
		return n
	}
	var h uint64
	if s.hasDelete {
		h = s.deletedBefore
	}
	h = max(h, s.truncate)
	if s.maxCount > 0 && n > s.maxCount {
		h = max(h, n-s.maxCount)
	}
	h = min(h, n)
	for s.maxAge > 0 && h < n && s.eventTs[h] < now-s.maxAge {
		h++
	}
	return h
}

// sentAppend is an append request the test has sent, kept so it can be retried. Every request
// gets fresh event ids, so its ids are either all stored (by this request) or none.
type sentAppend struct {
	req    *fsmpb.Request
	stored bool
	result Result // the result of the apply that stored the events
}

type model struct {
	streams map[string]*mStream
	log     []mRecord
	byID    map[uint64]int // event id number -> position
	lastTs  int64          // timestamp of the last record written: the clamping floor
	applied uint64         // what AppliedIndex must report
	durable uint64         // applied index of the latest snapshot persisted or restored
	index   uint64         // last raft index used
	clock   int64          // the leaders' clock: last timestamp proposed
	nextID  uint64
	appends []*sentAppend
	names   []string // every stream name used, in order of first use
	active  []string // ~4 streams not tombstoned, the usual targets
	dead    []string // tombstoned streams
	nStream int
	readNow int64 // the clock reads use for max_age (Config.Now)
}

func newModel() *model {
	m := &model{streams: map[string]*mStream{}, byID: map[uint64]int{}, clock: 1_000_000, nextID: 1}
	for range 4 {
		m.active = append(m.active, m.newName())
	}
	return m
}

func (m *model) newName() string {
	name := fmt.Sprintf("s%d", m.nStream)
	m.nStream++
	m.names = append(m.names, name)
	return name
}

func (m *model) stream(name string) *mStream {
	s := m.streams[name]
	if s == nil {
		s = &mStream{}
		m.streams[name] = s
	}
	return s
}

// revision is the stream's current revision as results report it: that of its last event, 0 when
// it has none.
func (m *model) revision(name string) uint64 {
	if s := m.streams[name]; s != nil && len(s.events) > 0 {
		return uint64(len(s.events) - 1)
	}
	return 0
}

func (m *model) lastRecordIndex() uint64 {
	if len(m.log) == 0 {
		return 0
	}
	return m.log[len(m.log)-1].index
}

// condition evaluates an expected-revision condition (DESIGN §2) and describes the stream's state.
// A tombstoned stream can never be written again, whatever the condition.
func (m *model) condition(name string, exp *fsmpb.ExpectedRevision) (Violation, bool) {
	v := Violation{Stream: name, Expected: Expected{Kind: exp.GetKind(), Revision: exp.GetRevision()}}
	var ok bool
	if s := m.streams[name]; s != nil {
		v.Tombstoned = s.tombstoned
		if len(s.events) > 0 {
			v.StreamExists, v.ActualRevision = true, uint64(len(s.events)-1)
		}
		v.Deleted = s.deleted()
	}
	// A soft-deleted stream keeps its last revision but does not "exist": NO_STREAM and
	// EXACT(last) hold, STREAM_EXISTS does not.
	switch exp.GetKind() {
	case fsmpb.ExpectedRevision_KIND_ANY:
		ok = true
	case fsmpb.ExpectedRevision_KIND_NO_STREAM:
		ok = !v.StreamExists || v.Deleted
	case fsmpb.ExpectedRevision_KIND_STREAM_EXISTS:
		ok = v.StreamExists && !v.Deleted
	case fsmpb.ExpectedRevision_KIND_EXACT:
		ok = v.StreamExists && v.ActualRevision == exp.GetRevision()
	}
	return v, ok && !v.Tombstoned
}

// write appends a record to the model's log and returns its position.
func (m *model) write(r mRecord) uint64 {
	m.log = append(m.log, r)
	pos := len(m.log)
	s := m.stream(r.stream)
	switch {
	case r.tombstone:
		s.tombstoned = true
	case r.meta:
		s.metaCount++
		s.maxCount, s.truncate, s.maxAge = r.maxCount, r.truncate, r.maxAge
	case r.softDelete:
		s.hasDelete, s.deletedBefore = true, r.revision
	default:
		s.events = append(s.events, r.id)
		s.eventTs = append(s.eventTs, r.ts)
		m.byID[r.id] = pos
	}
	m.lastTs = r.ts
	return uint64(pos)
}

// commitTs is the timestamp a write proposed at ts gets: never earlier than the last record's.
func (m *model) commitTs(ts int64) int64 { return max(ts, m.lastTs) }

// appendFresh decides an append none of whose ids are stored: every condition is checked, all
// violations are reported, and either every event is written, in request order, or none.
func (m *model) appendFresh(index uint64, ts int64, sent *sentAppend) Result {
	parts := sent.req.GetAppend().GetParts()
	var violations []Violation
	for _, p := range parts {
		if v, ok := m.condition(p.GetStream(), p.GetExpected()); !ok {
			violations = append(violations, v)
		}
	}
	if violations != nil {
		return Result{Err: &ConditionError{Violations: violations}}
	}
	ts = m.commitTs(ts)
	res := Result{LogIndex: index, Timestamp: ts, Streams: make([]StreamResult, len(parts))}
	for i, p := range parts {
		name := p.GetStream()
		sr := StreamResult{Stream: name, Count: len(p.GetEvents())}
		if sr.Count == 0 { // check-only part
			sr.FirstRevision, sr.LastRevision = m.revision(name), m.revision(name)
			res.Streams[i] = sr
			continue
		}
		for j, e := range p.GetEvents() {
			n := idNumber(e.GetId())
			rev := uint64(len(m.stream(name).events))
			pos := m.write(mRecord{stream: name, id: n, revision: rev, index: index, ts: ts})
			if j == 0 {
				sr.FirstRevision, sr.FirstPosition = rev, pos
			}
			sr.LastRevision, sr.LastPosition = rev, pos
		}
		res.Streams[i] = sr
	}
	sent.stored, sent.result = true, res
	return res
}

// replay is the answer to a retry of a stored append: the original result, nothing written.
// Check-only parts are the one exception: they report the stream's current revision, as the FSM
// documents (apply.go, idempotentReplay) — DESIGN §2 only says "the original result".
func (m *model) replay(sent *sentAppend) Result {
	res := sent.result
	res.Idempotent = true
	res.Streams = slices.Clone(res.Streams)
	for i, p := range sent.req.GetAppend().GetParts() {
		if len(p.GetEvents()) == 0 {
			res.Streams[i].FirstRevision = m.revision(p.GetStream())
			res.Streams[i].LastRevision = res.Streams[i].FirstRevision
		}
	}
	return res
}

func idNumber(b []byte) uint64 {
	var n uint64
	for _, c := range b[8:] {
		n = n<<8 | uint64(c)
	}
	return n
}

// ---------------------------------------------------------------------------------------------
// The system under test and the actions.

type propState struct {
	tb   rapidTB
	m    *model
	f    *FSM
	dir  string
	opts func(*Config)
	// applying is true while the FSM is inside ApplyBatch; it stays true if ApplyBatch panicked.
	applying bool
	// history holds every entry applied, with its expected outcome, for replays after restarts.
	history []plannedEntry
}

type planned struct {
	req  *fsmpb.Request
	want Result
	what string
}

type plannedEntry struct {
	log   *raft.Log
	want  []Result // nil for a non-command entry
	whats []string
}

func newPropState(t *testing.T, rt *rapid.T) *propState {
	s := &propState{tb: rapidTB{TB: t, rt: rt}, m: newModel()}
	s.opts = func(c *Config) {
		c.Logger = slog.New(slog.DiscardHandler)
		// A horizon no run reaches, so every earlier append can be retried.
		c.Dedupe = DedupeHorizon{MaxEvents: 1 << 20, MaxAge: -1}
		// Reads apply max_age at the model's read time, drawn before each check.
		c.Now = func() int64 { return s.m.readNow }
	}
	s.dir = s.tempDir()
	s.f = s.open(s.dir)
	return s
}

// open opens an FSM like mustOpen does, but its cleanup skips Close when the FSM panicked while
// applying: a panic in ApplyBatch leaves f.mu locked, and Close would then block forever instead
// of letting rapid report (and shrink) the failure.
func (s *propState) open(dir string) *FSM {
	cfg := Config{Dir: dir}
	s.opts(&cfg)
	f, err := Open(cfg)
	if err != nil {
		s.tb.Fatalf("open fsm in %s: %v", dir, err)
	}
	s.tb.Cleanup(func() {
		if !(s.applying && f == s.f) {
			_ = f.Close()
		}
	})
	return f
}

// applyBatch applies entries with f.ApplyBatch (f.Apply for one), noting whether it returned.
func (s *propState) applyBatch(logs []*raft.Log) []interface{} {
	s.applying = true
	var out []interface{}
	if len(logs) == 1 {
		out = []interface{}{s.f.Apply(logs[0])}
	} else {
		out = s.f.ApplyBatch(logs)
	}
	s.applying = false
	return out
}

func (s *propState) tempDir() string {
	dir, err := os.MkdirTemp("", "cairn-fsm-prop-")
	if err != nil {
		s.tb.Fatal(err)
	}
	s.tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// nextEntry allocates the raft index and the proposed timestamp of a new entry. Indexes increase
// strictly, with gaps (entries the FSM never sees); timestamps sometimes go backwards, as after a
// change to a leader with a slower clock.
func (s *propState) nextEntry(rt *rapid.T) (uint64, int64) {
	s.m.index += uint64(rapid.IntRange(1, 2).Draw(rt, "indexStep"))
	s.m.clock += rapid.Int64Range(-50, 100).Draw(rt, "clockStep")
	return s.m.index, s.m.clock
}

type generator func(rt *rapid.T, index uint64, ts int64) (planned, bool)

// runOne applies one entry holding one request.
func (s *propState) runOne(rt *rapid.T, gen generator) {
	prevIndex, prevClock := s.m.index, s.m.clock
	index, ts := s.nextEntry(rt)
	p, ok := gen(rt, index, ts)
	if !ok {
		s.m.index, s.m.clock = prevIndex, prevClock
		rt.Skip("nothing to do")
	}
	e := plannedEntry{log: entry(s.tb, index, ts, p.req), want: []Result{p.want}, whats: []string{p.what}}
	s.m.applied = index
	s.history = append(s.history, e)
	checkOutputs(rt, []plannedEntry{e}, s.applyBatch([]*raft.Log{e.log}))
}

// batch applies 2-4 entries with one ApplyBatch call; an entry holds 1-2 requests (the leader packs
// concurrent appends) or is a configuration entry. Later requests may retry earlier ones of the
// same batch, whose records are not written yet when they are decided.
func (s *propState) batch(rt *rapid.T) {
	gens := []generator{s.genAppend, s.genMulti, s.genRetry, s.genConflict, s.genTombstone, s.genMetadata, s.genSoftDelete}
	var entries []plannedEntry
	for range rapid.IntRange(2, 4).Draw(rt, "entries") {
		index, ts := s.nextEntry(rt)
		if rapid.IntRange(0, 7).Draw(rt, "config") == 0 {
			entries = append(entries, plannedEntry{log: &raft.Log{Index: index, Term: 1, Type: raft.LogConfiguration}})
			continue
		}
		var reqs []*fsmpb.Request
		var e plannedEntry
		for range rapid.IntRange(1, 2).Draw(rt, "requests") {
			p, ok := gens[rapid.IntRange(0, len(gens)-1).Draw(rt, "kind")](rt, index, ts)
			if !ok {
				p, _ = s.genAppend(rt, index, ts)
			}
			reqs = append(reqs, p.req)
			e.want, e.whats = append(e.want, p.want), append(e.whats, p.what)
		}
		e.log = entry(s.tb, index, ts, reqs...)
		entries = append(entries, e)
	}
	logs := make([]*raft.Log, len(entries))
	for i, e := range entries {
		logs[i] = e.log
	}
	out := s.applyBatch(logs)
	s.m.applied = s.m.index
	s.history = append(s.history, entries...)
	checkOutputs(rt, entries, out)
}

func checkOutputs(rt *rapid.T, entries []plannedEntry, out []interface{}) {
	rt.Helper()
	if len(out) != len(entries) {
		rt.Fatalf("ApplyBatch returned %d outputs for %d entries", len(out), len(entries))
	}
	for i, e := range entries {
		if e.want == nil {
			if out[i] != nil {
				rt.Fatalf("entry %d (non-command): output %v, want nil", e.log.Index, out[i])
			}
			continue
		}
		res, ok := out[i].([]Result)
		if !ok || len(res) != len(e.want) {
			rt.Fatalf("entry %d: output %T %v, want %d results", e.log.Index, out[i], out[i], len(e.want))
		}
		for j := range res {
			checkResult(rt, fmt.Sprintf("entry %d request %d (%s)", e.log.Index, j, e.whats[j]), e.want[j], res[j])
		}
	}
}

// checkResult compares a result with the model's prediction. A predicted ConditionError must
// match violation for violation; a predicted *EventIDConflictError must name the same stream and
// id; a bare sentinel only fixes the kind. A failed request returns nothing but the error.
func checkResult(rt *rapid.T, what string, want, got Result) {
	rt.Helper()
	if want.Err == nil {
		if diff := cmp.Diff(want, got, cmp.Comparer(errEqual)); diff != "" {
			rt.Fatalf("%s: result (-model +fsm):\n%s", what, diff)
		}
		return
	}
	rest := got
	rest.Err = nil
	if !cmp.Equal(Result{}, rest) {
		rt.Fatalf("%s: failed request returned more than an error: %+v", what, got)
	}
	switch w := want.Err.(type) {
	case *ConditionError:
		var ce *ConditionError
		if !errors.As(got.Err, &ce) {
			rt.Fatalf("%s: got error %v, want %v", what, got.Err, w)
		}
		if diff := cmp.Diff(w.Violations, ce.Violations); diff != "" {
			rt.Fatalf("%s: violations (-model +fsm):\n%s", what, diff)
		}
		tomb := slices.ContainsFunc(w.Violations, func(v Violation) bool { return v.Tombstoned })
		if errors.Is(got.Err, ErrStreamTombstoned) != tomb {
			rt.Fatalf("%s: errors.Is(%v, ErrStreamTombstoned) = %v, want %v", what, got.Err, !tomb, tomb)
		}
	case *EventIDConflictError:
		var ce *EventIDConflictError
		if !errors.As(got.Err, &ce) || !errors.Is(got.Err, ErrEventIDConflict) {
			rt.Fatalf("%s: got error %v, want an event id conflict", what, got.Err)
		}
		if ce.Stream != w.Stream || ce.ID != w.ID {
			rt.Fatalf("%s: conflict on stream %q id %x, want stream %q id %x", what, ce.Stream, ce.ID, w.Stream, w.ID)
		}
	default:
		if !errors.Is(got.Err, want.Err) {
			rt.Fatalf("%s: got error %v, want %v", what, got.Err, want.Err)
		}
	}
}

// pickStream returns one of the active streams or, sometimes, a tombstoned one.
func (s *propState) pickStream(rt *rapid.T, label string) string {
	k := rapid.IntRange(0, 4).Draw(rt, label)
	if k == 4 && len(s.m.dead) > 0 {
		return rapid.SampledFrom(s.m.dead).Draw(rt, label+"Dead")
	}
	return s.m.active[k%4]
}

// genExpected draws an expected-revision condition; exact revisions are near the real one.
func (s *propState) genExpected(rt *rapid.T, stream string) *fsmpb.ExpectedRevision {
	switch rapid.IntRange(0, 3).Draw(rt, "expected") {
	case 0:
		return any_()
	case 1:
		return noStream()
	case 2:
		return exists()
	}
	n := 0
	if st := s.m.streams[stream]; st != nil {
		n = len(st.events)
	}
	return exact(uint64(rapid.IntRange(max(0, n-2), max(1, n)).Draw(rt, "revision")))
}

func (s *propState) freshEvents(n int) []*fsmpb.Event {
	evs := make([]*fsmpb.Event, n)
	for i := range evs {
		evs[i] = ev(s.m.nextID)
		s.m.nextID++
	}
	return evs
}

func (s *propState) send(index uint64, ts int64, req *fsmpb.Request, what string) planned {
	sent := &sentAppend{req: req}
	s.m.appends = append(s.m.appends, sent)
	return planned{req: req, want: s.m.appendFresh(index, ts, sent), what: what}
}

// genAppend: 1-3 fresh events to one stream with a random condition.
func (s *propState) genAppend(rt *rapid.T, index uint64, ts int64) (planned, bool) {
	stream := s.pickStream(rt, "stream")
	exp := s.genExpected(rt, stream)
	req := appendReq(part(stream, exp, s.freshEvents(rapid.IntRange(1, 3).Draw(rt, "events"))...))
	return s.send(index, ts, req, "append to "+stream), true
}

// genMulti: an AppendMulti over 2-3 distinct streams, some parts possibly check-only.
func (s *propState) genMulti(rt *rapid.T, index uint64, ts int64) (planned, bool) {
	candidates := slices.Clone(s.m.active)
	if len(s.m.dead) > 0 {
		candidates = append(candidates, rapid.SampledFrom(s.m.dead).Draw(rt, "deadCandidate"))
	}
	n := rapid.IntRange(2, 3).Draw(rt, "parts")
	// A permutation, not SliceOfNDistinct: a draw that can be rejected would abort a batch after
	// the model already took earlier requests of it.
	streams := rapid.Permutation(candidates).Draw(rt, "streams")[:n]
	var parts []*fsmpb.StreamAppend
	withEvents := 0
	for i, stream := range streams {
		exp := s.genExpected(rt, stream)
		k := rapid.IntRange(0, 5).Draw(rt, "partEvents") // 0: check-only
		if k == 0 && withEvents == 0 && i == len(streams)-1 {
			k = 1 // at least one part must carry events
		}
		if k > 0 {
			withEvents++
			k = 1 + (k-1)%3
		}
		parts = append(parts, part(stream, exp, s.freshEvents(k)...))
	}
	return s.send(index, ts, appendReq(parts...), fmt.Sprintf("multi-append to %v", streams)), true
}

// genRetry resends an earlier append, byte for byte. If it was stored, the retry is idempotent
// whatever its condition says now; if it failed, nothing of it is stored and it is decided anew.
func (s *propState) genRetry(rt *rapid.T, index uint64, ts int64) (planned, bool) {
	if len(s.m.appends) == 0 {
		return planned{}, false
	}
	sent := s.m.appends[rapid.IntRange(0, len(s.m.appends)-1).Draw(rt, "retryOf")]
	if sent.stored {
		return planned{req: sent.req, want: s.m.replay(sent), what: "retry of a stored append"}, true
	}
	return planned{req: sent.req, want: s.m.appendFresh(index, ts, sent), what: "retry of a failed append"}, true
}

// genConflict: ids that overlap stored events in a way a retry cannot: a stored id with a new one
// (partial overlap), a stored id in another stream, a stored part together with a new part, or
// parts stored by different entries.
func (s *propState) genConflict(rt *rapid.T, index uint64, ts int64) (planned, bool) {
	var events []int // positions of event records
	for i, r := range s.m.log {
		if !r.tombstone && !r.meta && !r.softDelete {
			events = append(events, i+1)
		}
	}
	if len(events) == 0 {
		return planned{}, false
	}
	old := s.m.log[rapid.SampledFrom(events).Draw(rt, "oldEvent")-1]
	exp := any_()
	if rapid.Bool().Draw(rt, "randomExpected") {
		exp = s.genExpected(rt, old.stream)
	}
	var stored []*sentAppend
	for _, a := range s.m.appends {
		if a.stored {
			stored = append(stored, a)
		}
	}
	kind := rapid.IntRange(0, 4).Draw(rt, "conflictKind")
	if kind == 4 {
		// Parts stored by two different earlier entries, sent together: not a retry of anything.
		a := stored[rapid.IntRange(0, len(stored)-1).Draw(rt, "storedA")]
		pa := firstEventPart(a)
		var compatible []*sentAppend
		for _, b := range stored {
			if b.result.LogIndex != a.result.LogIndex && firstEventPart(b).GetStream() != pa.GetStream() {
				compatible = append(compatible, b)
			}
		}
		if len(compatible) > 0 {
			pb := firstEventPart(compatible[rapid.IntRange(0, len(compatible)-1).Draw(rt, "storedB")])
			return planned{req: appendReq(pa, pb), want: Result{Err: ErrEventIDConflict},
				what: "parts stored by different entries"}, true
		}
		kind = 0
	}
	switch kind {
	case 0, 1: // partial overlap, old id first or second
		evs := []*fsmpb.Event{ev(old.id), s.freshEvents(1)[0]}
		if rapid.Bool().Draw(rt, "newFirst") {
			evs[0], evs[1] = evs[1], evs[0]
		}
		return planned{req: appendReq(part(old.stream, exp, evs...)),
			want: Result{Err: &EventIDConflictError{Stream: old.stream, ID: [16]byte(id(old.id))}},
			what: "partial overlap"}, true
	case 2: // the stored id alone, to another stream
		others := slices.DeleteFunc(append(slices.Clone(s.m.active), s.m.dead...), func(n string) bool { return n == old.stream })
		other := rapid.SampledFrom(others).Draw(rt, "otherStream")
		return planned{req: appendReq(part(other, exp, ev(old.id))),
			want: Result{Err: &EventIDConflictError{Stream: other, ID: [16]byte(id(old.id))}},
			what: "stored id in another stream"}, true
	default: // a stored request's part, plus a part with new events
		storedPart := firstEventPart(stored[rapid.IntRange(0, len(stored)-1).Draw(rt, "storedRequest")])
		others := slices.DeleteFunc(slices.Clone(s.m.active), func(n string) bool { return n == storedPart.GetStream() })
		fresh := part(rapid.SampledFrom(others).Draw(rt, "freshStream"), any_(), s.freshEvents(1)...)
		parts := []*fsmpb.StreamAppend{storedPart, fresh}
		if rapid.Bool().Draw(rt, "freshFirst") {
			parts[0], parts[1] = parts[1], parts[0]
		}
		return planned{req: appendReq(parts...), want: Result{Err: ErrEventIDConflict},
			what: "stored part with a new part"}, true
	}
}

// firstEventPart returns the first part of an append that carries events.
func firstEventPart(a *sentAppend) *fsmpb.StreamAppend {
	for _, p := range a.req.GetAppend().GetParts() {
		if len(p.GetEvents()) > 0 {
			return p
		}
	}
	return nil
}

// genTombstone: tombstone an active, tombstoned or never used stream with a random condition.
func (s *propState) genTombstone(rt *rapid.T, index uint64, ts int64) (planned, bool) {
	m := s.m
	var stream string
	if rapid.IntRange(0, 5).Draw(rt, "tombstoneNew") == 0 {
		stream = m.newName()
	} else {
		stream = s.pickStream(rt, "stream")
	}
	exp := s.genExpected(rt, stream)
	req := tombstoneReq(stream, exp)
	what := "tombstone " + stream
	if v, ok := m.condition(stream, exp); !ok {
		return planned{req: req, want: Result{Err: &ConditionError{Violations: []Violation{v}}}, what: what}, true
	}
	ts = m.commitTs(ts)
	rev := m.revision(stream)
	pos := m.write(mRecord{stream: stream, tombstone: true, index: index, ts: ts})
	if i := slices.Index(m.active, stream); i >= 0 {
		m.active[i] = m.newName()
	}
	m.dead = append(m.dead, stream)
	return planned{req: req, what: what, want: Result{LogIndex: index, Timestamp: ts, Streams: []StreamResult{{
		Stream: stream, FirstRevision: rev, LastRevision: rev, FirstPosition: pos, LastPosition: pos}}}}, true
}

// genMetadata: set a stream's metadata (a random max_count and truncate_before) with a random
// condition on its metadata revision. A stream needs no events for it; a tombstoned one refuses.
func (s *propState) genMetadata(rt *rapid.T, index uint64, ts int64) (planned, bool) {
	m := s.m
	stream := s.pickStream(rt, "stream")
	var count uint64
	st := m.streams[stream]
	if st != nil {
		count = st.metaCount
	}
	var exp *fsmpb.ExpectedRevision
	switch rapid.IntRange(0, 3).Draw(rt, "metaExpected") {
	case 0:
		exp = any_()
	case 1:
		exp = noStream()
	case 2:
		exp = exists()
	default:
		exp = exact(rapid.Uint64Range(max(count, 1)-1, count).Draw(rt, "metaRevision"))
	}
	md := &fsmpb.StreamMetadata{}
	if rapid.Bool().Draw(rt, "hasMaxCount") {
		md.MaxCount = proto.Uint64(rapid.Uint64Range(1, 4).Draw(rt, "maxCount"))
	}
	if rapid.Bool().Draw(rt, "hasTruncate") {
		md.TruncateBefore = proto.Uint64(rapid.Uint64Range(0, 6).Draw(rt, "truncateBefore"))
	}
	if rapid.IntRange(0, 2).Draw(rt, "hasMaxAge") == 0 {
		md.MaxAgeNanos = rapid.Int64Range(1, 400).Draw(rt, "maxAge")
	}
	req := setMetaReq(stream, exp, md)
	what := "set metadata of " + stream
	v := Violation{Stream: stream, Expected: Expected{Kind: exp.GetKind(), Revision: exp.GetRevision()}, Metadata: true}
	if st != nil {
		v.Tombstoned = st.tombstoned
	}
	if count > 0 {
		v.StreamExists, v.ActualRevision = true, count-1
	}
	var ok bool
	switch exp.GetKind() {
	case fsmpb.ExpectedRevision_KIND_ANY:
		ok = true
	case fsmpb.ExpectedRevision_KIND_NO_STREAM:
		ok = !v.StreamExists
	case fsmpb.ExpectedRevision_KIND_STREAM_EXISTS:
		ok = v.StreamExists
	default:
		ok = v.StreamExists && v.ActualRevision == exp.GetRevision()
	}
	if v.Tombstoned || !ok {
		return planned{req: req, want: Result{Err: &ConditionError{Violations: []Violation{v}}}, what: what}, true
	}
	ts = m.commitTs(ts)
	pos := m.write(mRecord{stream: stream, meta: true, revision: count, maxCount: md.GetMaxCount(),
		truncate: md.GetTruncateBefore(), maxAge: md.GetMaxAgeNanos(), index: index, ts: ts})
	return planned{req: req, what: what, want: Result{LogIndex: index, Timestamp: ts, Streams: []StreamResult{{
		Stream: stream, FirstRevision: count, LastRevision: count, FirstPosition: pos, LastPosition: pos}}}}, true
}

// genSoftDelete: soft-delete a stream with a random condition; one without events is not found.
func (s *propState) genSoftDelete(rt *rapid.T, index uint64, ts int64) (planned, bool) {
	m := s.m
	stream := s.pickStream(rt, "stream")
	exp := s.genExpected(rt, stream)
	req := softDeleteReq(stream, exp)
	what := "soft delete " + stream
	if v, ok := m.condition(stream, exp); !ok {
		return planned{req: req, want: Result{Err: &ConditionError{Violations: []Violation{v}}}, what: what}, true
	}
	st := m.streams[stream]
	if st == nil || len(st.events) == 0 {
		return planned{req: req, want: Result{Err: ErrStreamNotFound}, what: what}, true
	}
	ts = m.commitTs(ts)
	n := uint64(len(st.events))
	pos := m.write(mRecord{stream: stream, softDelete: true, revision: n, index: index, ts: ts})
	return planned{req: req, what: what, want: Result{LogIndex: index, Timestamp: ts, Streams: []StreamResult{{
		Stream: stream, FirstRevision: n - 1, LastRevision: n - 1, FirstPosition: pos, LastPosition: pos}}}}, true
}

// restart closes and reopens the FSM on its directory. The applied index is recovered from the
// data: the last record's raft index, or the applied index recorded durably by the latest
// snapshot Persist or Restore if that is larger (fsm.go, appliedFile). raft then replays its log
// from some earlier point: entries at or below the recovered index must be skipped, later ones
// (which wrote nothing) must decide as they did the first time.
func (s *propState) restart(rt *rapid.T) {
	if err := s.f.Close(); err != nil {
		rt.Fatalf("close: %v", err)
	}
	s.f = s.open(s.dir)
	recovered := max(s.m.lastRecordIndex(), s.m.durable)
	if got := s.f.AppliedIndex(); got != recovered {
		rt.Fatalf("applied index after restart %d, want %d (last record's %d, last snapshot's %d)",
			got, recovered, s.m.lastRecordIndex(), s.m.durable)
	}
	s.m.applied = recovered
	from := rapid.IntRange(0, len(s.history)).Draw(rt, "replayFrom")
	replay := s.history[from:]
	if len(replay) == 0 {
		return
	}
	logs := make([]*raft.Log, len(replay))
	want := make([]plannedEntry, len(replay))
	for i, e := range replay {
		logs[i], want[i] = e.log, e
		if e.log.Index <= recovered {
			want[i].want = nil // already applied: skipped
		}
	}
	checkOutputs(rt, want, s.applyBatch(logs))
	s.m.applied = max(recovered, replay[len(replay)-1].log.Index)
}

// snapshotRestore persists a snapshot and, usually, installs it into a fresh FSM, which replaces
// the current one (a follower catching up by snapshot).
func (s *propState) snapshotRestore(rt *rapid.T) {
	snap, err := s.f.Snapshot()
	if err != nil {
		rt.Fatalf("snapshot: %v", err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil || sink.cancelled {
		rt.Fatalf("persist: %v (cancelled %v)", err, sink.cancelled)
	}
	snap.Release()
	s.m.durable = s.m.applied
	if rapid.Bool().Draw(rt, "keepCurrent") {
		return // a periodic snapshot: raft keeps it, the FSM goes on
	}
	dir := s.tempDir()
	g := s.open(dir)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		rt.Fatalf("restore: %v", err)
	}
	if got := g.AppliedIndex(); got != s.m.applied {
		rt.Fatalf("applied index after restore %d, want %d", got, s.m.applied)
	}
	if err := s.f.Close(); err != nil {
		rt.Fatalf("close: %v", err)
	}
	_ = os.RemoveAll(s.dir)
	s.f, s.dir = g, dir
}

// ---------------------------------------------------------------------------------------------
// Invariants, checked after every action.

func (s *propState) check(rt *rapid.T) {
	m, f := s.m, s.f
	m.readNow = m.clock + rapid.Int64Range(-100, 500).Draw(rt, "readNow")
	if got := f.AppliedIndex(); got != m.applied {
		rt.Fatalf("applied index %d, want %d", got, m.applied)
	}
	n := uint64(len(m.log))
	if got := f.LastPosition(); got != n {
		rt.Fatalf("last position %d, want %d", got, n)
	}
	all, err := f.ReadAll(Start, Forward, len(m.log)+10)
	if err != nil {
		rt.Fatalf("read $all: %v", err)
	}
	if len(all) != len(m.log) {
		rt.Fatalf("$all holds %d records, want %d", len(all), len(m.log))
	}
	for i, r := range all {
		if r.Position != uint64(i+1) {
			rt.Fatalf("$all[%d] has position %d: positions are not dense from 1", i, r.Position)
		}
		if i > 0 && r.Timestamp < all[i-1].Timestamp {
			rt.Fatalf("timestamps go backwards at position %d: %d after %d", r.Position, r.Timestamp, all[i-1].Timestamp)
		}
		checkRecord(rt, "$all", r, m.log[i])
	}
	// $all hides metadata records and every event below its stream's first visible revision.
	hidden := f.Hidden(m.readNow)
	for i := range all {
		want := m.log[i]
		wantHidden := want.meta
		if !want.meta && !want.tombstone && !want.softDelete {
			wantHidden = want.revision < m.streams[want.stream].visibleFrom(m.readNow)
		}
		if got := hidden(&all[i]); got != wantHidden {
			rt.Fatalf("$all position %d (%s): hidden %v, want %v", all[i].Position, want.stream, got, wantHidden)
		}
	}
	events := 0
	for _, name := range append(slices.Clone(m.names), "never-used") {
		s.checkStream(rt, name)
		if st := m.streams[name]; st != nil {
			events += len(st.events)
		}
	}
	// Every event is inside the horizon, so the dedupe window remembers all of them.
	if got := f.idx.dedupe.len(); got != events || len(m.byID) != events {
		rt.Fatalf("dedupe window holds %d ids, model %d, events %d", got, len(m.byID), events)
	}
	s.checkWindows(rt)
}

func checkRecord(rt *rapid.T, where string, got RecordedEvent, want mRecord) {
	rt.Helper()
	if got.Stream != want.stream || got.Index != want.index || got.Timestamp != want.ts {
		rt.Fatalf("%s position %d: stream %q index %d ts %d, want %q %d %d", where, got.Position,
			got.Stream, got.Index, got.Timestamp, want.stream, want.index, want.ts)
	}
	switch {
	case want.tombstone:
		if got.Kind != KindTombstone {
			rt.Fatalf("%s position %d: kind %d, want a tombstone", where, got.Position, got.Kind)
		}
		return
	case want.meta:
		md, err := decodeMetadata(got.Data)
		if got.Kind != KindMetadata || got.Revision != want.revision || err != nil || md.MaxCount != want.maxCount ||
			md.TruncateBefore != want.truncate {
			rt.Fatalf("%s position %d: kind %d revision %d metadata %+v (%v), want metadata revision %d max_count %d truncate_before %d",
				where, got.Position, got.Kind, got.Revision, md, err, want.revision, want.maxCount, want.truncate)
		}
		return
	case want.softDelete:
		if got.Kind != KindSoftDelete || got.Revision != want.revision {
			rt.Fatalf("%s position %d: kind %d revision %d, want a soft delete at revision %d", where, got.Position,
				got.Kind, got.Revision, want.revision)
		}
		return
	}
	e := ev(want.id)
	if got.Kind != KindEvent || got.ID != [16]byte(e.Id) || got.Revision != want.revision {
		rt.Fatalf("%s position %d: kind %d id %x revision %d, want event %x revision %d", where, got.Position,
			got.Kind, got.ID, got.Revision, e.Id, want.revision)
	}
	if got.Type != e.Type || got.ContentType != e.ContentType || !bytes.Equal(got.Data, e.Data) ||
		!bytes.Equal(got.Metadata, e.Metadata) || !slices.Equal(got.Tags, e.Tags) {
		rt.Fatalf("%s position %d: payload %+v, want %+v", where, got.Position, got, e)
	}
}

func (s *propState) checkStream(rt *rapid.T, name string) {
	m := s.m
	st := m.streams[name]
	var want StreamInfo
	if st != nil {
		want.Tombstoned = st.tombstoned
		if k := len(st.events); k > 0 {
			want.LastRevision, want.LastPosition = uint64(k-1), uint64(m.byID[st.events[k-1]])
			want.Deleted = st.deleted()
			want.Exists = !want.Deleted
			want.FirstRevision = st.visibleFrom(m.readNow)
			want.Count = uint64(k) - want.FirstRevision
		}
		if st.metaCount > 0 {
			want.HasMetadata, want.MetadataRevision = true, st.metaCount-1
		}
	}
	if got := s.f.Stream(name); got != want {
		rt.Fatalf("stream %q info %+v, want %+v", name, got, want)
	}
	evs, err := s.f.ReadStream(name, Start, Forward, 1<<20)
	switch {
	case want.Tombstoned:
		if !errors.Is(err, ErrStreamTombstoned) {
			rt.Fatalf("read tombstoned %q: %v (%d events), want ErrStreamTombstoned", name, err, len(evs))
		}
		return
	case !want.Exists:
		if !errors.Is(err, ErrStreamNotFound) {
			rt.Fatalf("read empty %q: %v (%d events), want ErrStreamNotFound", name, err, len(evs))
		}
		return
	case err != nil:
		rt.Fatalf("read %q: %v", name, err)
	}
	first := int(st.visibleFrom(m.readNow))
	if len(evs) != len(st.events)-first {
		rt.Fatalf("stream %q has %d visible events, want %d (revisions %d..)", name, len(evs), len(st.events)-first, first)
	}
	for j, e := range evs {
		i := first + j
		pos := m.byID[st.events[i]]
		if e.Position != uint64(pos) {
			rt.Fatalf("stream %q revision %d at position %d, want %d", name, i, e.Position, pos)
		}
		checkRecord(rt, "stream "+name, e, m.log[pos-1])
	}
}

// checkWindows reads a random window of a random readable stream and of $all.
func (s *propState) checkWindows(rt *rapid.T) {
	m := s.m
	var readable []string
	for _, name := range m.names {
		if st := m.streams[name]; st != nil && !st.tombstoned && len(st.events) > 0 && !st.deleted() {
			readable = append(readable, name)
		}
	}
	if len(readable) > 0 {
		name := rapid.SampledFrom(readable).Draw(rt, "windowStream")
		st := m.streams[name]
		n, h := uint64(len(st.events)), st.visibleFrom(m.readNow)
		from, dir, limit := drawWindow(rt, n)
		var want []uint64 // revisions; those below h are hidden
		if dir == Forward {
			for r := max(from, h); r < n && len(want) < limit; r++ {
				want = append(want, r)
			}
		} else if h < n && min(from, n-1) >= h {
			for r := min(from, n-1); len(want) < limit; r-- {
				want = append(want, r)
				if r == h {
					break
				}
			}
		}
		evs, err := s.f.ReadStream(name, from, dir, limit)
		if err != nil {
			rt.Fatalf("read %q from %d dir %d limit %d: %v", name, from, dir, limit, err)
		}
		var got []uint64
		for _, e := range evs {
			got = append(got, e.Revision)
		}
		if !slices.Equal(got, want) {
			rt.Fatalf("read %q from %d dir %d limit %d: revisions %v, want %v", name, from, dir, limit, got, want)
		}
	}
	n := uint64(len(m.log))
	if n == 0 {
		return
	}
	from, dir, limit := drawWindow(rt, n)
	var want []uint64 // positions
	if dir == Forward {
		for p := max(from, 1); p <= n && len(want) < limit; p++ {
			want = append(want, p)
		}
	} else {
		// Backward from Start is the first position, as for streams (from is inclusive).
		for p := max(min(from, n), 1); p >= 1 && len(want) < limit; p-- {
			want = append(want, p)
		}
	}
	recs, err := s.f.ReadAll(from, dir, limit)
	if err != nil {
		rt.Fatalf("read $all from %d dir %d limit %d: %v", from, dir, limit, err)
	}
	var got []uint64
	for _, r := range recs {
		got = append(got, r.Position)
	}
	if !slices.Equal(got, want) {
		rt.Fatalf("read $all from %d dir %d limit %d: positions %v, want %v", from, dir, limit, got, want)
	}
}

// drawWindow draws a read window over n items: from in [0, n+1] or End, a direction, a limit.
func drawWindow(rt *rapid.T, n uint64) (uint64, Direction, int) {
	from := rapid.Uint64Range(0, n+1).Draw(rt, "from")
	if rapid.IntRange(0, 4).Draw(rt, "fromEnd") == 0 {
		from = End
	}
	dir := Forward
	if rapid.Bool().Draw(rt, "backward") {
		dir = Backward
	}
	return from, dir, rapid.IntRange(0, int(n)+1).Draw(rt, "limit")
}
