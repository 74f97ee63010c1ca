package fsm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/fsm/fsmpb"
	"github.com/cairndb/cairn/segment"
)

// Record kinds stored in segment.Record.Kind. Values are part of the on-disk format.
const (
	// KindEvent is a user event appended to a stream.
	KindEvent uint8 = 1
	// KindTombstone marks a stream as tombstoned; it takes a global position but no revision.
	KindTombstone uint8 = 2
	// KindMetadata sets a stream's metadata: Data is the encoded fsmpb.StreamMetadata, Revision
	// the metadata revision. It takes a global position but no stream revision.
	KindMetadata uint8 = 3
	// KindSoftDelete soft-deletes a stream: Revision is the stream's next revision at the time
	// (every lower one is hidden). It takes a global position but no stream revision.
	KindSoftDelete uint8 = 4
	// KindCompaction marks the point where a CompactRequest was applied (see compact.go). It takes
	// a global position in the system stream CompactionStream and no revision.
	KindCompaction uint8 = 5
	// KindRedacted is an event whose content physical compaction dropped: it keeps the event's
	// position, raft index, revision, timestamp, id and stream, and nothing else. It counts like
	// an event for positions, revisions and the dedupe window.
	KindRedacted uint8 = 6
)

// CommandVersion is the Command envelope version this FSM writes and understands.
const CommandVersion = 1

// Default dedupe horizon (DESIGN §2: the dedupe index has a documented, configurable horizon).
const (
	// DefaultDedupeMaxEvents is how many of the most recent events are remembered by id.
	DefaultDedupeMaxEvents = 1 << 20
	// DefaultDedupeMaxAge is how far back, in commit time, event ids are remembered.
	DefaultDedupeMaxAge = 24 * time.Hour
)

// DedupeHorizon bounds the idempotency window. An event id is remembered while its event is among
// the last MaxEvents events of the log AND its commit timestamp is no older than MaxAge before the
// newest event's. Both bounds are measured in the log, not on a local clock, so every node holds
// the same window. Every node of a cluster must run with the same horizon.
type DedupeHorizon struct {
	// MaxEvents; 0 means DefaultDedupeMaxEvents.
	MaxEvents int
	// MaxAge; 0 means DefaultDedupeMaxAge, a negative value means no age bound.
	MaxAge time.Duration
}

// Config configures an FSM.
type Config struct {
	// Dir holds the FSM's data: a CURRENT file naming the live generation directory, which holds
	// the segment files. Restore builds a new generation and flips CURRENT.
	Dir string
	// Dedupe is the idempotency window.
	Dedupe DedupeHorizon
	// Segment configures the segment files. Segment.MaxRecordBytes also bounds the size of one
	// event: larger events are rejected with ErrInvalidCommand.
	Segment segment.Options
	// Logger receives the FSM's logs; nil means slog.Default().
	Logger *slog.Logger
	// OnApply, if set, is called after every ApplyBatch with the number of raft entries, the
	// records written and the time taken (metrics). It runs on the apply goroutine: keep it cheap.
	OnApply func(entries, records int, took time.Duration)
	// OnSnapshot, if set, is called after every snapshot Persist with the records copied, the
	// time taken and the error, if any (metrics).
	OnSnapshot func(records uint64, took time.Duration, err error)
	// Now is the clock that reads use to apply max_age (Unix nanoseconds); nil means time.Now.
	// Apply never reads it.
	Now func() int64

	// OnReclaim, if set, is called after every physical reclaim pass with its statistics and the
	// error that ended it early, if any (metrics). It runs on the reclaim goroutine.
	OnReclaim func(ReclaimStats, error)

	// reclaimHook, set only by tests, runs inside each segment rewrite of a reclaim pass, before
	// the segment's first record is processed.
	reclaimHook func(base uint64)
}

func (c Config) withDefaults() Config {
	if c.Dedupe.MaxEvents <= 0 {
		c.Dedupe.MaxEvents = DefaultDedupeMaxEvents
	}
	if c.Dedupe.MaxAge == 0 {
		c.Dedupe.MaxAge = DefaultDedupeMaxAge
	}
	if c.Segment.MaxRecordBytes <= 0 {
		c.Segment.MaxRecordBytes = 16 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Segment.Logger == nil {
		c.Segment.Logger = c.Logger
	}
	if c.Now == nil {
		c.Now = func() int64 { return time.Now().UnixNano() }
	}
	return c
}

// streamState is the in-memory index entry of one stream. It is kept small on purpose: a stream
// of one event costs this struct, one map entry and one 8-byte slice element (see DESIGN.md).
type streamState struct {
	// positions[r] is the global position of revision r.
	positions []uint64
	// meta is the stream's lifecycle state (tombstone, soft delete, metadata limits); nil for
	// the many streams that have none (visibility.go).
	meta *streamMeta
}

// FSM is the replicated state machine. Apply, ApplyBatch, Snapshot and Restore are called by raft
// from one goroutine; the read methods are safe from any goroutine at any time.
type FSM struct {
	cfg Config
	log *slog.Logger

	// mu guards the fields below against concurrent readers. Only the apply goroutine writes
	// them, so it reads them without the lock.
	mu        sync.RWMutex
	seg       *segment.Log
	gen       uint64
	idx       *index        // stream index; may run ahead of visible while a batch is decided
	applied   uint64        // raft index of the last applied entry (published watermark)
	visible   uint64        // last global position readers may see (published with applied)
	appliedCh chan struct{} // closed and replaced every time the watermark moves
	closed    bool

	reclaim     *reclaimer // physical reclaim goroutine (compact.go)
	stopReclaim sync.Once

	// Apply-goroutine state, not read by readers.
	nextPos  uint64           // position the next record gets
	pending  []segment.Record // records decided in the current batch, not yet written
	segCount int              // segment files after the last batch, while compacted events exist
}

const currentFile = "CURRENT"

// Open opens or creates the FSM in cfg.Dir and rebuilds its indexes from the segment records.
// AppliedIndex() then reports the raft index recovered from the data: raft entries at or below it
// are skipped when replayed.
func Open(cfg Config) (*FSM, error) {
	cfg = cfg.withDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("fsm: Config.Dir is required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("fsm: create data dir: %w", err)
	}
	f := &FSM{cfg: cfg, log: cfg.Logger.With("component", "fsm"), appliedCh: make(chan struct{}), reclaim: newReclaimer()}
	gen, err := readCurrent(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if gen == 0 {
		gen = 1
		if err := writeCurrent(cfg.Dir, gen); err != nil {
			return nil, err
		}
	}
	removeStaleGenerations(cfg.Dir, gen, f.log)
	seg, err := segment.Open(genDir(cfg.Dir, gen), cfg.Segment)
	if err != nil {
		return nil, fmt.Errorf("fsm: open segments of generation %d: %w", gen, err)
	}
	st, err := rebuild(seg, cfg.Dedupe)
	if err != nil {
		_ = seg.Close()
		return nil, fmt.Errorf("fsm: rebuild indexes: %w", err)
	}
	f.install(seg, gen, st)
	if durable, err := readApplied(seg.Dir()); err != nil {
		f.log.Warn("ignoring unreadable applied-index file", "error", err)
	} else if durable > f.applied {
		f.applied = durable
	}
	f.log.Info("fsm opened", "dir", cfg.Dir, "generation", gen, "applied_index", f.applied,
		"last_position", f.visible, "streams", len(f.idx.streams))
	go f.reclaimLoop()
	if f.idx.scavenged > 0 {
		f.reclaim.request() // finish what a compaction before the restart may have left
	}
	return f, nil
}

// index is the state derived from a segment log's records: the stream index, the dedupe window
// and the timestamp floor. It is a pure function of the records, which is what makes it
// replicated state without being stored anywhere but in the records.
type index struct {
	streamIDs map[string]uint32
	streams   []streamState
	dedupe    *dedupeIndex
	auth      *tokenTable // tokens, from the KindAuth records of AuthStream (auth.go)
	lastPos   uint64
	lastIndex uint64
	lastTs    int64
	// metaStreams counts streams with lifecycle state; while it is 0 nothing is hidden.
	metaStreams int
	// badMetadata counts metadata records that did not decode (logged at Open and Restore).
	badMetadata int
	// tsAt returns the commit timestamp of the record at a position (max_age); set by install.
	tsAt func(pos uint64) (int64, error)
	// compactions counts compaction markers; scavenged counts raises of some stream's
	// scavengedBefore (both 0 until the first compaction that hides anything).
	compactions, scavenged uint64
	// lastCompactionIndex is the raft index of the last compaction marker, 0 if none.
	lastCompactionIndex uint64
}

func newIndex(h DedupeHorizon) *index {
	return &index{streamIDs: make(map[string]uint32), dedupe: newDedupeIndex(h), auth: newTokenTable()}
}

// add indexes one record, in position order. It is the single place that defines how a record
// changes derived state, shared by boot, restore and live apply.
func (st *index) add(r *segment.Record) {
	if r.Kind == KindCompaction {
		// A system record: it belongs to no user stream and takes no revision.
		st.compact(r.Timestamp)
		st.lastCompactionIndex = r.Index
		st.lastPos, st.lastIndex, st.lastTs = r.Position, r.Index, r.Timestamp
		st.dedupe.evict(st.lastTs)
		return
	}
	id, ok := st.streamIDs[r.Stream]
	if !ok {
		id = uint32(len(st.streams))
		st.streamIDs[strings.Clone(r.Stream)] = id
		st.streams = append(st.streams, streamState{})
	}
	s := &st.streams[id]
	switch r.Kind {
	case KindEvent, KindRedacted:
		s.positions = append(s.positions, r.Position)
		st.dedupe.add(r.ID, r.Position, r.Timestamp)
	case KindTombstone, KindSoftDelete, KindMetadata:
		st.addLifecycle(s, r)
	case KindAuth:
		s.positions = append(s.positions, r.Position)
		st.auth.add(r)
	}
	st.lastPos, st.lastIndex, st.lastTs = r.Position, r.Index, r.Timestamp
	st.dedupe.evict(st.lastTs)
}

// lookup returns the stream's state and whether the stream is known.
func (st *index) lookup(name string) (*streamState, bool) {
	id, ok := st.streamIDs[name]
	if !ok {
		return nil, false
	}
	return &st.streams[id], true
}

func rebuild(seg *segment.Log, h DedupeHorizon) (*index, error) {
	st := newIndex(h)
	it := seg.Scan(0, segment.Forward)
	defer it.Close()
	for it.Next() {
		st.add(it.Record())
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	st.lastIndex = seg.LastIndex()
	return st, nil
}

// install makes st the live state. Callers hold mu or own f exclusively.
func (f *FSM) install(seg *segment.Log, gen uint64, st *index) {
	f.seg, f.gen, f.idx = seg, gen, st
	log := f.log
	st.tsAt = func(pos uint64) (int64, error) {
		r, err := seg.Read(pos)
		if err != nil {
			// hiddenIn then counts the record as visible (errs towards showing more).
			log.Warn("max_age: reading a record's commit time failed; treating it as visible",
				"position", pos, "error", err)
		}
		return r.Timestamp, err
	}
	if st.badMetadata > 0 {
		f.log.Error("metadata records that do not decode were ignored", "count", st.badMetadata)
	}
	f.visible = st.lastPos
	f.nextPos = st.lastPos + 1
	if first := seg.FirstPosition(); st.lastPos == 0 && first > 1 {
		f.nextPos = first
	}
	f.applied = st.lastIndex
}

// Storage returns the size and file count of the live segment files.
func (f *FSM) Storage() segment.Stats {
	f.mu.RLock()
	seg := f.seg
	f.mu.RUnlock()
	return seg.Stats()
}

// Close closes the segment files. Readers waiting in WaitApplied get ErrClosed.
func (f *FSM) Close() error {
	f.stopReclaim.Do(func() {
		close(f.reclaim.stop)
		<-f.reclaim.done // a rewrite in progress finishes its segment first
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	close(f.appliedCh)
	return f.seg.Close()
}

// Apply implements raft.FSM. It is ApplyBatch of one entry.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM. For each entry it returns:
//   - []Result, one per request of a LogCommand entry;
//   - an error wrapping ErrInvalidCommand for an entry that cannot be decoded;
//   - nil for other entry types and for entries at or below the applied index (replays).
//
// All records of the batch are written with one segment append, then the applied watermark moves
// once. A storage failure here stops the process: continuing would let this node's state diverge
// from the log, and the raft log (the durable copy) will rebuild it on restart.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	start := time.Now()
	out := make([]interface{}, len(logs))
	last := f.applied
	f.pending = f.pending[:0]
	firstPending := f.nextPos

	compactions := f.idx.compactions
	last = f.decide(logs, out, last, firstPending)

	if len(f.pending) > 0 {
		if err := f.seg.Append(f.pending); err != nil {
			f.log.Error("segment append failed; stopping to avoid divergence", "error", err,
				"first_position", firstPending, "records", len(f.pending))
			panic(fmt.Sprintf("fsm: segment append failed at position %d: %v", firstPending, err))
		}
	}
	f.publish(last, f.nextPos-1)
	if f.idx.compactions != compactions {
		f.reclaim.request()
	} else if f.idx.scavenged > 0 {
		// A segment sealed by this batch may hold compacted events: reclaim it now rather than
		// at the next compaction (the pass skips segments it already reclaimed).
		if n := f.seg.SegmentCount(); n != f.segCount {
			f.segCount = n
			f.reclaim.request()
		}
	}
	if f.cfg.OnApply != nil {
		f.cfg.OnApply(len(logs), len(f.pending), time.Since(start))
	}
	clear(f.pending) // drop references to event payloads
	f.pending = f.pending[:0]
	return out
}

// decide runs every entry's requests against the index under the lock (memory only), filling
// out, and returns the last raft index seen. The deferred unlock matters: a storage failure
// panics from here, and the lock must not stay held for whoever recovers.
func (f *FSM) decide(logs []*raft.Log, out []interface{}, last, firstPending uint64) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range logs {
		if l.Index <= last {
			continue // replayed entry already reflected in the data
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		out[i] = f.applyCommand(l, firstPending)
	}
	return last
}

func (f *FSM) publish(applied, visible uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || (applied == f.applied && visible == f.visible) {
		return
	}
	f.applied, f.visible = applied, visible
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
}

func (f *FSM) applyCommand(l *raft.Log, firstPending uint64) interface{} {
	var cmd fsmpb.Command
	if err := proto.Unmarshal(l.Data, &cmd); err != nil {
		f.log.Warn("rejecting undecodable command", "index", l.Index, "error", err)
		return invalidf("decode entry %d: %v", l.Index, err)
	}
	if cmd.GetVersion() != CommandVersion {
		f.log.Warn("rejecting command of unknown version", "index", l.Index, "version", cmd.GetVersion())
		return invalidf("entry %d: command version %d, this node understands %d", l.Index, cmd.GetVersion(), CommandVersion)
	}
	ts := max(cmd.GetTimestampUnixNano(), f.idx.lastTs)
	results := make([]Result, len(cmd.GetRequests()))
	for i, req := range cmd.GetRequests() {
		a := applier{f: f, index: l.Index, ts: ts, firstPending: firstPending}
		switch k := req.GetKind().(type) {
		case *fsmpb.Request_Append:
			results[i] = a.append(k.Append)
		case *fsmpb.Request_Tombstone:
			results[i] = a.tombstone(k.Tombstone)
		case *fsmpb.Request_SetMetadata:
			results[i] = a.setMetadata(k.SetMetadata)
		case *fsmpb.Request_SoftDelete:
			results[i] = a.softDelete(k.SoftDelete)
		case *fsmpb.Request_Auth:
			results[i] = a.auth(k.Auth)
		case *fsmpb.Request_Compact:
			results[i] = a.compact(k.Compact)
		default:
			results[i] = Result{Err: invalidf("entry %d request %d: unknown request kind", l.Index, i)}
		}
		if results[i].Err != nil && errors.Is(results[i].Err, ErrInvalidCommand) {
			f.log.Warn("rejected invalid request", "index", l.Index, "request", i, "error", results[i].Err)
		}
	}
	return results
}

// write appends one decided record to the pending batch and indexes it. Callers hold mu.
func (f *FSM) write(r segment.Record) {
	r.Position = f.nextPos
	f.nextPos++
	f.pending = append(f.pending, r)
	f.idx.add(&f.pending[len(f.pending)-1])
}

// recordAt returns a record that is either written or pending in the current batch.
func (f *FSM) recordAt(pos, firstPending uint64) segment.Record {
	if pos >= firstPending {
		return f.pending[pos-firstPending]
	}
	r, err := f.seg.Read(pos)
	if err != nil {
		// The position came from our own index: failing to read it means local storage is broken.
		f.log.Error("reading an indexed record failed; stopping", "position", pos, "error", err)
		panic(fmt.Sprintf("fsm: read indexed record at position %d: %v", pos, err))
	}
	return r
}

// Generation directories.

func genDir(dir string, gen uint64) string {
	return filepath.Join(dir, fmt.Sprintf("gen-%08d", gen))
}

func readCurrent(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, currentFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("fsm: read %s: %w", currentFile, err)
	}
	name := strings.TrimSpace(string(b))
	gen, err := strconv.ParseUint(strings.TrimPrefix(name, "gen-"), 10, 64)
	if err != nil || !strings.HasPrefix(name, "gen-") {
		return 0, fmt.Errorf("fsm: %s holds %q, want gen-NNNNNNNN", filepath.Join(dir, currentFile), name)
	}
	return gen, nil
}

// writeCurrent atomically points CURRENT at generation gen: write a temporary file, fsync it,
// rename it over CURRENT, fsync the directory. A crash leaves either the old or the new value.
func writeCurrent(dir string, gen uint64) error {
	tmp := filepath.Join(dir, currentFile+".tmp")
	if err := writeFileSync(tmp, []byte(filepath.Base(genDir(dir, gen))+"\n")); err != nil {
		return fmt.Errorf("fsm: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, currentFile)); err != nil {
		return fmt.Errorf("fsm: install %s: %w", currentFile, err)
	}
	return syncDir(dir)
}

func writeFileSync(path string, data []byte) error {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		_ = fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		_ = fh.Close()
		return err
	}
	return fh.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsm: open dir for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsm: sync dir %s: %w", dir, err)
	}
	return nil
}

// removeStaleGenerations deletes generation directories other than the live one: leftovers of a
// restore that crashed before flipping CURRENT (new, incomplete) or after it (old, superseded).
func removeStaleGenerations(dir string, live uint64, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("listing data dir for stale generations failed", "error", err)
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "gen-") || e.Name() == filepath.Base(genDir(dir, live)) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			log.Warn("removing stale generation failed", "dir", e.Name(), "error", err)
			continue
		}
		log.Info("removed stale generation", "dir", e.Name())
	}
}

// appliedFile, inside a generation directory, records a raft index up to which every entry's
// records are known to be fsynced (written by snapshot Persist and by Restore). The applied index
// recovered at boot is the larger of it and the last record's index: entries between the two wrote
// no records, so skipping them on replay loses nothing, and raft can then trust the data instead
// of restoring a snapshot it already holds (cluster sets NoSnapshotRestoreOnStart from this).
const appliedFile = "APPLIED"

func writeApplied(dir string, index uint64) error {
	tmp := filepath.Join(dir, appliedFile+".tmp")
	if err := writeFileSync(tmp, []byte(strconv.FormatUint(index, 10)+"\n")); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, appliedFile)); err != nil {
		return fmt.Errorf("install %s: %w", appliedFile, err)
	}
	return syncDir(dir)
}

func readApplied(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, appliedFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// EncodeCommand serialises a command for raft.Apply, stamping the current envelope version.
func EncodeCommand(cmd *fsmpb.Command) ([]byte, error) {
	if cmd.GetVersion() == 0 {
		cmd.Version = CommandVersion
	}
	b, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode command: %w", err)
	}
	return b, nil
}

var _ raft.BatchingFSM = (*FSM)(nil)
var _ io.Closer = (*FSM)(nil)
