package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTripEveryField(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	recs := []Record{
		{Position: 1}, // every field zero / nil
		{
			Index: math.MaxUint64 - 1, Position: 2, Revision: math.MaxUint64, Timestamp: math.MinInt64,
			Kind: 255, ID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
			Stream: "$system-ストリーム", Type: "Type\x00with nul", ContentType: "application/octet-stream",
			Data: bytes.Repeat([]byte{0, 1, 2, 0xff}, 100), Metadata: []byte{}, Tags: []string{"a", "", "ccc"},
		},
		{
			Index: math.MaxUint64, Position: 3, Timestamp: math.MaxInt64, Stream: strings.Repeat("s", 300),
			Data: []byte{}, Metadata: bytes.Repeat([]byte{7}, 200), Tags: []string{},
		},
	}
	if err := l.Append(recs[:1]); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(recs[1:]); err != nil {
		t.Fatal(err)
	}
	checkLog(t, l, recs)

	// Read returns caller-owned slices: changing them does not change stored data, and
	// appending to Data does not overwrite Metadata.
	r, err := l.Read(2)
	if err != nil {
		t.Fatal(err)
	}
	r.Data = append(r.Data, 9, 9, 9)
	r.Data[0] = 42
	r2, _ := l.Read(2)
	checkRecord(t, "reread", r2, recs[1])
	if r.Metadata != nil {
		t.Fatalf("empty Metadata read back as %#v, want nil", r.Metadata)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, Options{})
	checkLog(t, l, recs)
}

func TestCodecRoundTrip(t *testing.T) {
	for pos := uint64(1); pos <= 40; pos++ {
		want := genRecord(pos, pos*3)
		enc, err := AppendEncoded([]byte("prefix"), &want)
		if err != nil {
			t.Fatal(err)
		}
		if string(enc[:6]) != "prefix" {
			t.Fatal("AppendEncoded clobbered dst")
		}
		enc = enc[6:]
		if len(enc) != encodedSize(&want) {
			t.Fatalf("encoded %d bytes, encodedSize says %d", len(enc), encodedSize(&want))
		}
		got, n, err := DecodeRecord(append(bytes.Clone(enc), 0xAA, 0xBB), 0)
		if err != nil || n != len(enc) {
			t.Fatalf("DecodeRecord: n=%d err=%v, want n=%d", n, err, len(enc))
		}
		checkRecord(t, "decode", got, want)
		// The result owns its memory.
		for i := range enc {
			enc[i] ^= 0xff
		}
		checkRecord(t, "decode after clobbering input", got, want)
		for i := range enc {
			enc[i] ^= 0xff
		}
		// Every proper prefix is a short buffer, never a panic or a bogus record.
		for cut := 0; cut < len(enc); cut++ {
			_, _, err := DecodeRecord(enc[:cut], 0)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("prefix %d/%d: err=%v, want io.ErrUnexpectedEOF", cut, len(enc), err)
			}
		}
		// A length above the limit is corruption even though the buffer is short.
		if _, _, err := DecodeRecord(enc, len(enc)-1); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("over limit: %v, want ErrCorrupt", err)
		}
	}
}

func TestDecodeRejectsNonCanonical(t *testing.T) {
	r := Record{Position: 1, Stream: "s"}
	enc, _ := AppendEncoded(nil, &r)
	body := enc[frameHeaderSize:]
	mutate := func(name string, f func(body []byte) []byte) {
		t.Helper()
		nb := f(bytes.Clone(body))
		frame := make([]byte, 8, 8+len(nb))
		frame = append(frame, nb...)
		putFrameHeader(frame)
		_, _, err := DecodeRecord(frame, 0)
		var ce *CorruptionError
		if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: err=%v, want *CorruptionError", name, err)
		}
	}
	mutate("unknown flag", func(b []byte) []byte { b[offFlags] |= 0x80; return b })
	mutate("trailing byte", func(b []byte) []byte { return append(b, 0) })
	mutate("non-minimal varint", func(b []byte) []byte {
		// stream length 1 encoded as 0x81 0x00
		out := append([]byte(nil), b[:fixedBodySize]...)
		out = append(out, 0x81, 0x00)
		return append(out, b[fixedBodySize+1:]...)
	})
	mutate("field past end", func(b []byte) []byte { b[fixedBodySize] = 100; return b })
	mutate("huge tag count", func(b []byte) []byte { b[len(b)-1] = 0x7f; return b })
}

func TestScanClampingAndStartPoints(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{MaxSegmentBytes: 700})
	batches := makeBatches(1, 1, 1, 3, 2, 5, 1, 4, 2, 3) // 21 records across several files
	appendAll(t, l, batches)
	want := flatten(batches)
	if n := len(l.segs); n < 4 {
		t.Fatalf("only %d segments; want several", n)
	}
	last := uint64(len(want))
	cases := []struct {
		from      uint64
		dir       Direction
		wantFirst uint64 // 0 = nothing
		wantLen   int
	}{
		{0, Forward, 1, 21},
		{1, Forward, 1, 21},
		{7, Forward, 7, 15},
		{last, Forward, last, 1},
		{last + 1, Forward, 0, 0},
		{math.MaxUint64, Forward, 0, 0},
		{math.MaxUint64, Backward, last, 21},
		{last + 1, Backward, last, 21},
		{last, Backward, last, 21},
		{9, Backward, 9, 9},
		{1, Backward, 1, 1},
		{0, Backward, 0, 0},
	}
	for _, c := range cases {
		got := scanAll(t, l, c.from, c.dir)
		if len(got) != c.wantLen {
			t.Fatalf("Scan(%d,%v): %d records, want %d", c.from, c.dir, len(got), c.wantLen)
		}
		for i, r := range got {
			p := c.wantFirst + uint64(i)
			if c.dir == Backward {
				p = c.wantFirst - uint64(i)
			}
			checkRecord(t, "scan", r, want[p-1])
		}
	}
	// Stopping early and closing is fine; Next after Close is false.
	it := l.Scan(0, Forward)
	if !it.Next() || it.Record().Position != 1 {
		t.Fatal("first Next")
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if it.Next() {
		t.Fatal("Next after Close")
	}
	// Invalid direction.
	if it := l.Scan(1, Direction(7)); it.Next() || it.Err() == nil {
		t.Fatal("invalid direction accepted")
	}
}

func TestScanDoesNotSeeLaterAppends(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	appendAll(t, l, makeBatches(1, 1, 3))
	it := l.Scan(0, Forward)
	defer it.Close()
	appendAll(t, l, makeBatches(4, 2, 3))
	n := 0
	for it.Next() {
		n++
	}
	if n != 3 || it.Err() != nil {
		t.Fatalf("scan saw %d records (err %v), want the 3 present at Scan time", n, it.Err())
	}
}

func TestEmptyLog(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	checkLog(t, l, nil)
	if err := l.Append(nil); err != nil {
		t.Fatalf("empty Append: %v", err)
	}
	if _, err := l.Read(0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read(0) = %v", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(segFiles(t, dir)) != 0 {
		t.Fatal("empty log created a file")
	}
}

func TestStartMidway(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{MaxSegmentBytes: 500})
	batches := makeBatches(1000, 77, 2, 3, 4, 1, 3)
	appendAll(t, l, batches)
	checkLog(t, l, flatten(batches))
	if got := filepath.Base(segFiles(t, dir)[0]); got != "00000000000000001000.seg" {
		t.Fatalf("first file %s", got)
	}
	if _, err := l.Read(999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read(999) = %v", err)
	}
	l.Close()
	l = mustOpen(t, dir, Options{MaxSegmentBytes: 500})
	checkLog(t, l, flatten(batches))
}

func TestRollAndReopen(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MaxSegmentBytes: 1024}
	l := mustOpen(t, dir, opts)
	sizes := []int{1, 2, 3, 5, 8, 1, 1, 4, 30, 2, 6, 1, 3, 3, 7}
	batches := makeBatches(1, 10, sizes...)
	appendAll(t, l, batches)
	want := flatten(batches)
	checkLog(t, l, want)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}

	// Files: named by first position, no batch spans two files, each file within the
	// limit unless it holds a single batch.
	files := segFiles(t, dir)
	if len(files) < 5 {
		t.Fatalf("%d files, want several", len(files))
	}
	batchOf := map[uint64]int{} // position -> batch number
	for b, batch := range batches {
		for _, r := range batch {
			batchOf[r.Position] = b
		}
	}
	for i, s := range l.segs {
		if s.path != files[i] || filepath.Base(s.path) != segmentName(s.base) {
			t.Fatalf("segment %d: path %s base %d, files %v", i, s.path, s.base, files)
		}
		firstB, lastB := batchOf[s.base], batchOf[s.base+uint64(len(s.offs))-1]
		if s.base != batches[firstB][0].Position {
			t.Fatalf("%s starts mid-batch", s.path)
		}
		lb := batches[lastB]
		if s.base+uint64(len(s.offs))-1 != lb[len(lb)-1].Position {
			t.Fatalf("%s ends mid-batch", s.path)
		}
		st, _ := os.Stat(s.path)
		if st.Size() > opts.MaxSegmentBytes && firstB != lastB {
			t.Fatalf("%s is %d bytes with several batches", s.path, st.Size())
		}
	}
	// The 30-record batch is larger than the limit: it went alone into a fresh file.
	big := batches[8]
	s := l.segs[sortSearchSeg(l, big[0].Position)]
	if s.base != big[0].Position || len(s.offs) != len(big) {
		t.Fatalf("oversized batch not alone in its file: base %d, %d records", s.base, len(s.offs))
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, opts)
	checkLog(t, l, want)
	more := makeBatches(uint64(len(want))+1, 30, 2, 9, 1)
	appendAll(t, l, more)
	want = append(want, flatten(more)...)
	checkLog(t, l, want)
	l.Close()
	l = mustOpen(t, dir, opts)
	checkLog(t, l, want)
}

func sortSearchSeg(l *Log, pos uint64) int {
	for i, s := range l.segs {
		if pos >= s.base && pos < s.base+uint64(len(s.offs)) {
			return i
		}
	}
	return -1
}

func TestOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	if err := l.Append([]Record{{Position: 0}}); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("position 0: %v", err)
	}
	if err := l.Append([]Record{{Position: 5, Index: 3}, {Position: 7, Index: 3}}); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("gap in empty log: %v", err)
	}
	if len(segFiles(t, dir)) != 0 {
		t.Fatal("failed append on empty log left a file")
	}
	appendAll(t, l, [][]Record{{{Position: 5, Index: 3}, {Position: 6, Index: 4}}})
	bad := [][]Record{
		{{Position: 8, Index: 5}},                          // gap
		{{Position: 6, Index: 5}},                          // duplicate
		{{Position: 4, Index: 5}},                          // before first
		{{Position: 7, Index: 3}},                          // index below LastIndex
		{{Position: 7, Index: 6}, {Position: 8, Index: 5}}, // index decreasing in batch
		{{Position: 7, Index: 6}, {Position: 7, Index: 6}}, // duplicate in batch
		{{Position: 7, Index: 6}, {Position: 9, Index: 6}}, // gap in batch
	}
	st0, _ := os.Stat(segFiles(t, dir)[0])
	for i, b := range bad {
		if err := l.Append(b); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("case %d: %v, want ErrOutOfOrder", i, err)
		}
	}
	st1, _ := os.Stat(segFiles(t, dir)[0])
	if st0.Size() != st1.Size() || l.LastPosition() != 6 || l.LastIndex() != 4 {
		t.Fatal("rejected appends changed the log")
	}
	// Equal index (several records of one raft entry) is fine.
	appendAll(t, l, [][]Record{{{Position: 7, Index: 4}, {Position: 8, Index: 4}}})
}

func TestTooLarge(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{MaxRecordBytes: 1024})
	ok := Record{Position: 1, Data: make([]byte, 900)}
	if err := l.Append([]Record{ok}); err != nil {
		t.Fatal(err)
	}
	big := Record{Position: 3, Data: make([]byte, 1024)}
	if err := l.Append([]Record{{Position: 2}, big}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if l.LastPosition() != 1 {
		t.Fatal("partial batch written")
	}
	if _, err := Open(t.TempDir(), Options{MaxRecordBytes: 10}); err == nil {
		t.Fatal("MaxRecordBytes below the minimum record accepted")
	}
	if _, err := Open(t.TempDir(), Options{MaxSegmentBytes: -1}); err == nil {
		t.Fatal("negative MaxSegmentBytes accepted")
	}
	if _, err := Open(t.TempDir(), Options{MaxSegmentBytes: 1 << 33}); err == nil {
		t.Fatal("MaxSegmentBytes over 4 GiB accepted")
	}
	// A record stored under a larger limit is not truncated away when the limit is
	// lowered: Open refuses with ErrTooLarge and leaves the file alone.
	l.Close()
	st0, _ := os.Stat(segFiles(t, dir)[0])
	if _, err := Open(dir, Options{MaxRecordBytes: 512}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("reopen with a lower limit: %v, want ErrTooLarge", err)
	}
	st1, _ := os.Stat(segFiles(t, dir)[0])
	if st0.Size() != st1.Size() {
		t.Fatal("reopen with a lower limit changed the file")
	}
	l = mustOpen(t, dir, Options{MaxRecordBytes: 1024})
	checkLog(t, l, []Record{ok})
}

func TestClosed(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{MaxSegmentBytes: 300})
	appendAll(t, l, makeBatches(1, 1, 3, 3, 3))
	it := l.Scan(0, Forward)
	if !it.Next() {
		t.Fatal(it.Err())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for it.Next() {
	}
	if !errors.Is(it.Err(), ErrClosed) {
		t.Fatalf("iterator over closed log: %v", it.Err())
	}
	if err := l.Append(makeBatches(10, 9, 1)[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append: %v", err)
	}
	if _, err := l.Read(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read: %v", err)
	}
	if err := l.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync: %v", err)
	}
	if it := l.Scan(0, Forward); it.Next() || !errors.Is(it.Err(), ErrClosed) {
		t.Fatalf("Scan: %v", it.Err())
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if l.Dir() != dir {
		t.Fatal("Dir")
	}
}

func TestReadDetectsCorruption(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{MaxSegmentBytes: 400})
	batches := makeBatches(1, 1, 2, 2, 2, 2, 2, 2)
	appendAll(t, l, batches)
	seg := l.segs[1]
	victim := seg.base + 1
	off := int64(seg.offs[1]) + 30
	flipByte(t, seg.path, off)
	_, err := l.Read(victim)
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.File != seg.path || ce.Offset != int64(seg.offs[1]) {
		t.Fatalf("Read of damaged record: %v", err)
	}
	// Other records are still readable.
	if _, err := l.Read(victim - 1); err != nil {
		t.Fatal(err)
	}
	it := l.Scan(0, Forward)
	n := 0
	for it.Next() {
		n++
	}
	if !errors.As(it.Err(), &ce) || uint64(n) != victim-1 {
		t.Fatalf("scan: %d records then %v", n, it.Err())
	}
	it = l.Scan(math.MaxUint64, Backward)
	for it.Next() {
	}
	if !errors.Is(it.Err(), ErrCorrupt) {
		t.Fatalf("backward scan: %v", it.Err())
	}
}

func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// putFrameHeader sets the length and CRC of a frame whose body follows 8 header bytes.
func putFrameHeader(frame []byte) {
	body := frame[frameHeaderSize:]
	binary.LittleEndian.PutUint32(frame, uint32(len(body)))
	binary.LittleEndian.PutUint32(frame[4:], crc32.Checksum(body, castagnoli))
}

// Several MiB through one active file: exercises the early-writeback hint and large
// records, then reopens.
func TestLargeRecordsAndWriteback(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	var want []Record
	pos := uint64(1)
	for b := range 12 {
		var batch []Record
		for range 8 {
			r := genRecord(pos, uint64(b+1))
			r.Data = bytes.Repeat([]byte{byte(pos)}, 64<<10+int(pos))
			batch = append(batch, r)
			pos++
		}
		if err := l.Append(batch); err != nil {
			t.Fatal(err)
		}
		want = append(want, batch...)
	}
	if l.flushed <= fileHeaderSize {
		t.Fatalf("writeback never started (flushed=%d)", l.flushed)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	checkLog(t, l, want)
	l.Close()
	l = mustOpen(t, dir, Options{})
	checkLog(t, l, want)
}

// A failed write whose cleanup also fails leaves the log refusing writes until reopened.
func TestWriteFailureIsSticky(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	batches := makeBatches(1, 1, 2, 2)
	appendAll(t, l, batches[:1])
	l.segs[0].f.Close() // make the next write and the truncate behind it fail
	err := l.Append(batches[1])
	if err == nil {
		t.Fatal("Append to a closed file succeeded")
	}
	if err2 := l.Append(batches[1]); !errors.Is(err2, os.ErrClosed) {
		t.Fatalf("second Append: %v, want the sticky error", err2)
	}
	if err := l.Sync(); err == nil {
		t.Fatal("Sync after failure succeeded")
	}
	if l.LastPosition() != 2 {
		t.Fatalf("LastPosition %d after failed append", l.LastPosition())
	}
	if err := l.Close(); err == nil {
		t.Fatal("Close reported no error for an already closed file")
	}
	l = mustOpen(t, dir, Options{})
	checkLog(t, l, batches[0])
	appendAll(t, l, batches[1:])
	checkLog(t, l, flatten(batches))
}
