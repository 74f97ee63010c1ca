package segment

import "fmt"

const (
	iterFirstChunk = 64 << 10 // first read of an iterator; doubles per read up to scanChunk
)

// Iterator walks records in position order; see Log.Scan. An Iterator is used by one
// goroutine; separate iterators are independent and may run concurrently with Append.
//
// Typical use:
//
//	it := l.Scan(from, segment.Forward)
//	defer it.Close()
//	for it.Next() {
//		r := it.Record()
//		...
//	}
//	if err := it.Err(); err != nil { ... }
type Iterator struct {
	l    *Log
	dir  Direction
	next uint64 // position to yield next
	left uint64 // records still to yield
	err  error

	rec Record
	in  interner
	dec decoder

	seg  *segment // segment holding next
	offs []uint32 // seg.offs[:n] captured under the lock (never changes below n)
	end  int64    // seg.size captured with offs

	buf    []byte // chunk of bufSeg starting at file offset bufOff
	bufN   int
	bufOff int64
	bufSeg *segment
	chunk  int
}

// Scan returns an iterator over the records from position from (inclusive) in direction
// dir. Forward stops at the last position stored when Scan was called; Backward goes
// toward position 1 and stops at the first. A from beyond the ends is clamped: Forward
// from 0 (or any value below FirstPosition) starts at the first record, Backward from
// math.MaxUint64 (or any value above LastPosition) starts at the last. Forward from above
// LastPosition, or Backward from below FirstPosition, yields nothing. Records appended
// after Scan returns are not included; scan again from the next position to see them.
//
// Iteration reads files in large chunks with pread and verifies each record's CRC; a
// failure ends the iteration with Err returning a *CorruptionError. Scan on a closed Log
// returns an iterator whose Err is ErrClosed.
func (l *Log) Scan(from uint64, dir Direction) *Iterator {
	it := &Iterator{l: l, dir: dir, chunk: iterFirstChunk}
	it.dec = decoder{in: &it.in, alias: true, reuse: true}
	l.mu.RLock()
	closed := l.closed.Load()
	first, last := l.first.Load(), l.last.Load()
	l.mu.RUnlock()
	if closed {
		it.err = ErrClosed
		return it
	}
	if last == 0 {
		return it
	}
	switch dir {
	case Forward:
		start := max(from, first)
		if start <= last {
			it.next, it.left = start, last-start+1
		}
	case Backward:
		start := min(from, last)
		if start >= first {
			it.next, it.left = start, start-first+1
		}
	default:
		it.err = fmt.Errorf("segment: invalid scan direction %d", dir)
	}
	return it
}

// Next advances to the next record and reports whether there is one. It returns false at
// the end of the range or on error (see Err).
func (it *Iterator) Next() bool {
	if it.err != nil || it.left == 0 {
		return false
	}
	pos := it.next
	if it.seg == nil || pos < it.seg.base || pos-it.seg.base >= uint64(len(it.offs)) {
		if err := it.locate(pos); err != nil {
			return it.stop(err)
		}
	}
	i := int(pos - it.seg.base)
	off, end := int64(it.offs[i]), it.end
	if i+1 < len(it.offs) {
		end = int64(it.offs[i+1])
	}
	if it.bufSeg != it.seg || off < it.bufOff || end > it.bufOff+int64(it.bufN) {
		if err := it.fill(off, end); err != nil {
			return it.stop(err)
		}
	}
	frame := it.buf[off-it.bufOff : end-it.bufOff]
	if err := decodeAt(&it.dec, it.seg.path, off, frame, pos, it.l.opts.MaxRecordBytes, &it.rec); err != nil {
		return it.stop(err)
	}
	it.left--
	if it.dir == Forward {
		it.next++
	} else {
		it.next--
	}
	return true
}

func (it *Iterator) stop(err error) bool {
	it.err = err
	it.left = 0
	it.rec = Record{}
	return false
}

// locate captures the segment holding pos and its visible index.
func (it *Iterator) locate(pos uint64) error {
	l := it.l
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed.Load() {
		return ErrClosed
	}
	seg, _ := l.find(pos)
	if seg == nil {
		return fmt.Errorf("%w: position %d no longer stored", ErrNotFound, pos)
	}
	it.seg, it.offs, it.end = seg, seg.offs[:len(seg.offs):len(seg.offs)], seg.size
	return nil
}

// fill reads a chunk of it.seg covering [off, end), extending ahead in the scan direction
// by up to it.chunk bytes. Chunks start small and double, so short scans stay cheap and
// long ones read large blocks.
func (it *Iterator) fill(off, end int64) error {
	size := int64(max(it.chunk, int(end-off)))
	if it.chunk < scanChunk {
		it.chunk *= 2
	}
	var start, stop int64
	if it.dir == Forward {
		start, stop = off, min(off+size, it.end)
	} else {
		start, stop = max(fileHeaderSize, end-size), end
	}
	n := int(stop - start)
	if len(it.buf) < n {
		it.buf = make([]byte, n)
	}
	it.bufSeg = nil
	if err := readAt(it.seg, it.buf[:n], start); err != nil {
		return err
	}
	it.bufSeg, it.bufOff, it.bufN = it.seg, start, n
	return nil
}

// Record returns the current record. It is valid only until the next call to Next or
// Close: Data, Metadata and Tags alias buffers the iterator reuses, so copy them to keep
// them. The strings (Stream, Type, ContentType, tag values) are ordinary immutable strings
// and may be kept.
func (it *Iterator) Record() *Record { return &it.rec }

// Err returns the error that ended the iteration, or nil at a normal end.
func (it *Iterator) Err() error { return it.err }

// Close releases the iterator's buffers; Next returns false afterwards. It always returns
// nil; errors are reported by Err.
func (it *Iterator) Close() error {
	it.left = 0
	it.buf, it.bufSeg, it.seg, it.offs = nil, nil, nil, nil
	it.rec = Record{}
	it.dec.tagBuf = nil
	return nil
}
