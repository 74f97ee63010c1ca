package fsm

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/fsm/fsmpb"
	"github.com/cairndb/cairn/segment"
)

// Stream lifecycle (DESIGN §5): metadata limits, soft delete and tombstone. Every one of them
// hides a *prefix* of a stream's revisions, so one number per stream — the first visible
// revision, hiddenBefore — says what reads, subscriptions, GetStreamInfo and compaction may
// show. It is computed at read time from the stream's lifecycle state (streamMeta), so a limit
// takes effect the moment its record is applied, and compaction that removes what it hides
// changes no read result. See DESIGN.md, "Stream lifecycle".

// Metadata limits, checked identically by the api layer and here.
const (
	// MaxMetadataUserKeys is the most user keys one stream's metadata may hold.
	MaxMetadataUserKeys = 64
	// MaxMetadataUserBytes bounds the user keys' total size (keys plus values).
	MaxMetadataUserBytes = 16 << 10
	// MaxMetadataKeyBytes bounds one user key.
	MaxMetadataKeyBytes = 255
)

// Type strings of lifecycle records, as $all shows them (metadata records are not shown).
const (
	// TypeTombstone is the type of a tombstone record.
	TypeTombstone = "$tombstone"
	// TypeSoftDelete is the type of a soft-delete record.
	TypeSoftDelete = "$deleted"
	// TypeMetadata is the type of a metadata record.
	TypeMetadata = "$metadata"
)

// streamMeta is a stream's lifecycle state. Most streams never have one: streamState holds a nil
// pointer for them, so the per-stream cost of a plain stream stays one pointer (DESIGN.md,
// memory budget). User keys are not held here: GetStreamMetadata reads them from the latest
// metadata record.
type streamMeta struct {
	tombstonedAt  uint64 // position of the tombstone record, 0 if none
	deletedAt     uint64 // position of the latest soft-delete record, 0 if none
	deletedBefore uint64 // revisions below it were hidden by the latest soft delete
	metaCount     uint64 // metadata records written; the latest revision is metaCount-1
	metaPos       uint64 // position of the latest metadata record, 0 if none
	maxCount      uint64 // 0: no bound
	maxAge        int64  // nanoseconds; 0: no bound
	truncBefore   uint64 // 0: none
	// scavengedBefore is the first revision a compaction left readable: revisions below it are
	// gone for every read from the compaction's log index on, whatever happens to the stream
	// later, and physical compaction may redact them (compact.go). Only a stream with lifecycle
	// state can hide anything, so only such a stream can have one.
	scavengedBefore uint64
}

// Metadata is a stream's metadata as set by SetMetadata.
type Metadata struct {
	// MaxCount, when non-zero, keeps only the newest MaxCount events visible.
	MaxCount uint64
	// MaxAge, when non-zero, hides events committed more than MaxAge nanoseconds before the read.
	MaxAge int64
	// TruncateBefore hides every revision below it.
	TruncateBefore uint64
	// HasMaxCount and HasTruncateBefore say whether the optional fields were set.
	HasMaxCount, HasTruncateBefore bool
	// User holds the user keys.
	User map[string][]byte
}

// StreamMetadata is the answer to FSM.StreamMetadata.
type StreamMetadata struct {
	// Exists reports that metadata was set at least once.
	Exists bool
	// Revision is the latest metadata revision (0 for the first); meaningful when Exists.
	Revision uint64
	// Position is the position of the latest metadata record; meaningful when Exists.
	Position uint64
	// Metadata is the latest metadata; meaningful when Exists.
	Metadata Metadata
}

// ensureMeta returns the stream's lifecycle state, creating it.
func (st *index) ensureMeta(s *streamState) *streamMeta {
	if s.meta == nil {
		s.meta = &streamMeta{}
		st.metaStreams++
	}
	return s.meta
}

// tombstonePos returns the position of the stream's tombstone record, 0 if it has none.
func (s *streamState) tombstonePos() uint64 {
	if s.meta == nil {
		return 0
	}
	return s.meta.tombstonedAt
}

// hiddenBefore returns the first revision of s visible at Unix-ns time now: every lower revision
// is hidden (by truncate_before, max_count, max_age, a soft delete, or — all of them — a
// tombstone). It is at most the stream's next revision. It is a pure function of the index and
// now, O(1) without max_age and O(log n) record reads with it (commit timestamps never decrease,
// so the revisions older than max_age are a prefix found by binary search). Without a timestamp
// source (an index not installed in an FSM) max_age hides nothing.
func (st *index) hiddenBefore(s *streamState, now int64) uint64 {
	return st.hiddenIn(s, s.positions, math.MaxUint64, now)
}

// hiddenIn is hiddenBefore over the stream's first len(positions) revisions, counting only
// tombstone and soft-delete records at or below position visible (readers pass the published
// watermark; the index may run ahead of it while a batch is decided).
func (st *index) hiddenIn(s *streamState, positions []uint64, visible uint64, now int64) uint64 {
	m := s.meta
	n := uint64(len(positions))
	if m == nil {
		return 0
	}
	if m.tombstonedAt != 0 && m.tombstonedAt <= visible {
		return n
	}
	var h uint64
	if m.deletedAt != 0 && m.deletedAt <= visible {
		h = m.deletedBefore
	}
	h = max(h, m.truncBefore, m.scavengedBefore)
	if m.maxCount > 0 && n > m.maxCount {
		h = max(h, n-m.maxCount)
	}
	h = min(h, n)
	if m.maxAge > 0 && h < n && st.tsAt != nil {
		cutoff := now - m.maxAge // hidden: committed before the cutoff
		lo, hi := h, n
		for lo < hi {
			mid := lo + (hi-lo)/2
			ts, err := st.tsAt(positions[mid])
			if err != nil || ts >= cutoff {
				// A record that cannot be read counts as visible: the answer errs towards
				// showing (and keeping) more, never less.
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		h = lo
	}
	return h
}

// scavenged returns the stream's scavengedBefore (0 for a stream without lifecycle state).
func (s *streamState) scavenged() uint64 {
	if s.meta == nil {
		return 0
	}
	return s.meta.scavengedBefore
}

// softDeleted reports that the stream's latest soft delete (visible at position visible) came
// after its last event among positions: reads report it not found.
func (s *streamState) softDeleted(positions []uint64, visible uint64) bool {
	m := s.meta
	return m != nil && m.deletedAt != 0 && m.deletedAt <= visible && m.deletedBefore >= uint64(len(positions))
}

// addLifecycle indexes a lifecycle record (tombstone, soft delete, metadata).
func (st *index) addLifecycle(s *streamState, r *segment.Record) {
	m := st.ensureMeta(s)
	switch r.Kind {
	case KindTombstone:
		m.tombstonedAt = r.Position
	case KindSoftDelete:
		m.deletedAt, m.deletedBefore = r.Position, r.Revision
	case KindMetadata:
		m.metaCount, m.metaPos = r.Revision+1, r.Position
		md, err := decodeMetadata(r.Data)
		if err != nil {
			// Written by this code after validation, so this is damage the record CRC missed;
			// the limits stay as they were and Open logs the count.
			st.badMetadata++
			return
		}
		m.maxCount, m.maxAge, m.truncBefore = md.MaxCount, md.MaxAge, md.TruncateBefore
	}
}

// Hidden returns the predicate that says whether a record returned by ReadAll is hidden at Unix-ns
// time now: an event below its stream's first visible revision, or a metadata record (control
// records, never shown; their state is read with StreamMetadata). Tombstone and soft-delete
// records are not hidden. The predicate takes the read lock per call only when some stream has
// lifecycle state.
func (f *FSM) Hidden(now int64) func(*RecordedEvent) bool {
	f.mu.RLock()
	anyMeta := f.idx.metaStreams > 0
	f.mu.RUnlock()
	return func(r *RecordedEvent) bool {
		switch {
		case r.Kind == KindMetadata, SystemRecord(r.Kind):
			return true
		case r.Kind != KindEvent || !anyMeta:
			return false
		}
		f.mu.RLock()
		defer f.mu.RUnlock()
		s, ok := f.idx.lookup(r.Stream)
		if !ok || s.meta == nil {
			return false
		}
		return r.Revision < f.idx.hiddenIn(s, f.cutPositions(s), f.visible, now)
	}
}

// cutPositions returns the stream's positions at or below the visible watermark. Callers hold mu.
func (f *FSM) cutPositions(s *streamState) []uint64 {
	positions := s.positions
	for n := len(positions); n > 0 && positions[n-1] > f.visible; n-- {
		positions = positions[:n-1]
	}
	return positions
}

// StreamMetadata returns the stream's latest metadata. The limits come from the index; user keys
// are read from the latest metadata record. It waits (bounded by ctx) if that record is applied
// but not yet readable.
func (f *FSM) StreamMetadata(ctx context.Context, name string) (StreamMetadata, error) {
	for {
		f.mu.RLock()
		s, ok := f.idx.lookup(name)
		var pos, count uint64
		if ok && s.meta != nil {
			pos, count = s.meta.metaPos, s.meta.metaCount
		}
		visible, seg, ch, closed := f.visible, f.seg, f.appliedCh, f.closed
		f.mu.RUnlock()
		switch {
		case closed:
			return StreamMetadata{}, ErrClosed
		case count == 0:
			return StreamMetadata{}, nil
		case pos > visible:
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return StreamMetadata{}, fmt.Errorf("metadata of %q: %w", name, ctx.Err())
			}
		}
		r, err := seg.Read(pos)
		if err != nil {
			return StreamMetadata{}, fmt.Errorf("metadata of %q: read record at position %d: %w", name, pos, err)
		}
		md, err := decodeMetadata(r.Data)
		if err != nil {
			return StreamMetadata{}, fmt.Errorf("metadata of %q at position %d: %w", name, pos, err)
		}
		return StreamMetadata{Exists: true, Revision: count - 1, Position: pos, Metadata: md}, nil
	}
}

// metadataFromPB validates a command's metadata and returns it with user keys sorted, as it is
// encoded into the record. The checks depend only on the command, so every node decides alike.
func metadataFromPB(pb *fsmpb.StreamMetadata) (*fsmpb.StreamMetadata, error) {
	if pb == nil {
		pb = &fsmpb.StreamMetadata{}
	}
	out := &fsmpb.StreamMetadata{MaxCount: pb.MaxCount, MaxAgeNanos: pb.GetMaxAgeNanos(), TruncateBefore: pb.TruncateBefore}
	if pb.MaxCount != nil && pb.GetMaxCount() == 0 {
		return nil, invalidf("metadata: max_count must be at least 1")
	}
	if pb.GetMaxAgeNanos() < 0 {
		return nil, invalidf("metadata: max_age %d ns is negative", pb.GetMaxAgeNanos())
	}
	if len(pb.GetUser()) > MaxMetadataUserKeys {
		return nil, invalidf("metadata: %d user keys, limit %d", len(pb.GetUser()), MaxMetadataUserKeys)
	}
	size := 0
	for _, u := range pb.GetUser() {
		if err := ValidMetadataKey(u.GetKey()); err != nil {
			return nil, invalidf("metadata: %v", err)
		}
		size += len(u.GetKey()) + len(u.GetValue())
		out.User = append(out.User, &fsmpb.UserKey{Key: u.GetKey(), Value: u.GetValue()})
	}
	if size > MaxMetadataUserBytes {
		return nil, invalidf("metadata: user keys take %d bytes, limit %d", size, MaxMetadataUserBytes)
	}
	slices.SortFunc(out.User, func(a, b *fsmpb.UserKey) int { return cmp.Compare(a.GetKey(), b.GetKey()) })
	for i := 1; i < len(out.User); i++ {
		if out.User[i].GetKey() == out.User[i-1].GetKey() {
			return nil, invalidf("metadata: user key %q appears twice", out.User[i].GetKey())
		}
	}
	return out, nil
}

// ValidMetadataKey checks a user metadata key: 1-255 bytes of UTF-8 without control characters,
// not starting with '$' (reserved for the system).
func ValidMetadataKey(k string) error {
	switch {
	case k == "":
		return fmt.Errorf("empty user key")
	case len(k) > MaxMetadataKeyBytes:
		return fmt.Errorf("user key of %d bytes, limit %d", len(k), MaxMetadataKeyBytes)
	case !utf8.ValidString(k):
		return fmt.Errorf("user key %q is not UTF-8", k)
	case strings.HasPrefix(k, "$"):
		return fmt.Errorf("user key %q: keys starting with '$' are reserved", k)
	case strings.ContainsFunc(k, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("user key %q contains control characters", k)
	}
	return nil
}

// encodeMetadata is the record encoding: deterministic protobuf of validated metadata.
func encodeMetadata(pb *fsmpb.StreamMetadata) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return b, nil
}

func decodeMetadata(b []byte) (Metadata, error) {
	var pb fsmpb.StreamMetadata
	if err := proto.Unmarshal(b, &pb); err != nil {
		return Metadata{}, fmt.Errorf("decode metadata: %w", err)
	}
	md := Metadata{
		MaxCount: pb.GetMaxCount(), HasMaxCount: pb.MaxCount != nil,
		MaxAge:         pb.GetMaxAgeNanos(),
		TruncateBefore: pb.GetTruncateBefore(), HasTruncateBefore: pb.TruncateBefore != nil,
	}
	if len(pb.GetUser()) > 0 {
		md.User = make(map[string][]byte, len(pb.GetUser()))
		for _, u := range pb.GetUser() {
			md.User[u.GetKey()] = u.GetValue()
		}
	}
	return md, nil
}

func (a applier) setMetadata(req *fsmpb.SetMetadataRequest) Result {
	name := req.GetStream()
	if name == "" {
		return Result{Err: invalidf("set metadata: empty stream name")}
	}
	exp := expectedOf(req.GetExpected())
	if err := validExpected(exp); err != nil {
		return Result{Err: err}
	}
	md, err := metadataFromPB(req.GetMetadata())
	if err != nil {
		return Result{Err: err}
	}
	data, err := encodeMetadata(md)
	if err != nil {
		return Result{Err: invalidf("set metadata of %q: %v", name, err)}
	}
	if size := 128 + len(name) + len(data); size > a.f.cfg.Segment.MaxRecordBytes {
		return Result{Err: invalidf("set metadata of %q: about %d bytes, limit %d", name, size, a.f.cfg.Segment.MaxRecordBytes)}
	}
	v := Violation{Stream: name, Expected: exp, Metadata: true}
	var count uint64
	if s, ok := a.f.idx.lookup(name); ok && s.meta != nil {
		v.Tombstoned = s.meta.tombstonedAt != 0
		count = s.meta.metaCount
	}
	if count > 0 {
		v.StreamExists, v.ActualRevision = true, count-1
	}
	if v.Tombstoned || !expectedHolds(exp, v.StreamExists, v.ActualRevision) {
		return Result{Err: &ConditionError{Violations: []Violation{v}}}
	}
	pos := a.f.nextPos
	a.f.write(segment.Record{Index: a.index, Revision: count, Timestamp: a.ts, Kind: KindMetadata,
		Stream: name, Type: TypeMetadata, Data: data})
	return Result{LogIndex: a.index, Timestamp: a.ts, Streams: []StreamResult{{
		Stream: name, FirstRevision: count, LastRevision: count, FirstPosition: pos, LastPosition: pos,
	}}}
}

func (a applier) softDelete(req *fsmpb.SoftDeleteRequest) Result {
	name := req.GetStream()
	if name == "" {
		return Result{Err: invalidf("soft delete: empty stream name")}
	}
	exp := expectedOf(req.GetExpected())
	if err := validExpected(exp); err != nil {
		return Result{Err: err}
	}
	if v, ok := a.check(name, exp); !ok {
		return Result{Err: &ConditionError{Violations: []Violation{v}}}
	}
	s, ok := a.f.idx.lookup(name)
	if !ok || len(s.positions) == 0 {
		return Result{Err: fmt.Errorf("soft delete %q: %w", name, ErrStreamNotFound)}
	}
	next := uint64(len(s.positions))
	pos := a.f.nextPos
	a.f.write(segment.Record{Index: a.index, Revision: next, Timestamp: a.ts, Kind: KindSoftDelete,
		Stream: name, Type: TypeSoftDelete})
	return Result{LogIndex: a.index, Timestamp: a.ts, Streams: []StreamResult{{
		Stream: name, FirstRevision: next - 1, LastRevision: next - 1, FirstPosition: pos, LastPosition: pos,
	}}}
}

// expectedHolds evaluates a valid expected condition against "exists" and the actual revision.
func expectedHolds(exp Expected, exists bool, actual uint64) bool {
	switch exp.Kind {
	case fsmpb.ExpectedRevision_KIND_ANY:
		return true
	case fsmpb.ExpectedRevision_KIND_NO_STREAM:
		return !exists
	case fsmpb.ExpectedRevision_KIND_STREAM_EXISTS:
		return exists
	default: // KIND_EXACT; other kinds were rejected by validation
		return exists && actual == exp.Revision
	}
}
