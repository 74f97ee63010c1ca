package fsm

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/cairndb/cairn/segment"
)

// RecordedEvent is a stored event (or tombstone record) as reads return it. Its byte slices are
// owned by the caller.
type RecordedEvent = segment.Record

// Direction is the order of a read.
type Direction = segment.Direction

// Read directions.
const (
	// Forward reads in increasing revision or position.
	Forward = segment.Forward
	// Backward reads in decreasing revision or position.
	Backward = segment.Backward
)

// Read start sentinels for the from argument of ReadStream and ReadAll.
const (
	// Start is the first revision of a stream or the first position of the log.
	Start uint64 = 0
	// End is the last revision of a stream or the last position of the log.
	End uint64 = math.MaxUint64
)

// AppliedIndex returns the raft index up to which every entry is applied and readable.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

// LastPosition returns the global position of the last readable record, 0 if none.
func (f *FSM) LastPosition() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.visible
}

// WaitApplied blocks until every entry up to and including index is applied and readable, the
// context ends (its error is returned), or the FSM closes (ErrClosed). This watermark, not
// raft.AppliedIndex (which only says an entry was handed to the FSM goroutine), is what reads
// must wait on.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.RLock()
		applied, ch, closed := f.applied, f.appliedCh, f.closed
		f.mu.RUnlock()
		if closed {
			return ErrClosed
		}
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fsm: waiting for index %d (applied %d): %w", index, applied, ctx.Err())
		}
	}
}

// StreamInfo describes a stream's current state as readers see it, with its lifecycle applied.
type StreamInfo struct {
	// Exists reports whether the stream has at least one event and is not soft-deleted (its
	// events may still all be hidden by metadata limits: see Count).
	Exists bool
	// LastRevision is the revision of the last event, hidden or not; meaningful when Exists or
	// Deleted.
	LastRevision uint64
	// LastPosition is the global position of the last event; meaningful when Exists or Deleted.
	LastPosition uint64
	// FirstRevision is the first visible revision (hiddenBefore); every lower one is hidden.
	// With no visible event it is LastRevision+1.
	FirstRevision uint64
	// Count is the number of visible events.
	Count uint64
	// Tombstoned reports that the stream is tombstoned.
	Tombstoned bool
	// Deleted reports that the stream is soft-deleted and was not appended to since.
	Deleted bool
	// HasMetadata reports that metadata was set; MetadataRevision is the latest revision.
	HasMetadata      bool
	MetadataRevision uint64
}

// Stream returns the stream's current state as readers see it.
func (f *FSM) Stream(name string) StreamInfo {
	now := f.cfg.Now()
	f.mu.RLock()
	defer f.mu.RUnlock()
	info, _ := f.streamLocked(name, now)
	return info
}

// streamLocked returns the visible state of a stream and its visible positions, from its first
// visible revision on (the revision of positions[0] is info.FirstRevision). Callers hold mu.
// The index may run ahead of f.visible while a batch is being decided; everything beyond the
// visible position is cut off here, so readers never see a record before it is written.
func (f *FSM) streamLocked(name string, now int64) (StreamInfo, []uint64) {
	s, ok := f.idx.lookup(name)
	if !ok {
		return StreamInfo{}, nil
	}
	positions := f.cutPositions(s)
	tomb := s.tombstonePos()
	info := StreamInfo{Tombstoned: tomb != 0 && tomb <= f.visible}
	if m := s.meta; m != nil && m.metaCount > 0 {
		info.HasMetadata, info.MetadataRevision = true, m.metaCount-1
	}
	n := uint64(len(positions))
	if n == 0 {
		return info, nil
	}
	info.Exists, info.LastRevision, info.LastPosition = true, n-1, positions[n-1]
	info.Deleted = s.softDeleted(positions, f.visible)
	info.Exists = !info.Deleted
	info.FirstRevision = f.idx.hiddenIn(s, positions, f.visible, now)
	info.Count = n - info.FirstRevision
	return info, positions[info.FirstRevision:]
}

// ReadStream returns up to limit visible events of a stream starting at revision from
// (inclusive; Start and End are sentinels), in the given direction. Revisions hidden by the
// stream's lifecycle (metadata limits, soft delete) are skipped: forwards the read starts at the
// first visible revision, backwards it ends there. It returns ErrStreamTombstoned for a
// tombstoned stream and ErrStreamNotFound for a stream without events or soft-deleted. A from
// beyond the last revision reads nothing forwards and from the end backwards.
func (f *FSM) ReadStream(name string, from uint64, dir Direction, limit int) ([]RecordedEvent, error) {
	now := f.cfg.Now()
	f.mu.RLock()
	info, positions := f.streamLocked(name, now)
	seg := f.seg
	f.mu.RUnlock()
	switch {
	case info.Tombstoned:
		return nil, fmt.Errorf("read %q: %w", name, ErrStreamTombstoned)
	case !info.Exists:
		return nil, fmt.Errorf("read %q: %w", name, ErrStreamNotFound)
	}
	var want []uint64
	first, n := info.FirstRevision, uint64(len(positions)) // positions[i] is revision first+i
	if dir == Forward {
		from = max(from, first)
		if from-first < n {
			want = positions[from-first : min(n, from-first+uint64(max(limit, 0)))]
		}
	} else if n > 0 && from >= first {
		start := min(from-first, n-1)
		for r := int64(start); r >= 0 && len(want) < limit; r-- {
			want = append(want, positions[r])
		}
	}
	out := make([]RecordedEvent, 0, len(want))
	for _, pos := range want {
		r, err := seg.Read(pos)
		if err != nil {
			return nil, fmt.Errorf("read %q at position %d: %w", name, pos, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// StreamRevisionAtTime returns the first revision of the stream whose commit time is at or after
// ts (Unix nanoseconds), or the stream's next revision when every event is older (0 for an
// unknown stream). It is PositionAtTime followed by a binary search over the stream's positions.
func (f *FSM) StreamRevisionAtTime(name string, ts int64) uint64 {
	pos := f.PositionAtTime(ts)
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.idx.lookup(name)
	if !ok {
		return 0
	}
	positions := f.cutPositions(s)
	i, _ := slices.BinarySearch(positions, pos)
	return uint64(i)
}

// ReadAll returns up to limit records of the global log starting at position from (inclusive;
// Start and End are sentinels), in the given direction. Every record is returned, hidden or not,
// lifecycle records included (Kind tells them apart): callers that serve $all drop what Hidden
// says is hidden, so paging and checkpoints stay in terms of positions scanned. Events that a
// compaction made gone are returned in their redacted form (KindRedacted), whether or not this
// node has rewritten their segment yet, and compaction markers (KindCompaction) are included:
// positions stay dense. SystemRecord tells which records carry no user event.
func (f *FSM) ReadAll(from uint64, dir Direction, limit int) ([]RecordedEvent, error) {
	f.mu.RLock()
	visible, seg := f.visible, f.seg
	f.mu.RUnlock()
	if visible == 0 || limit <= 0 || (dir == Forward && from > visible) {
		return nil, nil
	}
	if dir == Backward {
		// As for streams, Start backwards is the first record (from is inclusive).
		from = max(min(from, visible), seg.FirstPosition())
	}
	it := seg.Scan(from, dir)
	defer it.Close()
	var out []RecordedEvent
	for len(out) < limit && it.Next() {
		r := it.Record()
		if r.Position > visible {
			break
		}
		out = append(out, cloneRecord(r))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read $all from %d: %w", from, err)
	}
	f.redactScavenged(out)
	return out, nil
}

// cloneRecord copies an iterator's record, whose slices alias the iterator's buffers.
func cloneRecord(r *segment.Record) RecordedEvent {
	c := *r
	c.Data = cloneBytes(r.Data)
	c.Metadata = cloneBytes(r.Metadata)
	if r.Tags != nil {
		c.Tags = append([]string(nil), r.Tags...)
	}
	return c
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
