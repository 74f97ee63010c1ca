package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// scanChunk is how much of a file recovery and iterators read per pread.
const scanChunk = 1 << 20

// recover loads and verifies every segment file in l.dir (see Open).
func (l *Log) recover() error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("segment: list %s: %w", l.dir, err)
	}
	l.removeRewriteLeftovers(entries)
	var bases []uint64 // ReadDir sorts by name; fixed-width names sort numerically
	for _, e := range entries {
		base, ok := parseSegmentName(e.Name())
		switch {
		case ok && e.Type().IsRegular():
			bases = append(bases, base)
		case strings.HasSuffix(e.Name(), fileExt):
			l.log.Warn("ignoring unexpected entry in segment directory", "name", e.Name(), "mode", e.Type().String())
		}
	}
	sc := scanner{maxRec: l.opts.MaxRecordBytes}
	for i, base := range bases {
		var prev *segment
		if len(l.segs) > 0 {
			prev = l.segs[len(l.segs)-1]
		}
		path := filepath.Join(l.dir, segmentName(base))
		var seg *segment
		if i < len(bases)-1 {
			seg, err = l.openSealed(&sc, path, base, prev)
		} else {
			seg, err = l.openActive(&sc, path, base, prev)
		}
		if err != nil {
			return err
		}
		if seg != nil {
			l.segs = append(l.segs, seg)
		}
	}
	return nil
}

// checkContinuity reports a file that does not start right after the previous one.
func checkContinuity(path string, base uint64, prev *segment) error {
	if prev == nil {
		return nil
	}
	if want := prev.base + uint64(len(prev.offs)); base != want {
		return &CorruptionError{File: path, Offset: 0, Reason: fmt.Sprintf("segment starts at position %d but the previous segment %s ends at %d", base, filepath.Base(prev.path), want-1)}
	}
	return nil
}

func minIndex(prev *segment) uint64 {
	if prev == nil {
		return 0
	}
	return prev.lastIndex
}

// openSealed opens and fully verifies a sealed segment: any defect is an error.
func (l *Log) openSealed(sc *scanner, path string, base uint64, prev *segment) (seg *segment, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("segment: open sealed segment: %w", err)
	}
	defer func() {
		if err != nil {
			if cerr := f.Close(); cerr != nil {
				l.log.Warn("closing segment after failed open", "file", path, "err", cerr)
			}
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("segment: stat %s: %w", path, err)
	}
	size := st.Size()
	if size < fileHeaderSize {
		return nil, &CorruptionError{File: path, Offset: 0, Reason: fmt.Sprintf("sealed segment of %d bytes is shorter than its header", size)}
	}
	hdr := make([]byte, fileHeaderSize)
	if err := readAt(&segment{path: path, f: f}, hdr, 0); err != nil {
		return nil, err
	}
	if err := checkHeader(hdr, path, base); err != nil {
		return nil, err
	}
	if err := checkContinuity(path, base, prev); err != nil {
		return nil, err
	}
	res, err := sc.scan(f, path, base, minIndex(prev), size)
	if err != nil {
		return nil, err
	}
	switch {
	case res.bad != nil:
		return nil, res.bad
	case res.nBatch == 0:
		return nil, &CorruptionError{File: path, Offset: fileHeaderSize, Reason: "sealed segment holds no records"}
	case res.batchEnd != size:
		return nil, &CorruptionError{File: path, Offset: res.batchEnd, Reason: fmt.Sprintf("sealed segment does not end with a complete batch (%d bytes after the last batch end)", size-res.batchEnd)}
	}
	return &segment{base: base, path: path, f: f, offs: res.offs, size: size, lastIndex: res.lastIndex}, nil
}

// openActive opens the last segment and truncates it to its valid prefix of complete
// batches. It returns nil (and removes the file) if the log turns out to be empty.
func (l *Log) openActive(sc *scanner, path string, base uint64, prev *segment) (seg *segment, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("segment: open active segment: %w", err)
	}
	defer func() {
		if err != nil || seg == nil {
			if cerr := f.Close(); cerr != nil {
				l.log.Warn("closing segment", "file", path, "err", cerr)
			}
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("segment: stat %s: %w", path, err)
	}
	size := st.Size()
	// A file is not renamed or rewritten once created, so a structural mismatch with the
	// previous file is never a torn write: refuse it like a sealed-file defect.
	if err := checkContinuity(path, base, prev); err != nil {
		return nil, err
	}

	hdr := make([]byte, fileHeaderSize)
	torn := size < fileHeaderSize
	if !torn {
		if err := readAt(&segment{path: path, f: f}, hdr, 0); err != nil {
			return nil, err
		}
		torn = allZero(hdr)
	}
	if torn {
		// Crash between creating the file and its header reaching disk: it holds nothing.
		l.log.Warn("active segment has an incomplete header; it held no records", "file", path, "bytes", size)
		if prev == nil {
			return nil, l.removeEmpty(path)
		}
		if err := resetFile(f, base); err != nil {
			return nil, fmt.Errorf("segment: rewrite header of %s: %w", path, err)
		}
		return &segment{base: base, path: path, f: f, size: fileHeaderSize, lastIndex: prev.lastIndex}, nil
	}
	// A complete header that fails verification (wrong magic, unknown version) is not a
	// torn write: it may be another format or another program's file. Never truncate it.
	if err := checkHeader(hdr, path, base); err != nil {
		return nil, err
	}

	res, err := sc.scan(f, path, base, minIndex(prev), size)
	if err != nil {
		return nil, err
	}
	if res.batchEnd < size {
		reason := "incomplete batch at end of file"
		if res.bad != nil {
			reason = res.bad.Error()
		}
		l.log.Warn("truncating active segment to its last complete batch",
			"file", path, "from_bytes", size, "to_bytes", res.batchEnd,
			"records_dropped", len(res.offs)-res.nBatch, "kept_records", res.nBatch,
			"first_invalid_offset", badOffset(res), "reason", reason)
		if err := f.Truncate(res.batchEnd); err != nil {
			return nil, fmt.Errorf("segment: truncate %s to %d: %w", path, res.batchEnd, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("segment: fsync %s after truncation: %w", path, err)
		}
	}
	if res.nBatch == 0 && prev == nil {
		l.log.Warn("active segment holds no complete batch and is the only file; removing it", "file", path)
		return nil, l.removeEmpty(path)
	}
	return &segment{base: base, path: path, f: f, offs: res.offs[:res.nBatch], size: res.batchEnd, lastIndex: res.lastIndex}, nil
}

func badOffset(res scanResult) int64 {
	if res.bad != nil {
		return res.bad.Offset
	}
	return -1
}

func (l *Log) removeEmpty(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("segment: remove empty segment: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("segment: fsync directory after removing %s: %w", path, err)
	}
	return nil
}

func resetFile(f *os.File, base uint64) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt(fileHeader(base), 0); err != nil {
		return err
	}
	return f.Sync()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// scanner verifies the records of segment files, reusing one read buffer.
type scanner struct {
	maxRec int
	buf    []byte
	dec    decoder
}

type scanResult struct {
	offs      []uint32         // offsets of every valid record before the first invalid one
	nBatch    int              // records up to and including the last batch end
	batchEnd  int64            // offset just past the last batch-end record (header size if none)
	lastIndex uint64           // raft index of record nBatch-1 (the previous file's if none)
	bad       *CorruptionError // first invalid record; nil if the file parsed to its end
}

// scan walks the records of f from the header to size, checking framing, CRC, body
// structure, position continuity from base and index monotonicity from minIndex. It stops
// at the first invalid record and never looks past it. The error is for I/O failures only.
func (sc *scanner) scan(f *os.File, path string, base, minIndex uint64, size int64) (scanResult, error) {
	res := scanResult{batchEnd: fileHeaderSize, lastIndex: minIndex}
	if want := int(min(size, scanChunk)); len(sc.buf) < want {
		sc.buf = make([]byte, want)
	}
	var bufOff int64 // file offset of sc.buf[0]
	bufN := 0        // valid bytes in sc.buf
	ensure := func(off, need int64) error {
		if off >= bufOff && off+need <= bufOff+int64(bufN) {
			return nil
		}
		if int64(len(sc.buf)) < need {
			sc.buf = make([]byte, need)
		}
		n := min(int64(len(sc.buf)), size-off)
		if _, err := io.ReadFull(io.NewSectionReader(f, off, n), sc.buf[:n]); err != nil {
			return fmt.Errorf("segment: read %s at offset %d: %w", path, off, err)
		}
		bufOff, bufN = off, int(n)
		return nil
	}

	off := int64(fileHeaderSize)
	pos, prevIndex := base, minIndex
	fail := func(format string, args ...any) {
		res.bad = &CorruptionError{File: path, Offset: off, Reason: fmt.Sprintf(format, args...)}
	}
	for off < size {
		if off > math.MaxUint32 {
			fail("record offset beyond the 4 GiB segment index limit")
			break
		}
		if size-off < frameHeaderSize {
			fail("truncated record header (%d bytes left)", size-off)
			break
		}
		if err := ensure(off, frameHeaderSize); err != nil {
			return res, err
		}
		length := binary.LittleEndian.Uint32(sc.buf[off-bufOff:])
		need := int64(frameHeaderSize) + int64(length)
		switch {
		case length < minBodySize:
			need = frameHeaderSize // let parseFrame report the bad length
		case off+need > size:
			fail("truncated record: %d bytes announced, %d left", need, size-off)
		case need > int64(sc.maxRec):
			// Either a damaged length or a genuine record written under a larger
			// MaxRecordBytes. The read is bounded by the file size; a record that passes
			// its CRC is never truncated away because of a configuration change.
			if err := ensure(off, need); err != nil {
				return res, err
			}
			if _, _, err := parseFrame(sc.buf[off-bufOff:off-bufOff+need], maxEncodedBytes); err == nil {
				return res, fmt.Errorf("segment: %s at offset %d holds a valid record of %d bytes, above Options.MaxRecordBytes (%d): %w",
					path, off, need, sc.maxRec, ErrTooLarge)
			}
			fail("record of %d bytes exceeds limit %d and fails its checksum", need, sc.maxRec)
		}
		if res.bad != nil {
			break
		}
		if err := ensure(off, need); err != nil {
			return res, err
		}
		body, n, err := parseFrame(sc.buf[off-bufOff:off-bufOff+need], sc.maxRec)
		if err != nil {
			var ce *CorruptionError
			if errors.As(withLocation(err, path, off), &ce) {
				res.bad = ce
			} else {
				fail("%v", err)
			}
			break
		}
		flags, reason := sc.dec.decode(body, nil)
		if reason != "" {
			fail("%s", reason)
			break
		}
		if p := binary.LittleEndian.Uint64(body[offPosition:]); p != pos {
			fail("record holds position %d, expected %d", p, pos)
			break
		}
		idx := binary.LittleEndian.Uint64(body[offIndex:])
		if idx < prevIndex {
			fail("raft index %d decreases (previous %d)", idx, prevIndex)
			break
		}
		res.offs = append(res.offs, uint32(off))
		pos++
		prevIndex = idx
		off += int64(n)
		if flags&flagBatchEnd != 0 {
			res.nBatch = len(res.offs)
			res.batchEnd = off
			res.lastIndex = idx
		}
	}
	return res, nil
}
