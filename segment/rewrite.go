package segment

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// rewriteTmpSuffix names the file a Rewrite builds next to the segment it replaces. Open removes
// stray ones: they are the leftovers of a rewrite that crashed before its rename.
const rewriteTmpSuffix = ".compact.tmp"

// RewriteStats describes one Rewrite call.
type RewriteStats struct {
	// Records is the number of records in the segment.
	Records int
	// Changed is how many records fn replaced.
	Changed int
	// Rewritten reports whether a new file replaced the segment (false when fn changed nothing).
	Rewritten bool
	// BytesBefore and BytesAfter are the segment file's size before and after.
	BytesBefore, BytesAfter int64
}

// rewriteStage names a point inside Rewrite at which a test hook may stop it, simulating a crash.
type rewriteStage string

const (
	stageBeforeVerify rewriteStage = "before-verify" // new file written and fsynced, not yet verified
	stageTmpWritten   rewriteStage = "tmp-written"   // new file complete and fsynced, not yet renamed
	stageRenamed      rewriteStage = "renamed"       // renamed over the original, directory not fsynced
)

// SegmentCount returns the number of segment files, the active one included. It is cheap (no
// per-file work), for callers that watch for rolls.
func (l *Log) SegmentCount() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.segs)
}

// SealedBases returns the first position of every sealed segment (every file but the active one),
// in order. These are the segments Rewrite accepts.
func (l *Log) SealedBases() []uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if len(l.segs) < 2 {
		return nil
	}
	out := make([]uint64, 0, len(l.segs)-1)
	for _, s := range l.segs[:len(l.segs)-1] {
		out = append(out, s.base)
	}
	return out
}

// Rewrite replaces the sealed segment whose first position is base with a copy in which fn may
// replace records. fn is called once per record in position order; it returns the replacement and
// true, or false to keep the record byte for byte. A replacement must keep the record's Position
// and Index (it fails with ErrBadRewrite otherwise) and fit Options.MaxRecordBytes (ErrTooLarge);
// each record keeps its batch-end flag, so batch structure is unchanged. fn must not keep the
// record it is given: its slices alias a reused buffer.
//
// If fn changes nothing, no file is written. Otherwise the new file is written to
// "<name>.compact.tmp", fsynced, verified record by record (CRC, positions, indexes), renamed over
// the original and the directory fsynced; then the in-memory segment is swapped under the lock.
// A crash at any point leaves either the old or the new file, and Open removes a stray tmp file.
// Readers and iterators that started before the swap keep reading the old file through its open
// descriptor (an unlinked file stays readable); later ones see the new file. A hard link to the
// old file (a snapshot's) keeps the old bytes.
//
// Rewrite refuses the active segment and unknown bases with ErrNotSealed. It is safe concurrently
// with Append, Sync, reads and iterators; Rewrites and LinkFiles are serialised among themselves.
func (l *Log) Rewrite(base uint64, fn func(*Record) (Record, bool)) (RewriteStats, error) {
	l.rewriteMu.Lock()
	defer l.rewriteMu.Unlock()
	if l.closed.Load() {
		return RewriteStats{}, ErrClosed
	}
	old, err := l.sealed(base)
	if err != nil {
		return RewriteStats{}, err
	}
	st := RewriteStats{Records: len(old.offs), BytesBefore: old.size, BytesAfter: old.size}

	tmpPath := old.path + rewriteTmpSuffix
	tmp, newOffs, newSize, changed, err := l.writeRewrite(old, tmpPath, fn)
	st.Changed = changed
	if err != nil || changed == 0 {
		return st, err // writeRewrite removed the tmp file
	}
	if err := l.hook(stageBeforeVerify); err != nil {
		l.discardTmp(tmp, tmpPath)
		return st, err
	}
	if err := l.verifyRewrite(tmp, tmpPath, old, newOffs, newSize); err != nil {
		l.discardTmp(tmp, tmpPath)
		return st, err
	}
	if err := l.hook(stageTmpWritten); err != nil {
		_ = tmp.Close() // a simulated crash leaves the tmp file behind, as a real one would
		return st, err
	}
	if err := os.Rename(tmpPath, old.path); err != nil {
		l.discardTmp(tmp, tmpPath)
		return st, fmt.Errorf("segment: rename %s over %s: %w", filepath.Base(tmpPath), filepath.Base(old.path), err)
	}
	if err := l.hook(stageRenamed); err != nil {
		_ = tmp.Close()
		return st, err
	}
	// The new file is in place; its directory entry must be durable before anything relies on
	// it. If this fails the file on disk is either version, both valid, but the Log cannot
	// tell which: stop writes, like any other failed directory fsync.
	if err := syncDir(l.dir); err != nil {
		_ = tmp.Close()
		return st, l.fail(fmt.Errorf("segment: fsync directory after rewriting %s: %w", filepath.Base(old.path), err))
	}
	fresh := &segment{base: old.base, path: old.path, f: tmp, offs: newOffs, size: newSize, lastIndex: old.lastIndex}
	l.mu.Lock()
	swapped := false
	if !l.closed.Load() {
		for i, s := range l.segs {
			if s == old {
				l.segs[i], swapped = fresh, true
				break
			}
		}
	}
	l.mu.Unlock()
	if !swapped {
		// Closed meanwhile: the new file is on disk and valid, the next Open reads it.
		_ = tmp.Close()
		return st, ErrClosed
	}
	// The old descriptor is not closed here: readers that located the segment before the swap
	// may still pread it. It is closed when the last of them drops it (os.File's cleanup runs
	// when it becomes unreachable), and the kernel frees the unlinked inode then.
	st.Rewritten, st.BytesAfter = true, newSize
	l.log.Info("segment rewritten", "file", filepath.Base(old.path), "records", st.Records,
		"changed", changed, "bytes_before", st.BytesBefore, "bytes_after", newSize)
	return st, nil
}

// sealed returns the sealed segment with this base.
func (l *Log) sealed(base uint64) (*segment, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for i, s := range l.segs {
		if s.base != base {
			continue
		}
		if i == len(l.segs)-1 {
			return nil, fmt.Errorf("%w: %s is the active segment", ErrNotSealed, filepath.Base(s.path))
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: no segment starts at position %d", ErrNotSealed, base)
}

func (l *Log) hook(stage rewriteStage) error {
	if l.rewriteHook == nil {
		return nil
	}
	return l.rewriteHook(stage)
}

func (l *Log) discardTmp(f *os.File, path string) {
	if err := f.Close(); err != nil {
		l.log.Warn("closing discarded rewrite file", "file", path, "err", err)
	}
	if err := os.Remove(path); err != nil {
		l.log.Warn("removing discarded rewrite file", "file", path, "err", err)
	}
}

// writeRewrite streams old's records through fn into a new file at tmpPath and fsyncs it. It
// returns nil for the file when fn changed nothing (the file is then removed).
func (l *Log) writeRewrite(old *segment, tmpPath string, fn func(*Record) (Record, bool)) (f *os.File, offs []uint32, size int64, changed int, err error) {
	// A leftover of a crashed rewrite of this very file is replaced.
	f, err = os.OpenFile(tmpPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("segment: create %s: %w", tmpPath, err)
	}
	defer func() {
		if err != nil || changed == 0 {
			l.discardTmp(f, tmpPath)
			f = nil
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err = w.Write(fileHeader(old.base)); err != nil {
		return f, nil, 0, 0, fmt.Errorf("segment: write %s: %w", tmpPath, err)
	}
	src := bufio.NewReaderSize(io.NewSectionReader(old.f, fileHeaderSize, old.size-fileHeaderSize), 1<<20)
	offs = make([]uint32, 0, len(old.offs))
	off := int64(fileHeaderSize)
	var frame, enc []byte
	dec := decoder{alias: true}
	for i := range old.offs {
		start, end := old.bounds(i)
		if cap(frame) < int(end-start) {
			frame = make([]byte, end-start)
		}
		frame = frame[:end-start]
		if _, err = io.ReadFull(src, frame); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return f, nil, 0, 0, ErrClosed
			}
			return f, nil, 0, 0, fmt.Errorf("segment: read %s at offset %d: %w", old.path, start, err)
		}
		body, _, perr := parseFrame(frame, l.opts.MaxRecordBytes)
		if perr != nil {
			return f, nil, 0, 0, withLocation(perr, old.path, start)
		}
		var r Record
		flags, reason := dec.decode(body, &r)
		if reason != "" {
			return f, nil, 0, 0, &CorruptionError{File: old.path, Offset: start, Reason: reason}
		}
		out := frame
		if nr, ok := fn(&r); ok {
			if nr.Position != r.Position || nr.Index != r.Index {
				return f, nil, 0, 0, fmt.Errorf("%w: record at position %d (index %d) replaced by position %d (index %d)",
					ErrBadRewrite, r.Position, r.Index, nr.Position, nr.Index)
			}
			n := encodedSize(&nr)
			if n > l.opts.MaxRecordBytes {
				return f, nil, 0, 0, fmt.Errorf("%w: replacement of position %d is %d bytes, limit %d", ErrTooLarge, r.Position, n, l.opts.MaxRecordBytes)
			}
			enc = appendFrame(enc[:0], &nr, flags, n)
			out = enc
			changed++
		}
		offs = append(offs, uint32(off))
		if _, err = w.Write(out); err != nil {
			return f, nil, 0, 0, fmt.Errorf("segment: write %s: %w", tmpPath, err)
		}
		off += int64(len(out))
	}
	if changed == 0 {
		return f, nil, 0, 0, nil
	}
	if err = w.Flush(); err != nil {
		return f, nil, 0, 0, fmt.Errorf("segment: write %s: %w", tmpPath, err)
	}
	if err = f.Sync(); err != nil {
		return f, nil, 0, 0, fmt.Errorf("segment: fsync %s: %w", tmpPath, err)
	}
	return f, offs, off, changed, nil
}

// verifyRewrite reads the new file back exactly as Open verifies a sealed segment and checks it
// holds the same positions, offsets and last index as planned, so a bad write is never renamed
// over good data.
func (l *Log) verifyRewrite(f *os.File, path string, old *segment, offs []uint32, size int64) error {
	hdr := make([]byte, fileHeaderSize)
	if err := readAt(&segment{path: path, f: f}, hdr, 0); err != nil {
		return err
	}
	if err := checkHeader(hdr, path, old.base); err != nil {
		return err
	}
	sc := scanner{maxRec: l.opts.MaxRecordBytes}
	res, err := sc.scan(f, path, old.base, 0, size)
	if err != nil {
		return err
	}
	switch {
	case res.bad != nil:
		return res.bad
	case res.batchEnd != size || res.nBatch != len(offs) || len(res.offs) != len(offs):
		return &CorruptionError{File: path, Offset: res.batchEnd, Reason: fmt.Sprintf("rewritten segment holds %d records ending at %d, planned %d ending at %d", res.nBatch, res.batchEnd, len(offs), size)}
	case res.lastIndex != old.lastIndex:
		return &CorruptionError{File: path, Offset: res.batchEnd, Reason: fmt.Sprintf("rewritten segment ends at raft index %d, original %d", res.lastIndex, old.lastIndex)}
	}
	for i := range offs {
		if res.offs[i] != offs[i] {
			return &CorruptionError{File: path, Offset: int64(res.offs[i]), Reason: fmt.Sprintf("record %d at offset %d, planned %d", i, res.offs[i], offs[i])}
		}
	}
	return nil
}

// removeRewriteLeftovers deletes "*.compact.tmp" files: a rewrite that crashed before its rename
// left them, and the original segment is still in place.
func (l *Log) removeRewriteLeftovers(entries []os.DirEntry) {
	removed := false
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), rewriteTmpSuffix) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(l.dir, e.Name())
		if err := os.Remove(p); err != nil {
			l.log.Warn("removing leftover of an interrupted rewrite failed", "file", e.Name(), "err", err)
			continue
		}
		removed = true
		l.log.Warn("removed leftover of an interrupted segment rewrite", "file", e.Name())
	}
	if removed {
		if err := syncDir(l.dir); err != nil {
			l.log.Warn("fsync directory after removing rewrite leftovers failed", "err", err)
		}
	}
}

// LinkFiles hard-links the files holding positions FirstPosition()..upTo into dir and returns
// them as Files(upTo) describes them. It is Files plus the links, made while no Rewrite runs, so
// each link holds exactly the bytes its FileRef.Size describes a prefix of: a Rewrite that
// follows replaces the log's directory entry, not the linked inode.
func (l *Log) LinkFiles(upTo uint64, dir string) ([]FileRef, error) {
	l.rewriteMu.Lock()
	defer l.rewriteMu.Unlock()
	refs, err := l.Files(upTo)
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		if err := os.Link(r.Path, filepath.Join(dir, r.Name)); err != nil {
			return nil, fmt.Errorf("segment: link %s: %w", r.Name, err)
		}
	}
	return refs, nil
}
