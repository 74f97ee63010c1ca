package segment

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// recoveryFixture is a closed log with sealed files and an active file holding several
// batches, plus where each batch ends in the active file.
type recoveryFixture struct {
	dir        string
	opts       Options
	batches    [][]Record
	active     string  // path of the active (last) file
	activeSize int64   // its size
	recOffs    []int64 // start offset of each record in the active file
	sealedRecs int     // records in sealed files
	// batchEnds[i] is the offset in the active file just past batch activeFirst+i.
	activeFirst int
	batchEnds   []int64
}

func newRecoveryFixture(t *testing.T) *recoveryFixture {
	t.Helper()
	// Small segments first (several sealed files), then a large limit so that the
	// active file collects several batches.
	fx := &recoveryFixture{dir: t.TempDir(), opts: Options{MaxSegmentBytes: 1 << 20}}
	fx.batches = makeBatches(1, 1, 2, 3, 1, 4, 2, 5, 1, 3, 2, 1, 4, 3)
	l := mustOpen(t, fx.dir, Options{MaxSegmentBytes: 600})
	appendAll(t, l, fx.batches[:7])
	l.Close()
	l = mustOpen(t, fx.dir, fx.opts)
	appendAll(t, l, fx.batches[7:])
	if len(l.segs) < 3 {
		t.Fatalf("fixture has %d segments, want >= 3", len(l.segs))
	}
	act := l.segs[len(l.segs)-1]
	fx.active, fx.activeSize = act.path, act.size
	for _, o := range act.offs {
		fx.recOffs = append(fx.recOffs, int64(o))
	}
	fx.sealedRecs = int(act.base - 1)
	// Batch ends inside the active file.
	pos := uint64(1)
	for i, b := range fx.batches {
		last := pos + uint64(len(b)) - 1
		if pos >= act.base {
			if len(fx.batchEnds) == 0 {
				fx.activeFirst = i
			}
			if k := last - act.base + 1; k < uint64(len(act.offs)) {
				fx.batchEnds = append(fx.batchEnds, int64(act.offs[k]))
			} else {
				fx.batchEnds = append(fx.batchEnds, act.size)
			}
		}
		pos = last + 1
	}
	if len(fx.batchEnds) < 4 {
		t.Fatalf("active file holds %d batches, want >= 4", len(fx.batchEnds))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return fx
}

// survivors returns the batches that must survive when every byte at or after cut in the
// active file is lost or invalid: those ending at or before cut.
func (fx *recoveryFixture) survivors(cut int64) [][]Record {
	n := fx.activeFirst
	for _, end := range fx.batchEnds {
		if end <= cut {
			n++
		}
	}
	return fx.batches[:n]
}

// recordStart returns the start of the active-file record containing off (or the header
// size for offsets in the header).
func (fx *recoveryFixture) recordStart(off int64) int64 {
	start := int64(fileHeaderSize)
	for _, o := range fx.recOffs {
		if o <= off {
			start = o
		}
	}
	return start
}

// damageFrom returns the first offset checked: the start of the third-to-last batch.
func (fx *recoveryFixture) damageFrom() int64 {
	return fx.batchEnds[len(fx.batchEnds)-4]
}

// expectRecovered opens dir and checks that exactly want survived, that appending more
// works, and that the result survives another reopen.
func expectRecovered(t *testing.T, dir string, opts Options, want [][]Record, what string) {
	t.Helper()
	if err := recoverAndExtend(dir, opts, want); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func recoverAndExtend(dir string, opts Options, want [][]Record) (err error) {
	if opts.Logger == nil {
		opts.Logger = discard()
	}
	l, err := Open(dir, opts)
	if err != nil {
		return fmt.Errorf("Open: %w", err)
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && !errors.Is(cerr, ErrClosed) && err == nil {
			err = cerr
		}
	}()
	flat := flatten(want)
	if err := verifyLog(l, flat); err != nil {
		return fmt.Errorf("after recovery: %w", err)
	}
	last := want[len(want)-1]
	next := makeBatches(last[len(last)-1].Position+1, l.LastIndex()+1, 3, 1)
	for _, b := range next {
		if err := l.Append(b); err != nil {
			return fmt.Errorf("Append after recovery: %w", err)
		}
	}
	flat = append(flat, flatten(next)...)
	if err := verifyLog(l, flat); err != nil {
		return fmt.Errorf("after append: %w", err)
	}
	if err := l.Close(); err != nil {
		return err
	}
	if l, err = Open(dir, opts); err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	if err := verifyLog(l, flat); err != nil {
		return fmt.Errorf("after append and reopen: %w", err)
	}
	return nil
}

// damageEach restores the fixture's active file, damages it with f(path, k) and checks
// recovery, for each k in [from, to). Only the active file is rewritten between cases:
// recovery and the appends never touch the sealed files (and never create a file here).
func (fx *recoveryFixture) damageEach(t *testing.T, from, to int64, damage func(path string, k int64), want func(k int64) [][]Record) {
	t.Helper()
	orig, err := os.ReadFile(fx.active)
	if err != nil {
		t.Fatal(err)
	}
	sealed := snapshotSizes(t, fx.dir)
	delete(sealed, filepath.Base(fx.active))
	for k := from; k < to; k++ {
		if err := os.WriteFile(fx.active, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		damage(fx.active, k)
		if err := recoverAndExtend(fx.dir, fx.opts, want(k)); err != nil {
			t.Fatalf("damage at %d: %v", k, err)
		}
	}
	after := snapshotSizes(t, fx.dir)
	delete(after, filepath.Base(fx.active))
	if !maps2Equal(sealed, after) {
		t.Fatalf("sealed files changed: %v -> %v", sealed, after)
	}
}

func TestRecoveryTruncateEveryOffset(t *testing.T) {
	t.Parallel()
	fx := newRecoveryFixture(t)
	fx.damageEach(t, fx.damageFrom(), fx.activeSize, func(path string, cut int64) {
		if err := os.Truncate(path, cut); err != nil {
			t.Fatal(err)
		}
	}, fx.survivors)
}

func TestRecoveryFlipEveryOffset(t *testing.T) {
	t.Parallel()
	fx := newRecoveryFixture(t)
	fx.damageEach(t, fx.damageFrom(), fx.activeSize, func(path string, off int64) {
		flipByte(t, path, off)
	}, func(off int64) [][]Record { return fx.survivors(fx.recordStart(off)) })
}

func TestRecoveryLogsTruncation(t *testing.T) {
	fx := newRecoveryFixture(t)
	if err := os.Truncate(fx.active, fx.activeSize-3); err != nil {
		t.Fatal(err)
	}
	logger, msgs := newRecordingLogger()
	l := mustOpen(t, fx.dir, Options{MaxSegmentBytes: fx.opts.MaxSegmentBytes, Logger: logger})
	checkLog(t, l, flatten(fx.survivors(fx.activeSize-3)))
	if !slices.ContainsFunc(msgs(), func(m string) bool { return strings.HasPrefix(m, "WARN truncating active segment") }) {
		t.Fatalf("truncation not logged; logged %q", msgs())
	}
}

// A multi-record batch cut anywhere inside it, including exactly at a record boundary
// (all records before the cut are intact), disappears entirely.
func TestBatchAtomicity(t *testing.T) {
	base := t.TempDir()
	l := mustOpen(t, base, Options{})
	batches := makeBatches(1, 1, 2, 10)
	appendAll(t, l, batches)
	act := l.segs[0]
	offs := slices.Clone(act.offs)
	size := act.size
	l.Close()
	batchStart := int64(offs[2])
	var cuts []int64
	for i := 3; i < len(offs); i++ {
		cuts = append(cuts, int64(offs[i]), int64(offs[i])-1, int64(offs[i])+9) // boundary, mid-record
	}
	cuts = append(cuts, batchStart+1, size-1)
	for _, cut := range cuts {
		dir := copyDir(t, base)
		if err := os.Truncate(filepath.Join(dir, filepath.Base(act.path)), cut); err != nil {
			t.Fatal(err)
		}
		expectRecovered(t, dir, Options{}, batches[:1], fmt.Sprintf("cut@%d", cut))
	}
}

func TestSealedCorruption(t *testing.T) {
	base := t.TempDir()
	opts := Options{MaxSegmentBytes: 900}
	l := mustOpen(t, base, opts)
	appendAll(t, l, makeBatches(1, 1, 3, 2, 4, 1, 2, 3, 2, 2, 1, 3))
	if len(l.segs) < 4 {
		t.Fatalf("%d segments, want >= 4", len(l.segs))
	}
	type segInfo struct {
		name    string
		offs    []uint32
		size    int64
		batchAt int64 // a batch end strictly inside the file, or 0
	}
	var segs []segInfo
	for _, s := range l.segs {
		si := segInfo{name: filepath.Base(s.path), offs: slices.Clone(s.offs), size: s.size}
		segs = append(segs, si)
	}
	l.Close()
	// Find a sealed file with an inner batch boundary and one with an inner non-batch
	// record boundary, by decoding flags.
	innerBoundaries := func(i int) (batch, nonBatch []int64) {
		b, err := os.ReadFile(filepath.Join(base, segs[i].name))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range segs[i].offs[1:] {
			prevEnd := int64(o)
			// flag of the previous record
			j := slices.Index(segs[i].offs, o) - 1
			if b[int64(segs[i].offs[j])+frameHeaderSize+offFlags]&flagBatchEnd != 0 {
				batch = append(batch, prevEnd)
			} else {
				nonBatch = append(nonBatch, prevEnd)
			}
		}
		return
	}

	type tc struct {
		name     string
		damage   func(dir string)
		wantFile int // index into segs of the file the error must name
	}
	path := func(dir string, i int) string { return filepath.Join(dir, segs[i].name) }
	var cases []tc
	for _, i := range []int{0, 1} {
		for _, off := range []int64{0, 8, 12, 20, fileHeaderSize, fileHeaderSize + 4, fileHeaderSize + 8, fileHeaderSize + 30, segs[i].size - 1} {
			cases = append(cases, tc{fmt.Sprintf("flip seg%d@%d", i, off), func(dir string) { flipByte(t, path(dir, i), off) }, i})
		}
		for _, cut := range []int64{0, 5, fileHeaderSize, fileHeaderSize + 3, segs[i].size - 1} {
			cases = append(cases, tc{fmt.Sprintf("truncate seg%d@%d", i, cut), func(dir string) {
				if err := os.Truncate(path(dir, i), cut); err != nil {
					t.Fatal(err)
				}
			}, i})
		}
		batch, nonBatch := innerBoundaries(i)
		for _, cut := range nonBatch {
			cases = append(cases, tc{fmt.Sprintf("truncate seg%d at non-batch boundary %d", i, cut), func(dir string) {
				if err := os.Truncate(path(dir, i), cut); err != nil {
					t.Fatal(err)
				}
			}, i})
		}
		for _, cut := range batch {
			// A shorter but well-formed sealed file: the gap is found at the next file.
			cases = append(cases, tc{fmt.Sprintf("truncate seg%d at batch boundary %d", i, cut), func(dir string) {
				if err := os.Truncate(path(dir, i), cut); err != nil {
					t.Fatal(err)
				}
			}, i + 1})
		}
	}
	cases = append(cases,
		tc{"missing middle file", func(dir string) {
			if err := os.Remove(path(dir, 1)); err != nil {
				t.Fatal(err)
			}
		}, 2},
		tc{"bad magic in active file", func(dir string) { flipByte(t, path(dir, len(segs)-1), 2) }, len(segs) - 1},
		tc{"bad version in active file", func(dir string) { flipByte(t, path(dir, len(segs)-1), 9) }, len(segs) - 1},
	)
	for _, c := range cases {
		dir := copyDir(t, base)
		c.damage(dir)
		before := snapshotSizes(t, dir)
		_, err := Open(dir, Options{MaxSegmentBytes: opts.MaxSegmentBytes, Logger: discard()})
		var ce *CorruptionError
		if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
			t.Fatalf("%s: Open err = %v, want *CorruptionError", c.name, err)
		}
		if want := path(dir, c.wantFile); ce.File != want {
			t.Fatalf("%s: error names %s, want %s (%v)", c.name, ce.File, want, err)
		}
		if !strings.Contains(err.Error(), segs[c.wantFile].name) || !strings.Contains(err.Error(), "offset") {
			t.Fatalf("%s: message %q does not name file and offset", c.name, err)
		}
		if after := snapshotSizes(t, dir); !maps2Equal(before, after) {
			t.Fatalf("%s: failed Open changed files: %v -> %v", c.name, before, after)
		}
	}
}

func snapshotSizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	for _, p := range segFiles(t, dir) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(p)] = st.Size()
	}
	return m
}

func maps2Equal(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// An active file whose header never fully reached disk held no records: after a sealed
// file it is rewritten; alone it is removed and the log is empty.
func TestTornActiveHeader(t *testing.T) {
	base := t.TempDir()
	opts := Options{MaxSegmentBytes: 600}
	l := mustOpen(t, base, opts)
	batches := makeBatches(1, 1, 3, 3, 3, 3)
	appendAll(t, l, batches)
	n := len(l.segs)
	l.Close()
	lastSealed := l.segs[n-1]
	nextName := segmentName(lastSealed.base + uint64(len(lastSealed.offs)))
	for _, content := range [][]byte{nil, []byte("CAIRN"), make([]byte, fileHeaderSize), make([]byte, fileHeaderSize+40)} {
		dir := copyDir(t, base)
		if err := os.WriteFile(filepath.Join(dir, nextName), content, 0o644); err != nil {
			t.Fatal(err)
		}
		expectRecovered(t, dir, opts, batches, fmt.Sprintf("torn header %d bytes", len(content)))
	}
	// Alone.
	for _, content := range [][]byte{nil, make([]byte, 10), fileHeader(5)} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(5)), content, 0o644); err != nil {
			t.Fatal(err)
		}
		l := mustOpen(t, dir, opts)
		checkLog(t, l, nil)
		if len(segFiles(t, dir)) != 0 {
			t.Fatal("empty lone active file not removed")
		}
		appendAll(t, l, makeBatches(9, 1, 2))
		checkLog(t, l, flatten(makeBatches(9, 1, 2)))
	}
}

// Records that pass their CRC but break position continuity or index order end the valid
// prefix of the active file (and are corruption in a sealed file).
func TestRecoveryOrderingChecks(t *testing.T) {
	mk := func(recs []Record, ends []bool) []byte {
		b := fileHeader(recs[0].Position)
		for i := range recs {
			var fl byte
			if ends[i] {
				fl = flagBatchEnd
			}
			b = appendFrame(b, &recs[i], fl, encodedSize(&recs[i]))
		}
		return b
	}
	r := func(pos, idx uint64) Record { return genRecord(pos, idx) }
	cases := []struct {
		name string
		recs []Record
		ends []bool
		keep int
	}{
		{"position gap", []Record{r(1, 1), r(2, 1), r(4, 2), r(5, 2)}, []bool{false, true, false, true}, 2},
		{"position repeat", []Record{r(1, 1), r(2, 2), r(2, 3)}, []bool{true, true, true}, 2},
		{"index decreases", []Record{r(1, 5), r(2, 6), r(3, 4)}, []bool{true, true, true}, 2},
		{"index decreases inside batch", []Record{r(1, 5), r(2, 6), r(3, 7), r(4, 6)}, []bool{true, false, false, true}, 1},
		{"no batch end at all", []Record{r(1, 5), r(2, 6)}, []bool{false, false}, 0},
	}
	for _, c := range cases {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), mk(c.recs, c.ends), 0o644); err != nil {
			t.Fatal(err)
		}
		l := mustOpen(t, dir, Options{})
		checkLogWhat(t, l, c.recs[:c.keep], c.name)
		l.Close()

		// The same bytes as a sealed file (followed by a valid active file) are fatal.
		dir = t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), mk(c.recs, c.ends), 0o644); err != nil {
			t.Fatal(err)
		}
		next := uint64(len(c.recs)) + 1
		if err := os.WriteFile(filepath.Join(dir, segmentName(next)), mk([]Record{r(next, 9)}, []bool{true}), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, Options{Logger: discard()}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s as sealed file: %v, want ErrCorrupt", c.name, err)
		}
	}
}

func TestIgnoresUnrelatedFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"README", "snapshot.tmp", "1.seg", "0000000000000000000x.seg"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, segmentName(3)), 0o755); err != nil {
		t.Fatal(err)
	}
	l := mustOpen(t, dir, Options{})
	checkLog(t, l, nil)
	appendAll(t, l, makeBatches(1, 1, 2))
	l.Close()
	l = mustOpen(t, dir, Options{})
	checkLog(t, l, flatten(makeBatches(1, 1, 2)))
}

func checkLogWhat(t *testing.T, l *Log, want []Record, what string) {
	t.Helper()
	if err := verifyLog(l, want); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
