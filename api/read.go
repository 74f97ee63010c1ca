package api

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
	"github.com/cairndb/cairn/fsm"
)

// readPageSize is how many records one store call returns at most. Reads are served in pages so
// that the response byte budget (Config.MaxResponseBytes) and the scan bound
// (Config.MaxScanRecords) are enforced without first loading limit records into memory.
const readPageSize = 32

// TombstoneEventType is the type under which $all shows a stream's tombstone record. Tombstone
// records have no event id (id is "") and carry the revision the stream's next event would have
// had.
const TombstoneEventType = "$tombstone"

// filter is a validated ReadAll filter. Within a field any entry may match; every non-empty
// field must match.
type filter struct {
	streamPrefixes []string
	types          map[string]struct{}
	typePrefixes   []string
	tags           []string
}

// newFilter validates a filter: entries must be non-empty (an empty prefix would match
// everything; leave the field out instead).
func newFilter(b *badRequest, f *cairnpb.Filter) filter {
	check := func(field string, entries []string) {
		for i, e := range entries {
			if e == "" {
				b.add(fmt.Sprintf("filter.%s[%d]", field, i), violationRequired, "filter entries must not be empty")
			}
		}
	}
	check("stream_prefixes", f.GetStreamPrefixes())
	check("event_types", f.GetEventTypes())
	check("event_type_prefixes", f.GetEventTypePrefixes())
	check("tags", f.GetTags())
	out := filter{
		streamPrefixes: f.GetStreamPrefixes(),
		typePrefixes:   f.GetEventTypePrefixes(),
		tags:           f.GetTags(),
	}
	if len(f.GetEventTypes()) > 0 {
		out.types = make(map[string]struct{}, len(f.GetEventTypes()))
		for _, t := range f.GetEventTypes() {
			out.types[t] = struct{}{}
		}
	}
	return out
}

func (f filter) empty() bool {
	return len(f.streamPrefixes) == 0 && f.types == nil && len(f.typePrefixes) == 0 && len(f.tags) == 0
}

func (f filter) match(r *fsm.RecordedEvent) bool {
	if len(f.streamPrefixes) > 0 && !hasAnyPrefix(r.Stream, f.streamPrefixes) {
		return false
	}
	if f.types != nil {
		if _, ok := f.types[r.Type]; !ok {
			return false
		}
	}
	if len(f.typePrefixes) > 0 && !hasAnyPrefix(r.Type, f.typePrefixes) {
		return false
	}
	for _, want := range f.tags {
		found := false
		for _, t := range r.Tags {
			if t == want {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// scanParams describes one paged read over a stream (keys are revisions) or $all (keys are
// positions).
type scanParams struct {
	from    uint64 // first key, inclusive
	dir     fsm.Direction
	lowest  uint64 // smallest key that exists (revision 0, position 1)
	limit   int    // events to return at most
	maxScan int    // records to examine at most; 0 means no bound
	fetch   func(from uint64, n int) ([]fsm.RecordedEvent, error)
	key     func(*fsm.RecordedEvent) uint64
	match   func(*fsm.RecordedEvent) bool // nil matches everything
	// beyond, when set, marks records after an as-of point: a forward read ends at the first
	// (end of the log as it was); a backward read skips them until it reaches the point.
	beyond func(*fsm.RecordedEvent) bool
}

// scanResult is the outcome of a paged read.
type scanResult struct {
	events   []*cairnpb.RecordedEvent
	examined int    // records examined
	last     uint64 // key of the last record examined; meaningful when examined > 0
	end      bool   // the read reached the end (forward) or the beginning (backward)
}

// scan reads pages from the store until limit events matched, maxScan records were examined,
// the response byte budget is spent (at least one event is always returned) or the end is
// reached. end is exact when true; false means more records may exist.
func (s *Service) scan(ctx context.Context, p scanParams) (scanResult, error) {
	var res scanResult
	from, bytes := p.from, 0
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		// Ask for one record more than could be used, so a short page proves the end.
		n := p.limit - len(res.events) + 1
		if p.maxScan > 0 {
			n = min(n, p.maxScan-res.examined+1)
		}
		n = min(n, readPageSize)
		page, err := p.fetch(from, n)
		if err != nil {
			return res, err
		}
		for i := range page {
			r := &page[i]
			if len(res.events) == p.limit || (p.maxScan > 0 && res.examined == p.maxScan) {
				return res, nil
			}
			if p.beyond != nil && p.beyond(r) {
				if p.dir == fsm.Forward {
					res.end = true // the log as of the point ends here
					return res, nil
				}
				res.examined++
				res.last = p.key(r)
				continue
			}
			if !fsm.SystemRecord(r.Kind) && (p.match == nil || p.match(r)) { // no event: examined, not returned
				ev := recordToPB(r)
				size := proto.Size(ev) + 8 // + field tag and length prefix in the response
				if len(res.events) > 0 && bytes+size > s.cfg.MaxResponseBytes {
					return res, nil
				}
				res.events = append(res.events, ev)
				bytes += size
			}
			res.examined++
			res.last = p.key(r)
		}
		if len(page) < n {
			res.end = true
			return res, nil
		}
		last := p.key(&page[len(page)-1])
		if p.dir == fsm.Forward {
			if last == math.MaxUint64 {
				res.end = true
				return res, nil
			}
			from = last + 1
		} else {
			if last <= p.lowest {
				res.end = true
				return res, nil
			}
			from = last - 1
		}
	}
}

// readStream serves a validated Read from the local store, after the read fence.
func (s *Service) readStream(ctx context.Context, p readParams) (scanResult, error) {
	store := s.node.Store()
	from := p.from
	if p.fromTime > 0 {
		from = store.StreamRevisionAtTime(p.stream, p.fromTime) // binary search over commit times
	}
	if p.fromEnd {
		from = fsm.End
		if p.dir == fsm.Forward {
			// Forward from the end returns the last event; the store reads nothing forward from
			// End, so resolve it first. A missing or tombstoned stream fails in ReadStream below.
			if info := store.Stream(p.stream); info.Exists {
				from = info.LastRevision
			}
		}
	}
	return s.scan(ctx, scanParams{
		from:   from,
		dir:    p.dir,
		lowest: 0,
		limit:  p.limit,
		fetch: func(from uint64, n int) ([]fsm.RecordedEvent, error) {
			return store.ReadStream(p.stream, from, p.dir, n)
		},
		key:    func(r *fsm.RecordedEvent) uint64 { return r.Revision },
		beyond: p.asOf.beyondFunc(),
	})
}

// readAll serves a validated ReadAll from the local store, after the read fence, and returns the
// checkpoint position: the last position examined, or, when nothing was examined, the position
// before from (forward) or 0 (backward), so resuming from checkpoint+1 (forward) or
// checkpoint-1 (backward) continues the read.
func (s *Service) readAll(ctx context.Context, p readParams) (scanResult, uint64, error) {
	store := s.node.Store()
	from := p.from
	switch {
	case p.fromEnd && p.dir == fsm.Backward:
		from = fsm.End
	case p.fromEnd:
		// Forward from the end: start at the last record.
		last, err := store.ReadAll(fsm.End, fsm.Backward, 1)
		if err != nil {
			return scanResult{}, 0, err
		}
		if len(last) == 0 {
			return scanResult{end: true}, 0, nil
		}
		from = last[0].Position
	case p.dir == fsm.Backward && from == 0:
		// Backward from the start (position 0 is before the first position): nothing to read.
		return scanResult{end: true}, 0, nil
	case p.fromTime > 0:
		// Commit times never decrease along the log, so the start is found by binary search.
		from = store.PositionAtTime(p.fromTime)
	}
	if p.dir == fsm.Backward && p.asOf.position > 0 {
		from = min(from, p.asOf.position) // start at the as-of point, not above it
	}
	if p.dir == fsm.Backward && p.asOf.time > 0 {
		from = min(from, store.PositionAtTime(p.asOf.time+1)-1) // the last record at or before it
	}
	res, err := s.scan(ctx, scanParams{
		from:    from,
		dir:     p.dir,
		lowest:  1,
		limit:   p.limit,
		maxScan: s.cfg.MaxScanRecords,
		fetch: func(from uint64, n int) ([]fsm.RecordedEvent, error) {
			return store.ReadAll(from, p.dir, n)
		},
		key:    func(r *fsm.RecordedEvent) uint64 { return r.Position },
		match:  restrictToReadable(ctx, visibleMatch(store.Hidden(time.Now().UnixNano()), p.filter)),
		beyond: p.asOf.beyondFunc(),
	})
	if err != nil {
		return res, 0, err
	}
	checkpoint := res.last
	if res.examined == 0 {
		checkpoint = 0
		if p.dir == fsm.Forward && from > 0 {
			checkpoint = from - 1
		}
	}
	return res, checkpoint, nil
}

// visibleMatch is the $all match function: the record is not hidden by its stream's lifecycle
// (or a metadata record) and passes the filter. Hidden records are still examined, so
// checkpoints move past them.
func visibleMatch(hidden func(*fsm.RecordedEvent) bool, f filter) func(*fsm.RecordedEvent) bool {
	if f.empty() {
		return func(r *fsm.RecordedEvent) bool { return !hidden(r) }
	}
	return func(r *fsm.RecordedEvent) bool { return !hidden(r) && f.match(r) }
}

// recordToPB converts a stored record. Byte slices are shared, not copied: the store returns
// records the caller owns.
func recordToPB(r *fsm.RecordedEvent) *cairnpb.RecordedEvent {
	ev := &cairnpb.RecordedEvent{
		Id:          formatUUID(r.ID),
		Stream:      r.Stream,
		Revision:    r.Revision,
		Position:    r.Position,
		LogIndex:    r.Index,
		Type:        r.Type,
		ContentType: r.ContentType,
		Data:        r.Data,
		Metadata:    r.Metadata,
		Tags:        r.Tags,
		CommitTime:  timestamppb.New(time.Unix(0, r.Timestamp)),
	}
	if r.Kind == fsm.KindTombstone && ev.Type == "" {
		ev.Type = TombstoneEventType
	}
	return ev
}

// servedBy converts the read fence's ReadInfo.
func servedBy(info cluster.ReadInfo) *cairnpb.ServedBy {
	return &cairnpb.ServedBy{
		NodeId:       info.NodeID,
		AppliedIndex: info.AppliedIndex,
		LastContact:  durationpb.New(info.LastContact),
		Leader:       info.Leader,
	}
}

// beyondFunc returns the scan's as-of predicate, nil when the read is not bounded.
func (a asOf) beyondFunc() func(*fsm.RecordedEvent) bool {
	if !a.bounded() {
		return nil
	}
	return a.beyond
}
