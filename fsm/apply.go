package fsm

import (
	"math"
	"strconv"

	"github.com/cairndb/cairn/fsm/fsmpb"
	"github.com/cairndb/cairn/internal/bugs"
	"github.com/cairndb/cairn/segment"
)

// Result is the outcome of one request of a command.
type Result struct {
	// Err is nil on success, or a *ConditionError, *EventIDConflictError or an error wrapping
	// ErrInvalidCommand. A failed request wrote nothing.
	Err error
	// LogIndex is the raft index of the entry that wrote the events: the read-your-writes token.
	// For an idempotent retry it is the original entry's index.
	LogIndex uint64
	// Timestamp is the commit time of the events, Unix nanoseconds (clamped, non-decreasing).
	Timestamp int64
	// Idempotent is true when every event was already stored by an earlier append: nothing was
	// written and the fields above describe the original append.
	Idempotent bool
	// Streams holds one entry per part of the request, in request order.
	Streams []StreamResult
}

// StreamResult is the outcome of one part (one stream) of a successful request.
type StreamResult struct {
	// Stream is the stream name.
	Stream string
	// Count is the number of events the part wrote; 0 for a check-only part and for a tombstone.
	Count int
	// FirstRevision and LastRevision are the revisions of the part's first and last event. For a
	// check-only part both are the stream's current revision (0 when it has no events).
	FirstRevision, LastRevision uint64
	// FirstPosition and LastPosition are the global positions of the part's first and last record
	// (for a tombstone, the tombstone record's position); 0 for a check-only part.
	FirstPosition, LastPosition uint64
}

// applier decides one request against the FSM's current state. It runs on the apply goroutine
// with f.mu held.
type applier struct {
	f            *FSM
	index        uint64
	ts           int64
	firstPending uint64
}

func (a applier) append(req *fsmpb.AppendRequest) Result {
	parts := req.GetParts()
	if err := a.validateAppend(parts); err != nil {
		return Result{Err: err}
	}
	if res, done := a.idempotentReplay(parts); done && !bugs.Enabled(bugs.DuplicateOnRetry) {
		return res
	}
	var violations []Violation
	for _, p := range parts {
		if v, ok := a.check(p.GetStream(), expectedOf(p.GetExpected())); !ok {
			violations = append(violations, v)
		}
	}
	if len(violations) > 0 {
		return Result{Err: &ConditionError{Violations: violations}}
	}
	res := Result{LogIndex: a.index, Timestamp: a.ts, Streams: make([]StreamResult, len(parts))}
	for i, p := range parts {
		sr := StreamResult{Stream: p.GetStream(), Count: len(p.GetEvents())}
		s, _ := a.f.idx.lookup(p.GetStream())
		next := uint64(0)
		if s != nil {
			next = uint64(len(s.positions))
		}
		if sr.Count == 0 {
			sr.FirstRevision, sr.LastRevision = prevRevision(next), prevRevision(next)
			res.Streams[i] = sr
			continue
		}
		sr.FirstRevision, sr.FirstPosition = next, a.f.nextPos
		for j, e := range p.GetEvents() {
			a.f.write(segment.Record{
				Index:       a.index,
				Revision:    next + uint64(j),
				Timestamp:   a.ts,
				Kind:        KindEvent,
				ID:          [16]byte(e.GetId()),
				Stream:      p.GetStream(),
				Type:        e.GetType(),
				ContentType: e.GetContentType(),
				Data:        e.GetData(),
				Metadata:    e.GetMetadata(),
				Tags:        e.GetTags(),
			})
		}
		sr.LastRevision, sr.LastPosition = next+uint64(sr.Count)-1, a.f.nextPos-1
		res.Streams[i] = sr
	}
	a.f.idx.dedupe.evict(a.f.idx.lastTs)
	return res
}

func prevRevision(next uint64) uint64 {
	if next == 0 {
		return 0
	}
	return next - 1
}

func (a applier) tombstone(req *fsmpb.TombstoneRequest) Result {
	name := req.GetStream()
	if name == "" {
		return Result{Err: invalidf("tombstone: empty stream name")}
	}
	exp := expectedOf(req.GetExpected())
	if err := validExpected(exp); err != nil {
		return Result{Err: err}
	}
	if v, ok := a.check(name, exp); !ok {
		return Result{Err: &ConditionError{Violations: []Violation{v}}}
	}
	next := uint64(0)
	if s, ok := a.f.idx.lookup(name); ok {
		next = uint64(len(s.positions))
	}
	pos := a.f.nextPos
	a.f.write(segment.Record{Index: a.index, Revision: next, Timestamp: a.ts, Kind: KindTombstone,
		Stream: name, Type: TypeTombstone})
	return Result{LogIndex: a.index, Timestamp: a.ts, Streams: []StreamResult{{
		Stream: name, FirstRevision: prevRevision(next), LastRevision: prevRevision(next),
		FirstPosition: pos, LastPosition: pos,
	}}}
}

// validateAppend rejects what the api layer should already have refused, so that a bad command
// cannot corrupt state or crash the node. The checks depend only on the command and the
// configuration, so every node rejects the same commands.
func (a applier) validateAppend(parts []*fsmpb.StreamAppend) error {
	if len(parts) == 0 {
		return invalidf("append: no streams")
	}
	streams := make(map[string]struct{}, len(parts))
	ids := make(map[[16]byte]struct{})
	events := 0
	for i, p := range parts {
		if p.GetStream() == "" {
			return invalidf("append part %d: empty stream name", i)
		}
		if _, dup := streams[p.GetStream()]; dup {
			return invalidf("append: stream %q appears in more than one part", p.GetStream())
		}
		streams[p.GetStream()] = struct{}{}
		if err := validExpected(expectedOf(p.GetExpected())); err != nil {
			return err
		}
		for j, e := range p.GetEvents() {
			if len(e.GetId()) != 16 {
				return invalidf("append stream %q event %d: id has %d bytes, want 16", p.GetStream(), j, len(e.GetId()))
			}
			id := [16]byte(e.GetId())
			if id == ([16]byte{}) {
				return invalidf("append stream %q event %d: nil UUID", p.GetStream(), j)
			}
			if _, dup := ids[id]; dup {
				return &EventIDConflictError{Stream: p.GetStream(), ID: id, Reason: "id repeated within the request"}
			}
			ids[id] = struct{}{}
			if size := approxRecordSize(p.GetStream(), e); size > a.f.cfg.Segment.MaxRecordBytes {
				return invalidf("append stream %q event %d: about %d bytes, limit %d", p.GetStream(), j, size, a.f.cfg.Segment.MaxRecordBytes)
			}
			events++
		}
	}
	if events == 0 {
		return invalidf("append: no events")
	}
	return nil
}

// approxRecordSize bounds the encoded size of an event's record from above.
func approxRecordSize(stream string, e *fsmpb.Event) int {
	n := 128 + len(stream) + len(e.GetType()) + len(e.GetContentType()) + len(e.GetData()) + len(e.GetMetadata())
	for _, t := range e.GetTags() {
		n += 10 + len(t)
	}
	return n
}

func validExpected(e Expected) error {
	switch e.Kind {
	case fsmpb.ExpectedRevision_KIND_ANY, fsmpb.ExpectedRevision_KIND_NO_STREAM,
		fsmpb.ExpectedRevision_KIND_STREAM_EXISTS, fsmpb.ExpectedRevision_KIND_EXACT:
		return nil
	}
	return invalidf("expected revision kind %v", e.Kind)
}

func expectedOf(e *fsmpb.ExpectedRevision) Expected {
	return Expected{Kind: e.GetKind(), Revision: e.GetRevision()}
}

// check evaluates one expected-revision condition against the stream's current state. A
// soft-deleted stream (no events since its latest soft delete) does not "exist" but keeps its
// last revision, as in KurrentDB: ANY, NO_STREAM and EXACT(last) hold, STREAM_EXISTS does not.
func (a applier) check(name string, exp Expected) (Violation, bool) {
	v := Violation{Stream: name, Expected: exp}
	if s, ok := a.f.idx.lookup(name); ok {
		v.Tombstoned = s.tombstonePos() != 0
		if n := len(s.positions); n > 0 {
			v.StreamExists, v.ActualRevision = true, uint64(n-1)
		}
		v.Deleted = v.StreamExists && s.softDeleted(s.positions, math.MaxUint64)
	}
	if v.Tombstoned {
		return v, false
	}
	if v.Deleted {
		switch exp.Kind {
		case fsmpb.ExpectedRevision_KIND_STREAM_EXISTS:
			return v, false
		case fsmpb.ExpectedRevision_KIND_NO_STREAM:
			return v, true
		}
	}
	return v, expectedHolds(exp, v.StreamExists, v.ActualRevision)
}

// idempotentReplay recognises a retry. It returns done=true with the original result when every
// part that carries events was already stored, as it was appended, by one earlier entry; done=true
// with an EventIDConflictError when the ids overlap earlier appends in any other way; done=false
// when no id is known, so the request is a new append.
//
// Retries are recognised for every form of expected revision (DESIGN §2), before the expected
// revision is checked: the original append moved the stream, so the check would now fail.
// Check-only parts are not re-checked: they held when the original was applied.
func (a applier) idempotentReplay(parts []*fsmpb.StreamAppend) (Result, bool) {
	var (
		res                 = Result{Idempotent: true, Streams: make([]StreamResult, len(parts))}
		matched, withEvents int
	)
	for i, p := range parts {
		res.Streams[i] = StreamResult{Stream: p.GetStream()}
		events := p.GetEvents()
		if len(events) == 0 {
			continue
		}
		withEvents++
		found := 0
		for _, e := range events {
			if _, ok := a.f.idx.dedupe.get([16]byte(e.GetId())); ok {
				found++
			}
		}
		switch {
		case found == 0:
			continue
		case found < len(events):
			return Result{Err: &EventIDConflictError{Stream: p.GetStream(), ID: a.firstKnown(events),
				Reason: "some of the request's events are already stored (partial overlap)"}}, true
		}
		sr, conflict := a.matchStored(p)
		if conflict != nil {
			return Result{Err: conflict}, true
		}
		first := a.f.recordAt(sr.FirstPosition, a.firstPending)
		if matched > 0 && first.Index != res.LogIndex {
			return Result{Err: &EventIDConflictError{Stream: p.GetStream(), ID: first.ID,
				Reason: "events are stored, but by different earlier appends"}}, true
		}
		res.LogIndex, res.Timestamp = first.Index, first.Timestamp
		res.Streams[i] = sr
		matched++
	}
	switch {
	case matched == 0:
		return Result{}, false
	case matched < withEvents:
		return Result{Err: &EventIDConflictError{Stream: parts[0].GetStream(),
			Reason: "some streams' events are already stored and others are not"}}, true
	}
	// Check-only parts report the stream's current revision, as on a first apply.
	for i, p := range parts {
		if len(p.GetEvents()) == 0 {
			if s, ok := a.f.idx.lookup(p.GetStream()); ok && len(s.positions) > 0 {
				res.Streams[i].FirstRevision = uint64(len(s.positions) - 1)
				res.Streams[i].LastRevision = res.Streams[i].FirstRevision
			}
		}
	}
	return res, true
}

func (a applier) firstKnown(events []*fsmpb.Event) [16]byte {
	for _, e := range events {
		if _, ok := a.f.idx.dedupe.get([16]byte(e.GetId())); ok {
			return [16]byte(e.GetId())
		}
	}
	return [16]byte{}
}

// matchStored checks that all of a part's events, whose ids are all known, are stored in this
// stream at consecutive revisions in request order, and returns the original per-stream result.
func (a applier) matchStored(p *fsmpb.StreamAppend) (StreamResult, error) {
	events := p.GetEvents()
	sr := StreamResult{Stream: p.GetStream(), Count: len(events)}
	for j, e := range events {
		id := [16]byte(e.GetId())
		pos, _ := a.f.idx.dedupe.get(id)
		r := a.f.recordAt(pos, a.firstPending)
		if r.Stream != p.GetStream() {
			return sr, &EventIDConflictError{Stream: p.GetStream(), ID: id,
				Reason: "id already stored in stream " + strconv.Quote(r.Stream)}
		}
		if j == 0 {
			sr.FirstRevision, sr.FirstPosition = r.Revision, r.Position
		} else if r.Revision != sr.FirstRevision+uint64(j) {
			return sr, &EventIDConflictError{Stream: p.GetStream(), ID: id,
				Reason: "ids already stored in another order or with other events between them"}
		}
		sr.LastRevision, sr.LastPosition = r.Revision, r.Position
	}
	return sr, nil
}
