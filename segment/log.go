// Package segment implements append-only segment files holding the event log; pure
// storage, no raft.
//
// A Log is a directory of segment files, each named by the global position of its first
// record. Records carry the raft index that produced them, so the applied index can be
// recovered from the data after a crash. Every Append call is atomic after recovery, every
// read verifies a CRC, and a damaged sealed segment stops Open instead of being skipped.
// See DESIGN.md for the byte layout and the reasoning.
package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

const (
	// FormatVersion is the on-disk format version written in every segment file header.
	FormatVersion = 1
	// DefaultMaxSegmentBytes is the roll threshold used when Options.MaxSegmentBytes is 0.
	DefaultMaxSegmentBytes = 64 << 20
	// DefaultMaxRecordBytes is the record size limit used when Options.MaxRecordBytes is 0.
	DefaultMaxRecordBytes = 16 << 20

	fileMagic      = "CAIRNSEG"
	fileHeaderSize = 24 // magic[8] | u32 version | u64 first position | u32 crc32c(bytes 0..20)
	fileExt        = ".seg"
	fileNameDigits = 20

	// wbufKeep is the largest write buffer kept between Append calls.
	wbufKeep = 4 << 20
	// writebackBytes is how much unsynced data Append lets accumulate in the active file
	// before asking the kernel to start writing it back (see startWriteback).
	writebackBytes = 4 << 20
)

// Options configures a Log. The zero value is valid.
type Options struct {
	// MaxSegmentBytes is the roll threshold: a batch that would push the active file over
	// it goes into a new file. 0 means DefaultMaxSegmentBytes (64 MiB); at most 4 GiB-1,
	// because record offsets are indexed as uint32.
	MaxSegmentBytes int64
	// MaxRecordBytes is the largest framed record Append accepts and the decoder reads.
	// 0 means DefaultMaxRecordBytes (16 MiB). It protects the decoder from corrupt length
	// fields. It must not be lowered below the size of records already stored: Open then
	// fails with ErrTooLarge (it never truncates a CRC-valid record away).
	MaxRecordBytes int
	// Logger receives recovery and failure reports. nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) normalize() (Options, error) {
	switch {
	case o.MaxSegmentBytes == 0:
		o.MaxSegmentBytes = DefaultMaxSegmentBytes
	case o.MaxSegmentBytes < 0 || o.MaxSegmentBytes > math.MaxUint32:
		return o, fmt.Errorf("segment: Options.MaxSegmentBytes %d out of range (0, %d]", o.MaxSegmentBytes, uint64(math.MaxUint32))
	}
	switch {
	case o.MaxRecordBytes == 0:
		o.MaxRecordBytes = DefaultMaxRecordBytes
	case o.MaxRecordBytes < MinRecordBytes || o.MaxRecordBytes > maxEncodedBytes:
		return o, fmt.Errorf("segment: Options.MaxRecordBytes %d out of range [%d, %d]", o.MaxRecordBytes, MinRecordBytes, maxEncodedBytes)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Record is one stored event (or other fsm-defined entry).
type Record struct {
	Index       uint64   // raft log index of the entry that produced the record (nondecreasing in position order)
	Position    uint64   // 1-based global position, dense and gapless
	Revision    uint64   // 0-based revision within Stream
	Timestamp   int64    // commit time, Unix nanoseconds (assigned upstream, stored verbatim)
	Kind        uint8    // opaque to segment; defined by fsm (e.g. event, tombstone)
	ID          [16]byte // event UUID
	Stream      string
	Type        string
	ContentType string
	Data        []byte   // nil and empty are stored alike; reads return nil for empty
	Metadata    []byte   // nil and empty are stored alike; reads return nil for empty
	Tags        []string // nil and empty are stored alike; reads return nil for empty
}

// Direction is the order of a Scan.
type Direction int

const (
	// Forward scans toward higher positions.
	Forward Direction = iota
	// Backward scans toward position 1.
	Backward
)

// segment is one file. base, path and f never change. offs, size and lastIndex change
// only for the active (last) segment, by the writer under Log.mu; readers read them under
// Log.mu.RLock. Elements of offs below a length a reader has observed never change, so a
// reader may keep a captured offs[:n] after unlocking.
type segment struct {
	base      uint64
	path      string
	f         *os.File
	offs      []uint32 // file offset of each record; record i has position base+i
	size      int64    // bytes in use: end of the last complete batch
	lastIndex uint64   // raft index of the last record; for an empty segment, that of the previous one
}

// Log is an append-only sequence of records stored in segment files under one directory.
//
// Concurrency: Append and Close must be called from one goroutine at a time (the single
// writer). Sync may be called from any goroutine, also concurrently with Append (for
// example from a raft snapshot's Persist). Read, Scan, FirstPosition, LastPosition,
// LastIndex and iterators are safe from any number of goroutines concurrently with the
// writer, and see every record of an Append as soon as that Append has returned.
type Log struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu        sync.RWMutex
	segs      []*segment // ordered by base; all but the last are sealed and immutable
	appendSeq uint64     // count of successful Appends; written under mu

	closed    atomic.Bool
	first     atomic.Uint64
	last      atomic.Uint64
	lastIndex atomic.Uint64
	// failed is sticky: set when durability or file state is unknown (fsync or truncate
	// failure). It holds the first such error.
	failed atomic.Pointer[error]

	syncMu    sync.Mutex // serialises Sync calls
	syncedSeq uint64     // appendSeq covered by the last successful Sync; under syncMu
	rewriteMu sync.Mutex // serialises Rewrite and LinkFiles

	// rewriteHook, set only by tests, can stop a Rewrite at a stage to simulate a crash.
	rewriteHook func(rewriteStage) error

	// Writer-only state.
	flushed int64    // offset in the active file up to which writeback has been started
	wbuf    []byte   // batch encoding buffer, reused
	rel     []uint32 // batch-relative record offsets, reused
}

// Open opens the log in dir, creating dir if missing, and recovers it: every file but the
// last (the sealed segments) is fully verified and any defect fails Open with a
// *CorruptionError; the last (active) file is truncated at its first invalid record and
// then back to the end of the last complete Append batch, and what was dropped is logged.
// After Open, LastIndex is the raft index recovered from the data.
//
// Open also fails on out-of-range Options, on I/O errors, and with ErrTooLarge if a stored
// record that passes its CRC is larger than Options.MaxRecordBytes. Files in dir whose
// names are not segment names are ignored. Every segment file stays open until Close.
func Open(dir string, opts Options) (*Log, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("segment: create directory: %w", err)
	}
	l := &Log{
		dir:  dir,
		opts: opts,
		log:  opts.Logger.With("component", "segment", "dir", dir),
	}
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, err
	}
	l.publish()
	l.log.Info("segment log opened",
		"segments", len(l.segs), "first_position", l.first.Load(),
		"last_position", l.last.Load(), "last_index", l.lastIndex.Load())
	return l, nil
}

// publish recomputes the atomics from segs. Called with mu held or before sharing l.
func (l *Log) publish() {
	if len(l.segs) == 0 {
		l.first.Store(0)
		l.last.Store(0)
		l.lastIndex.Store(0)
		return
	}
	act := l.segs[len(l.segs)-1]
	l.lastIndex.Store(act.lastIndex)
	l.last.Store(act.base + uint64(len(act.offs)) - 1) // an empty active file follows a sealed one
	l.first.Store(l.segs[0].base)
}

// Dir returns the directory passed to Open.
func (l *Log) Dir() string { return l.dir }

// FirstPosition returns the position of the first stored record, or 0 if the log is empty.
func (l *Log) FirstPosition() uint64 { return l.first.Load() }

// LastPosition returns the position of the last stored record, or 0 if the log is empty.
func (l *Log) LastPosition() uint64 { return l.last.Load() }

// LastIndex returns the raft index of the last stored record, or 0 if the log is empty.
// Right after Open it is the applied index recovered from the data.
func (l *Log) LastIndex() uint64 { return l.lastIndex.Load() }

// Append writes recs as one batch. Each record's Position must follow the previous one
// (recs[0].Position == LastPosition()+1; when the log is empty any first position >= 1 is
// accepted, so a log may start mid-way), and Index must be nondecreasing and >= LastIndex();
// otherwise Append returns an error wrapping ErrOutOfOrder. A record whose encoding exceeds
// MaxRecordBytes fails with ErrTooLarge. On any error nothing is appended. An empty recs is
// a no-op.
//
// The batch is encoded into one buffer and written with one write call, into the active
// file or, if it would push that file over MaxSegmentBytes, into a new file (after the old
// one is fsynced and sealed); a batch never spans files. Append does not fsync the data:
// call Sync. After a crash, recovery keeps each Append call entirely or not at all.
// Records are visible to Read and Scan when Append returns.
//
// Append and Close must not be called concurrently with each other. After an fsync or
// truncate failure the Log refuses further writes (the error is returned again) and must be
// reopened.
func (l *Log) Append(recs []Record) error {
	if l.closed.Load() {
		return ErrClosed
	}
	if err := l.failure(); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	if err := l.checkOrder(recs); err != nil {
		return err
	}
	if err := l.encode(recs); err != nil {
		return err
	}
	batch := l.wbuf
	defer func() {
		if cap(l.wbuf) > wbufKeep {
			l.wbuf = nil
		}
	}()

	seg, roll := l.target(recs[0].Position, int64(len(batch)))
	start := int64(fileHeaderSize)
	if !roll {
		start = seg.size
	}
	if lastOff := start + int64(l.rel[len(l.rel)-1]); lastOff > math.MaxUint32 {
		return fmt.Errorf("%w: batch of %d bytes would place a record at offset %d, beyond the 4 GiB segment index", ErrTooLarge, len(batch), lastOff)
	}
	if roll {
		var err error
		if seg, err = l.roll(recs[0].Position); err != nil {
			return err
		}
	}

	if _, err := seg.f.WriteAt(batch, start); err != nil {
		return l.writeFailed(seg, start, err)
	}

	l.mu.Lock()
	for _, r := range l.rel {
		seg.offs = append(seg.offs, uint32(start)+r)
	}
	seg.size = start + int64(len(batch))
	seg.lastIndex = recs[len(recs)-1].Index
	l.appendSeq++
	l.publish()
	l.mu.Unlock()
	l.kickWriteback(seg)
	return nil
}

// kickWriteback starts background writeback of the active file every writebackBytes, so
// dirty data stays bounded and the fsync at roll or Sync waits for little. It never waits
// for the disk itself (beyond the kernel queueing the I/O).
func (l *Log) kickWriteback(seg *segment) {
	if l.flushed < fileHeaderSize {
		l.flushed = fileHeaderSize // first write after Open
	}
	if seg.size-l.flushed < writebackBytes {
		return
	}
	if err := startWriteback(seg.f, l.flushed, seg.size-l.flushed); err != nil {
		// Only a hint: fsync reports real I/O errors. Log and carry on.
		l.log.Warn("starting writeback failed", "file", seg.path, "err", err)
	}
	l.flushed = seg.size
}

func (l *Log) checkOrder(recs []Record) error {
	last := l.last.Load()
	want := last + 1
	if last == 0 {
		if recs[0].Position == 0 {
			return fmt.Errorf("%w: position 0 is not valid (positions are 1-based)", ErrOutOfOrder)
		}
		want = recs[0].Position
	}
	prevIndex := l.lastIndex.Load()
	for i := range recs {
		r := &recs[i]
		if r.Position != want || (i > 0 && r.Position == 0) {
			return fmt.Errorf("%w: record %d has position %d, want %d", ErrOutOfOrder, i, r.Position, want)
		}
		if r.Index < prevIndex {
			return fmt.Errorf("%w: record %d has raft index %d, below %d", ErrOutOfOrder, i, r.Index, prevIndex)
		}
		want++
		prevIndex = r.Index
	}
	return nil
}

// encode frames recs into l.wbuf and their batch-relative offsets into l.rel.
func (l *Log) encode(recs []Record) error {
	total := 0
	rel := l.rel[:0] // holds sizes first, then offsets
	for i := range recs {
		n := encodedSize(&recs[i])
		if n > l.opts.MaxRecordBytes {
			return fmt.Errorf("%w: record %d (position %d) encodes to %d bytes, limit %d", ErrTooLarge, i, recs[i].Position, n, l.opts.MaxRecordBytes)
		}
		rel = append(rel, uint32(n))
		total += n
	}
	buf := l.wbuf[:0]
	if cap(buf) < total {
		buf = make([]byte, 0, total)
	}
	for i := range recs {
		var flags byte
		if i == len(recs)-1 {
			flags = flagBatchEnd
		}
		size := int(rel[i])
		rel[i] = uint32(len(buf))
		buf = appendFrame(buf, &recs[i], flags, size)
	}
	l.wbuf, l.rel = buf, rel
	return nil
}

// target returns the active segment, or reports that a new one must be created (roll).
func (l *Log) target(firstPos uint64, n int64) (*segment, bool) {
	if len(l.segs) == 0 {
		return nil, true
	}
	act := l.segs[len(l.segs)-1]
	if len(act.offs) == 0 {
		// An empty active file after a sealed one starts exactly at firstPos (checkOrder).
		// Only a lone empty file (a failed first write) can disagree; roll replaces it.
		return act, act.base != firstPos
	}
	return act, act.size+n > l.opts.MaxSegmentBytes
}

// roll seals the active segment (fsync) and creates a new one starting at base.
func (l *Log) roll(base uint64) (*segment, error) {
	if n := len(l.segs); n > 0 {
		act := l.segs[n-1]
		if len(act.offs) == 0 {
			// A lone empty file whose first write failed: replace it.
			if err := l.dropEmptyActive(act); err != nil {
				return nil, err
			}
		} else {
			if err := act.f.Sync(); err != nil {
				return nil, l.fail(fmt.Errorf("segment: fsync %s before roll: %w", act.path, err))
			}
			l.mu.Lock()
			act.offs = slices.Clone(act.offs) // sealed: drop spare capacity
			l.mu.Unlock()
		}
	}
	seg, err := l.create(base)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.segs = append(l.segs, seg)
	seg.lastIndex = l.lastIndex.Load()
	l.mu.Unlock()
	l.flushed = fileHeaderSize
	return seg, nil
}

func (l *Log) dropEmptyActive(act *segment) error {
	l.mu.Lock()
	l.segs = l.segs[:len(l.segs)-1]
	l.mu.Unlock()
	if err := act.f.Close(); err != nil {
		l.log.Warn("closing empty segment", "file", act.path, "err", err)
	}
	if err := os.Remove(act.path); err != nil {
		return l.fail(fmt.Errorf("segment: remove empty segment: %w", err))
	}
	return nil
}

// create makes a new segment file with its header and fsyncs the directory, so that a
// file's directory entry is durable before any record is written into it (and before any
// later file exists).
func (l *Log) create(base uint64) (*segment, error) {
	path := filepath.Join(l.dir, segmentName(base))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("segment: create segment: %w", err)
	}
	if _, err := f.WriteAt(fileHeader(base), 0); err != nil {
		cerr := f.Close()
		rerr := os.Remove(path)
		l.log.Error("writing segment header failed", "file", path, "err", err, "close_err", cerr, "remove_err", rerr)
		return nil, fmt.Errorf("segment: write header of %s: %w", path, err)
	}
	if err := syncDir(l.dir); err != nil {
		cerr := f.Close()
		return nil, l.fail(errors.Join(fmt.Errorf("segment: fsync directory after creating %s: %w", path, err), cerr))
	}
	l.log.Debug("segment created", "file", path, "first_position", base)
	return &segment{base: base, path: path, f: f, size: fileHeaderSize}, nil
}

// writeFailed undoes a failed (possibly partial) batch write by truncating the file back.
func (l *Log) writeFailed(seg *segment, start int64, werr error) error {
	werr = fmt.Errorf("segment: write batch to %s at offset %d: %w", seg.path, start, werr)
	if err := seg.f.Truncate(start); err != nil {
		return l.fail(errors.Join(werr, fmt.Errorf("segment: truncate %s back to %d: %w", seg.path, start, err)))
	}
	l.flushed = min(l.flushed, start)
	l.log.Error("append failed; partial write removed", "file", seg.path, "offset", start, "err", werr)
	return werr
}

// fail makes err sticky: the Log accepts no more writes. The first failure is kept.
func (l *Log) fail(err error) error {
	if l.failed.CompareAndSwap(nil, &err) {
		l.log.Error("segment log failed; reopen required", "err", err)
	} else {
		l.log.Error("segment log failed again", "err", err)
	}
	return err
}

// failure returns the sticky failure, or nil.
func (l *Log) failure() error {
	if p := l.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Sync makes durable every record whose Append returned before Sync was called: it fsyncs
// the active file. Earlier files were fsynced when they were sealed, and every file's
// directory entry was fsynced when the file was created. Sync may run concurrently with
// Append (records appended meanwhile may or may not be covered) and with other Syncs; it
// does nothing if nothing was appended since the last successful Sync. An fsync failure is
// sticky (the Log refuses further writes).
func (l *Log) Sync() error {
	if l.closed.Load() {
		return ErrClosed
	}
	if err := l.failure(); err != nil {
		return err
	}
	return l.sync()
}

func (l *Log) sync() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	// Every record counted in seq is in act or in an earlier file, and earlier files were
	// fsynced before act was created.
	l.mu.RLock()
	seq := l.appendSeq
	var act *segment
	if n := len(l.segs); n > 0 {
		act = l.segs[n-1]
	}
	l.mu.RUnlock()
	if act == nil || seq == l.syncedSeq {
		return nil
	}
	if err := act.f.Sync(); err != nil {
		if errors.Is(err, os.ErrClosed) && l.closed.Load() {
			return ErrClosed
		}
		return l.fail(fmt.Errorf("segment: fsync %s: %w", act.path, err))
	}
	l.syncedSeq = seq
	return nil
}

// Close syncs unsynced appends (unless the Log has failed) and closes all files. Reads,
// iterators and Syncs in flight may then fail with ErrClosed. A second Close returns
// ErrClosed.
func (l *Log) Close() error {
	if l.closed.Swap(true) {
		return ErrClosed
	}
	var err error
	if l.failure() == nil {
		err = l.sync()
	}
	return errors.Join(err, l.closeFiles())
}

func (l *Log) closeFiles() error {
	l.mu.Lock()
	segs := l.segs
	l.mu.Unlock()
	var errs []error
	for _, s := range segs {
		if err := s.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("segment: close %s: %w", s.path, err))
		}
	}
	return errors.Join(errs...)
}

// Read returns the record at pos. The returned slices are owned by the caller. It returns
// an error wrapping ErrNotFound for a position outside [FirstPosition, LastPosition], and a
// *CorruptionError if the stored record fails its CRC or does not hold position pos.
func (l *Log) Read(pos uint64) (Record, error) {
	l.mu.RLock()
	if l.closed.Load() {
		l.mu.RUnlock()
		return Record{}, ErrClosed
	}
	seg, i := l.find(pos)
	if seg == nil {
		l.mu.RUnlock()
		return Record{}, fmt.Errorf("%w: position %d", ErrNotFound, pos)
	}
	off, end := seg.bounds(i)
	l.mu.RUnlock()

	buf := make([]byte, end-off)
	if err := readAt(seg, buf, off); err != nil {
		return Record{}, err
	}
	var r Record
	d := decoder{alias: true} // buf is fresh and handed to the caller
	if err := decodeAt(&d, seg.path, off, buf, pos, l.opts.MaxRecordBytes, &r); err != nil {
		return Record{}, err
	}
	return r, nil
}

// find returns the segment holding pos and its record number there. Caller holds mu.
func (l *Log) find(pos uint64) (*segment, int) {
	if pos == 0 || pos < l.first.Load() || pos > l.last.Load() {
		return nil, 0
	}
	// Last segment whose base <= pos.
	i, found := slices.BinarySearchFunc(l.segs, pos, func(s *segment, p uint64) int {
		switch {
		case s.base < p:
			return -1
		case s.base > p:
			return 1
		}
		return 0
	})
	if !found {
		i--
	}
	if i < 0 {
		return nil, 0
	}
	s := l.segs[i]
	n := pos - s.base
	if n >= uint64(len(s.offs)) {
		return nil, 0
	}
	return s, int(n)
}

// bounds returns the byte range of record i. Caller holds mu.
func (s *segment) bounds(i int) (int64, int64) {
	off := int64(s.offs[i])
	if i+1 < len(s.offs) {
		return off, int64(s.offs[i+1])
	}
	return off, s.size
}

// readAt fills buf from seg at off.
func readAt(seg *segment, buf []byte, off int64) error {
	n, err := seg.f.ReadAt(buf, off)
	switch {
	case err == nil || (n == len(buf) && errors.Is(err, io.EOF)):
		return nil
	case errors.Is(err, os.ErrClosed):
		return ErrClosed
	case errors.Is(err, io.EOF):
		return &CorruptionError{File: seg.path, Offset: off + int64(n), Reason: fmt.Sprintf("file ends inside an indexed record (read %d of %d bytes)", n, len(buf))}
	}
	return fmt.Errorf("segment: read %s at offset %d: %w", seg.path, off, err)
}

// decodeAt decodes the single framed record in frame (which must be exactly one record,
// stored at off in path) into r and checks that it holds position pos.
func decodeAt(d *decoder, path string, off int64, frame []byte, pos uint64, maxRec int, r *Record) error {
	body, n, err := parseFrame(frame, maxRec)
	if err != nil {
		return withLocation(err, path, off)
	}
	if n != len(frame) {
		return &CorruptionError{File: path, Offset: off, Reason: fmt.Sprintf("record is %d bytes but the index spans %d", n, len(frame))}
	}
	if _, reason := d.decode(body, r); reason != "" {
		return &CorruptionError{File: path, Offset: off, Reason: reason}
	}
	if r.Position != pos {
		return &CorruptionError{File: path, Offset: off, Reason: fmt.Sprintf("record holds position %d, index says %d", r.Position, pos)}
	}
	return nil
}

func segmentName(base uint64) string {
	return fmt.Sprintf("%0*d%s", fileNameDigits, base, fileExt)
}

// parseSegmentName returns the first position encoded in a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, fileExt)
	if !ok || len(digits) != fileNameDigits {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	base, err := strconv.ParseUint(digits, 10, 64)
	return base, err == nil && base > 0
}

func fileHeader(base uint64) []byte {
	h := make([]byte, 0, fileHeaderSize)
	h = append(h, fileMagic...)
	h = binary.LittleEndian.AppendUint32(h, FormatVersion)
	h = binary.LittleEndian.AppendUint64(h, base)
	return binary.LittleEndian.AppendUint32(h, crc32.Checksum(h, castagnoli))
}

// checkHeader verifies a full file header against the base from the file name.
func checkHeader(h []byte, path string, base uint64) error {
	bad := func(format string, args ...any) error {
		return &CorruptionError{File: path, Offset: 0, Reason: "segment header: " + fmt.Sprintf(format, args...)}
	}
	if string(h[:8]) != fileMagic {
		return bad("bad magic %q", h[:8])
	}
	if got, want := crc32.Checksum(h[:20], castagnoli), binary.LittleEndian.Uint32(h[20:]); got != want {
		return bad("checksum mismatch: stored %08x, computed %08x", want, got)
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != FormatVersion {
		return bad("unsupported format version %d (this build reads %d)", v, FormatVersion)
	}
	if b := binary.LittleEndian.Uint64(h[12:]); b != base {
		return bad("first position %d does not match file name (%d)", b, base)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
