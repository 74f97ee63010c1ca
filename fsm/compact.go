package fsm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cairndb/cairn/fsm/fsmpb"
	"github.com/cairndb/cairn/segment"
)

// Space reclaim (compaction) has two halves; DESIGN.md "Compaction" explains why.
//
//   - Logical compaction is a replicated command. Applying a CompactRequest writes a marker record
//     (KindCompaction) and sets every stream's scavengedBefore to the first revision visible at the
//     command's timestamp. It is decided from the index at that log index alone, so every node,
//     and every rebuild of the index from the records, computes the same.
//   - Physical reclaim runs in the background on every node: sealed segments are rewritten with
//     the events below their stream's scavengedBefore replaced by redacted records. Reads and the
//     digest apply the same redaction on the fly to records not yet rewritten, so a node answers
//     identically before, during and after its rewrite.

// CompactionStream is the system stream name of compaction marker records.
const CompactionStream = "$compaction"

// compactionType is the Type of compaction marker records.
const compactionType = "$compaction"

// compact applies a CompactRequest: it writes the marker, whose indexing (index.add) does the
// work, so live apply, boot and restore share one definition.
func (a applier) compact(_ *fsmpb.CompactRequest) Result {
	pos := a.f.nextPos
	a.f.write(segment.Record{Index: a.index, Timestamp: a.ts, Kind: KindCompaction,
		Stream: CompactionStream, Type: compactionType})
	return Result{LogIndex: a.index, Timestamp: a.ts, Streams: []StreamResult{{
		Stream: CompactionStream, FirstPosition: pos, LastPosition: pos,
	}}}
}

// compact makes what each stream hides at time ts permanently gone. scavengedBefore never moves
// back: a later change that would show older revisions again (a raised limit) cannot bring back
// what a compaction may already have redacted on some node.
func (st *index) compact(ts int64) {
	for i := range st.streams {
		s := &st.streams[i]
		if s.meta == nil {
			continue // nothing hidden: only lifecycle state hides revisions
		}
		if h := st.hiddenBefore(s, ts); h > s.meta.scavengedBefore {
			s.meta.scavengedBefore = h
			st.scavenged++
		}
	}
	st.compactions++
}

// scavengedSet copies, for every stream with a scavenged prefix, the first readable revision.
// Callers hold f.mu (read).
func (st *index) scavengedSet() map[string]uint64 {
	if st.scavenged == 0 {
		return nil
	}
	out := make(map[string]uint64)
	for name, id := range st.streamIDs {
		if sb := st.streams[id].scavenged(); sb > 0 {
			out[name] = sb
		}
	}
	return out
}

// redactIfScavenged replaces *r by its redacted form when it is an event below its stream's
// scavengedBefore in sb, and reports whether it did.
func redactIfScavenged(r *segment.Record, sb map[string]uint64) bool {
	if r.Kind != KindEvent || len(sb) == 0 {
		return false
	}
	if before, ok := sb[r.Stream]; ok && r.Revision < before {
		*r = redact(r)
		return true
	}
	return false
}

// redact returns the redacted form of an event: everything positions, revisions, time travel and
// the dedupe window need (position, raft index, revision, timestamp, id, stream), and nothing of
// its content.
func redact(r *segment.Record) segment.Record {
	return segment.Record{Index: r.Index, Position: r.Position, Revision: r.Revision,
		Timestamp: r.Timestamp, Kind: KindRedacted, ID: r.ID, Stream: r.Stream}
}

// ReclaimStats describes one physical reclaim pass over the sealed segments.
type ReclaimStats struct {
	// SegmentsScanned is how many sealed segments the pass read (segments already reclaimed for
	// every compaction so far are skipped).
	SegmentsScanned int
	// SegmentsRewritten is how many of them it replaced (a segment with nothing to drop is not).
	SegmentsRewritten int
	// RecordsRedacted is how many events it replaced by redacted records.
	RecordsRedacted int
	// BytesBefore and BytesAfter are the total size of the rewritten segments before and after.
	BytesBefore, BytesAfter int64
	// Duration is how long the pass took.
	Duration time.Duration
}

// BytesReclaimed is the disk space the pass freed (once readers of the old files let go).
func (s ReclaimStats) BytesReclaimed() int64 { return s.BytesBefore - s.BytesAfter }

func (s *ReclaimStats) add(o ReclaimStats) {
	s.SegmentsScanned += o.SegmentsScanned
	s.SegmentsRewritten += o.SegmentsRewritten
	s.RecordsRedacted += o.RecordsRedacted
	s.BytesBefore += o.BytesBefore
	s.BytesAfter += o.BytesAfter
	s.Duration += o.Duration
}

// ReclaimStatus is this node's physical reclaim state.
type ReclaimStatus struct {
	// Running reports that a pass is in progress.
	Running bool
	// Started and Completed count passes since the FSM opened.
	Started, Completed uint64
	// Compactions is how many compaction markers this node's log held when the last pass started.
	Compactions uint64
	// CoveredIndex is the applied raft index the last completed pass started from: every
	// compaction at or below it has been reclaimed on this node (sealed segments only).
	CoveredIndex uint64
	// Last is the last completed pass; Total sums every pass since the FSM opened.
	Last, Total ReclaimStats
	// Covering is set only by WaitReclaimed: what the passes that started after the awaited
	// compaction was applied reclaimed, up to and including the first that completed (later passes,
	// such as those a segment roll requests, are not included).
	Covering ReclaimStats
	// LastError is the error that ended the last pass early, nil if it completed.
	LastError error
	// Finished is when the last pass ended; zero if none has.
	Finished time.Time
}

// passRecord is one completed pass, for WaitReclaimed's Covering.
type passRecord struct {
	start uint64 // applied index when the pass started
	stats ReclaimStats
	ok    bool
}

const maxPassHistory = 64

// reclaimer runs physical reclaim passes on a goroutine of its own.
type reclaimer struct {
	kick chan struct{} // buffered 1: a pass is wanted
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the goroutine exits

	mu      sync.Mutex
	status  ReclaimStatus
	changed chan struct{} // closed and replaced whenever status changes
	history []passRecord  // the latest completed passes, oldest first (at most maxPassHistory)

	// Reclaim-goroutine state: for each sealed segment of reclaimedLog (by base), the scavenged
	// generation (index.scavenged) it was last fully reclaimed for. A segment reclaimed for the
	// current generation has nothing left to drop and is not read again; the map lives in memory,
	// so the first pass after a restart reads every sealed segment once.
	reclaimedLog *segment.Log
	reclaimed    map[uint64]uint64
}

func newReclaimer() *reclaimer {
	return &reclaimer{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		changed: make(chan struct{})}
}

// request asks for a pass; requests made while one is queued coalesce into it.
func (r *reclaimer) request() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *reclaimer) update(fn func(*ReclaimStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(&r.status)
	close(r.changed)
	r.changed = make(chan struct{})
}

// reclaimLoop runs a pass whenever one is requested, until Close.
func (f *FSM) reclaimLoop() {
	r := f.reclaim
	defer close(r.done)
	for {
		select {
		case <-r.stop:
			return
		case <-r.kick:
		}
		select {
		case <-r.stop: // both were ready: closing wins
			return
		default:
		}
		f.reclaimPass()
	}
}

// errReclaimStopped ends a pass when the FSM closes.
var errReclaimStopped = errors.New("fsm: reclaim stopped: closing")

// reclaimPass rewrites every sealed segment that holds an event below its stream's
// scavengedBefore. scavengedBefore only grows, so the copy taken at the start may redact less
// than the live state, never more; what it leaves is redacted by the next pass.
func (f *FSM) reclaimPass() {
	start := time.Now()
	f.mu.RLock()
	seg, applied := f.seg, f.applied
	sb := f.idx.scavengedSet()
	compactions, gen := f.idx.compactions, f.idx.scavenged
	f.mu.RUnlock()
	f.reclaim.update(func(s *ReclaimStatus) { s.Running, s.Compactions, s.Started = true, compactions, s.Started+1 })

	var st ReclaimStats
	var err error
	if len(sb) > 0 {
		st, err = f.rewriteSealed(seg, sb, gen)
	}
	st.Duration = time.Since(start)
	switch {
	case err == nil:
		if st.SegmentsRewritten > 0 {
			f.log.Info("space reclaimed", "segments_scanned", st.SegmentsScanned, "segments_rewritten", st.SegmentsRewritten,
				"records_redacted", st.RecordsRedacted, "bytes_reclaimed", st.BytesReclaimed(), "duration", st.Duration)
		}
	case errors.Is(err, segment.ErrClosed), errors.Is(err, errReclaimStopped):
		// A restore replaced the generation (it requests a new pass) or the FSM is closing.
		f.log.Info("space reclaim interrupted", "error", err, "segments_rewritten", st.SegmentsRewritten)
	default:
		f.log.Error("space reclaim failed", "error", err, "segments_rewritten", st.SegmentsRewritten)
	}
	f.reclaim.update(func(s *ReclaimStatus) {
		s.Running, s.Last, s.LastError, s.Finished = false, st, err, time.Now()
		s.Completed++
		s.Total.add(st)
		if err == nil {
			s.CoveredIndex = max(s.CoveredIndex, applied)
		}
		r := f.reclaim // update holds r.mu
		if len(r.history) == maxPassHistory {
			r.history = append(r.history[:0], r.history[1:]...)
		}
		r.history = append(r.history, passRecord{start: applied, stats: st, ok: err == nil})
	})
	if f.cfg.OnReclaim != nil {
		f.cfg.OnReclaim(st, err)
	}
}

// rewriteSealed reclaims every sealed segment not yet reclaimed for scavenged generation gen.
func (f *FSM) rewriteSealed(seg *segment.Log, sb map[string]uint64, gen uint64) (ReclaimStats, error) {
	r := f.reclaim
	if r.reclaimedLog != seg { // first pass, or a restore replaced the generation
		r.reclaimedLog, r.reclaimed = seg, make(map[uint64]uint64)
	}
	var st ReclaimStats
	for _, base := range seg.SealedBases() {
		if r.reclaimed[base] == gen {
			continue
		}
		select {
		case <-r.stop:
			return st, errReclaimStopped
		default:
		}
		first := true
		rs, err := seg.Rewrite(base, func(r *segment.Record) (segment.Record, bool) {
			if first && f.cfg.reclaimHook != nil {
				f.cfg.reclaimHook(base)
			}
			first = false
			if redactIfScavenged(r, sb) {
				return *r, true
			}
			return segment.Record{}, false
		})
		st.SegmentsScanned++
		st.RecordsRedacted += rs.Changed
		if rs.Rewritten {
			st.SegmentsRewritten++
			st.BytesBefore += rs.BytesBefore
			st.BytesAfter += rs.BytesAfter
		}
		if err != nil {
			return st, fmt.Errorf("fsm: reclaim segment at position %d: %w", base, err)
		}
		r.reclaimed[base] = gen
	}
	return st, nil
}

// Compactions returns how many compactions have been applied on this node. A record read before
// a compaction may read differently (redacted) after it; caches of records key on this count.
func (f *FSM) Compactions() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.idx.compactions
}

// ReclaimStatus returns this node's physical reclaim state.
func (f *FSM) ReclaimStatus() ReclaimStatus {
	f.reclaim.mu.Lock()
	defer f.reclaim.mu.Unlock()
	return f.reclaim.status
}

// WaitReclaimed waits until raft index index is applied here, then until a physical reclaim pass
// that covers every compaction at or below it has completed on this node (at once if there is
// none), and returns the status then, with Covering saying what the covering passes reclaimed.
// It returns the context's error, or ErrClosed if the FSM closes. A pass that fails is reported in
// LastError and does not count as covering index.
func (f *FSM) WaitReclaimed(ctx context.Context, index uint64) (ReclaimStatus, error) {
	began := time.Now()
	if err := f.WaitApplied(ctx, index); err != nil {
		return f.ReclaimStatus(), err
	}
	f.mu.RLock()
	if last := f.idx.lastCompactionIndex; last <= index {
		index = last // nothing after the last compaction needs reclaiming
	}
	f.mu.RUnlock()
	for {
		r := f.reclaim
		r.mu.Lock()
		st, ch := r.status, r.changed
		if !st.Running && st.CoveredIndex >= index {
			for _, h := range r.history {
				if h.start >= index {
					st.Covering.add(h.stats)
					if h.ok {
						break
					}
				}
			}
		}
		r.mu.Unlock()
		switch {
		case st.Running:
		case st.CoveredIndex >= index:
			return st, nil
		case st.LastError != nil && st.Finished.After(began):
			return st, fmt.Errorf("fsm: space reclaim failed: %w", st.LastError)
		}
		select {
		case <-ch:
		case <-r.done:
			return st, ErrClosed
		case <-ctx.Done():
			return st, fmt.Errorf("fsm: waiting for space reclaim to cover index %d (covered %d): %w", index, st.CoveredIndex, ctx.Err())
		}
	}
}

// ReclaimNow runs a physical reclaim pass that starts after the call (requesting one) and returns
// its status once it completed, or the error that ended it. Passes are serialised: it may wait for
// one in progress first.
func (f *FSM) ReclaimNow(ctx context.Context) (ReclaimStatus, error) {
	r := f.reclaim
	r.mu.Lock()
	want := r.status.Started + 1
	r.mu.Unlock()
	r.request()
	for {
		r.mu.Lock()
		st, ch := r.status, r.changed
		r.mu.Unlock()
		if st.Completed >= want {
			if st.LastError != nil {
				return st, fmt.Errorf("fsm: space reclaim failed: %w", st.LastError)
			}
			return st, nil
		}
		select {
		case <-ch:
		case <-r.done:
			return st, ErrClosed
		case <-ctx.Done():
			return st, fmt.Errorf("fsm: waiting for a space reclaim pass: %w", ctx.Err())
		}
	}
}

// RequestReclaim asks for a physical reclaim pass now (normally one runs after every applied
// compaction, after Open and after Restore). It returns at once.
func (f *FSM) RequestReclaim() { f.reclaim.request() }

// CompactionDue reports whether a compaction applied now would hide anything more: some stream
// hides revisions at time now (Unix ns) that no compaction has made gone yet. The compaction
// policy uses it to propose only useful compactions.
func (f *FSM) CompactionDue(now int64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st := f.idx
	for i := range st.streams {
		s := &st.streams[i]
		if s.meta != nil && st.hiddenBefore(s, now) > s.meta.scavengedBefore {
			return true
		}
	}
	return false
}

// SystemRecord reports whether records of this kind hold a position but no user-visible event:
// compaction markers and redacted events. Reads of $all and subscriptions skip them (they still
// count as examined, so checkpoints move past them).
func SystemRecord(kind uint8) bool { return kind == KindCompaction || kind == KindRedacted }

// redactScavenged replaces the events in recs that a compaction made gone by their redacted
// form, so a node answers the same before and after it rewrote their segment.
func (f *FSM) redactScavenged(recs []RecordedEvent) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.idx.scavenged == 0 {
		return
	}
	for i := range recs {
		r := &recs[i]
		if r.Kind != KindEvent {
			continue
		}
		if s, ok := f.idx.lookup(r.Stream); ok && r.Revision < s.scavenged() {
			*r = redact(r)
		}
	}
}
