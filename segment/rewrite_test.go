package segment

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// redactEven replaces every record at an even position with a stripped copy: same position,
// index, revision, timestamp, id and stream; other fields dropped and the kind set to 9.
func redactEven(r *Record) (Record, bool) {
	if r.Position%2 != 0 || r.Kind == 9 {
		return Record{}, false
	}
	return redacted(*r), true
}

func redacted(r Record) Record {
	return Record{Index: r.Index, Position: r.Position, Revision: r.Revision, Timestamp: r.Timestamp,
		Kind: 9, ID: r.ID, Stream: r.Stream}
}

// rewriteFixture opens a log of several small sealed segments and returns it with its records.
func rewriteFixture(t *testing.T) (*Log, string, []Record) {
	t.Helper()
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{MaxSegmentBytes: 4 << 10})
	batches := makeBatches(1, 1, slices.Repeat([]int{3, 1, 5, 2}, 40)...)
	appendAll(t, l, batches)
	if n := len(l.SealedBases()); n < 3 {
		t.Fatalf("fixture has %d sealed segments, want >= 3", n)
	}
	return l, dir, flatten(batches)
}

func expectRedacted(want []Record, bases []uint64, l *Log) []Record {
	out := slices.Clone(want)
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, s := range l.segs {
		if !slices.Contains(bases, s.base) {
			continue
		}
		for i := range s.offs {
			p := s.base + uint64(i)
			if p%2 == 0 {
				out[p-1] = redacted(out[p-1])
			}
		}
	}
	return out
}

func TestRewriteKeepsPositionsAndShrinks(t *testing.T) {
	l, dir, want := rewriteFixture(t)
	base := l.SealedBases()[1]
	before := l.Stats().Bytes
	st, err := l.Rewrite(base, redactEven)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Rewritten || st.Changed == 0 || st.Changed > st.Records || st.BytesAfter >= st.BytesBefore {
		t.Fatalf("stats %+v: want a rewrite that changed records and shrank the file", st)
	}
	if got := l.Stats().Bytes; got != before-(st.BytesBefore-st.BytesAfter) {
		t.Fatalf("Stats().Bytes = %d, want %d", got, before-(st.BytesBefore-st.BytesAfter))
	}
	want = expectRedacted(want, []uint64{base}, l)
	checkLog(t, l, want)
	if m, _ := filepath.Glob(filepath.Join(dir, "*"+rewriteTmpSuffix)); len(m) != 0 {
		t.Fatalf("tmp files left: %v", m)
	}
	// Appends continue, and a reopen (which verifies every sealed file) sees the same records.
	more := makeBatches(want[len(want)-1].Position+1, want[len(want)-1].Index+1, 4, 4)
	appendAll(t, l, more)
	want = append(want, flatten(more)...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkLog(t, mustOpen(t, dir, Options{MaxSegmentBytes: 4 << 10}), want)
}

func TestRewriteIsIdempotentAndSkipsUnchanged(t *testing.T) {
	l, dir, _ := rewriteFixture(t)
	base := l.SealedBases()[0]
	if _, err := l.Rewrite(base, redactEven); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, segmentName(base))
	fi1, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := l.Rewrite(base, redactEven) // everything already redacted
	if err != nil {
		t.Fatal(err)
	}
	fi2, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rewritten || st.Changed != 0 || !os.SameFile(fi1, fi2) {
		t.Fatalf("second rewrite: stats %+v, same file %v; want no rewrite", st, os.SameFile(fi1, fi2))
	}
}

func TestRewriteRefusals(t *testing.T) {
	l, dir, want := rewriteFixture(t)
	sealed := l.SealedBases()
	l.mu.RLock()
	active := l.segs[len(l.segs)-1].base
	l.mu.RUnlock()
	if _, err := l.Rewrite(active, redactEven); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("rewrite of the active segment: %v, want ErrNotSealed", err)
	}
	if _, err := l.Rewrite(sealed[0]+1, redactEven); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("rewrite of a non-base: %v, want ErrNotSealed", err)
	}
	movePos := func(r *Record) (Record, bool) { c := *r; c.Position++; return c, true }
	if _, err := l.Rewrite(sealed[0], movePos); !errors.Is(err, ErrBadRewrite) {
		t.Fatalf("moving a position: %v, want ErrBadRewrite", err)
	}
	moveIdx := func(r *Record) (Record, bool) { c := *r; c.Index++; return c, true }
	if _, err := l.Rewrite(sealed[0], moveIdx); !errors.Is(err, ErrBadRewrite) {
		t.Fatalf("moving an index: %v, want ErrBadRewrite", err)
	}
	grow := func(r *Record) (Record, bool) { c := *r; c.Data = make([]byte, DefaultMaxRecordBytes); return c, true }
	if _, err := l.Rewrite(sealed[0], grow); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize replacement: %v, want ErrTooLarge", err)
	}
	checkLog(t, l, want) // nothing changed
	if m, _ := filepath.Glob(filepath.Join(dir, "*"+rewriteTmpSuffix)); len(m) != 0 {
		t.Fatalf("tmp files left after refusals: %v", m)
	}
}

// TestRewriteCrashPoints stops a rewrite where a crash could, then reopens the directory as a
// restarted node would: before the rename the old file survives and the tmp file is removed;
// after it the new file is in place.
func TestRewriteCrashPoints(t *testing.T) {
	for _, tc := range []struct {
		stage   rewriteStage
		wantNew bool
	}{{stageTmpWritten, false}, {stageRenamed, true}} {
		t.Run(string(tc.stage), func(t *testing.T) {
			l, dir, want := rewriteFixture(t)
			base := l.SealedBases()[0]
			crash := errors.New("simulated crash")
			l.rewriteHook = func(s rewriteStage) error {
				if s == tc.stage {
					return crash
				}
				return nil
			}
			if _, err := l.Rewrite(base, redactEven); !errors.Is(err, crash) {
				t.Fatalf("Rewrite: %v, want the simulated crash", err)
			}
			tmps, _ := filepath.Glob(filepath.Join(dir, "*"+rewriteTmpSuffix))
			if want := !tc.wantNew; (len(tmps) == 1) != want {
				t.Fatalf("tmp files after crash at %s: %v", tc.stage, tmps)
			}
			// The process "dies": copy the directory as it is on disk and reopen the copy.
			crashed := copyDir(t, dir)
			if tc.wantNew {
				want = expectRedacted(want, []uint64{base}, l)
			}
			l2 := mustOpen(t, crashed, Options{MaxSegmentBytes: 4 << 10})
			checkLog(t, l2, want)
			if m, _ := filepath.Glob(filepath.Join(crashed, "*"+rewriteTmpSuffix)); len(m) != 0 {
				t.Fatalf("Open left tmp files: %v", m)
			}
		})
	}
}

// TestRewriteDamagedTmpIsRefused: the verification pass reads the new file back before the
// rename; a damaged byte there fails the rewrite with ErrCorrupt and leaves the original in place.
func TestRewriteDamagedTmpIsRefused(t *testing.T) {
	l, dir, want := rewriteFixture(t)
	base := l.SealedBases()[0]
	tmp := filepath.Join(dir, segmentName(base)+rewriteTmpSuffix)
	l.rewriteHook = func(s rewriteStage) error {
		if s != stageBeforeVerify {
			return nil
		}
		f, err := os.OpenFile(tmp, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		b := make([]byte, 1)
		off := int64(fileHeaderSize + 40) // inside the first record's body
		if _, err := f.ReadAt(b, off); err != nil {
			return err
		}
		_, err = f.WriteAt([]byte{b[0] ^ 0x40}, off)
		return err
	}
	if _, err := l.Rewrite(base, redactEven); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Rewrite of a damaged tmp file: %v, want ErrCorrupt", err)
	}
	checkLog(t, l, want)
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("damaged tmp file not removed: %v", err)
	}
}

// TestRewriteUnderConcurrentReaders rewrites every sealed segment while a writer appends and
// rolls and readers Read and Scan: every record a reader sees is either the original or its
// redacted form, positions stay dense, and nothing fails (run with -race).
func TestRewriteUnderConcurrentReaders(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{MaxSegmentBytes: 4 << 10})
	const batches = 600
	all := flatten(makeBatches(1, 1, slices.Repeat([]int{2, 3}, batches/2)...))
	appendAll(t, l, [][]Record{all[:100]})

	var done atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	ok := func(r Record) bool {
		w := all[r.Position-1]
		return sameRecord(r, w) || sameRecord(r, redacted(w))
	}
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !done.Load() && n < 5000; n++ {
				last := l.LastPosition()
				if g == 0 {
					r, err := l.Read(1 + uint64(n)%last)
					if err != nil || !ok(r) {
						errc <- errors.Join(err, errors.New("Read saw a record that is neither original nor redacted"))
						return
					}
					continue
				}
				dir := Forward
				if g == 2 {
					dir = Backward
				}
				got, err := collect(l, []uint64{0, ^uint64(0)}[dir], dir)
				if err != nil {
					errc <- err
					return
				}
				for i, r := range got {
					if !ok(r) {
						errc <- errors.New("Scan saw a record that is neither original nor redacted")
						return
					}
					if i > 0 && r.Position != got[i-1].Position+1 && r.Position != got[i-1].Position-1 {
						errc <- errors.New("Scan positions are not dense")
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // rewriter
		defer wg.Done()
		for n := 0; !done.Load() && n < 2000; n++ {
			for _, b := range l.SealedBases() {
				if _, err := l.Rewrite(b, redactEven); err != nil {
					errc <- err
					return
				}
			}
		}
	}()
	// The writer: append the rest in small batches, then stop everyone.
	deadline := time.Now().Add(20 * time.Second)
	for pos := 101; pos <= len(all) && time.Now().Before(deadline); pos += 3 {
		end := min(pos+3, len(all)+1)
		if err := l.Append(all[pos-1 : end-1]); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	// Finish the job and check the final state exactly.
	for _, b := range l.SealedBases() {
		if _, err := l.Rewrite(b, redactEven); err != nil {
			t.Fatal(err)
		}
	}
	checkLog(t, l, expectRedacted(all[:l.LastPosition()], l.SealedBases(), l))
}

// TestIteratorKeepsOldFileAcrossRewrite: an iterator that located a segment before its rewrite
// reads the old bytes to the end of that segment; one started after sees the new ones.
func TestIteratorKeepsOldFileAcrossRewrite(t *testing.T) {
	l, _, want := rewriteFixture(t)
	base := l.SealedBases()[0]
	it := l.Scan(base, Forward)
	defer it.Close()
	if !it.Next() {
		t.Fatal(it.Err())
	}
	if _, err := l.Rewrite(base, redactEven); err != nil {
		t.Fatal(err)
	}
	checkRecord(t, "first record", cloneRecord(*it.Record()), want[base-1])
	for it.Next() {
		r := cloneRecord(*it.Record())
		w := want[r.Position-1]
		if !sameRecord(r, w) && !sameRecord(r, redacted(w)) {
			t.Fatalf("position %d: %+v", r.Position, r)
		}
	}
	if it.Err() != nil {
		t.Fatal(it.Err())
	}
	r, err := l.Read(base + 1)
	if err != nil {
		t.Fatal(err)
	}
	wantR := want[base]
	if (base+1)%2 == 0 {
		wantR = redacted(wantR)
	}
	checkRecord(t, "read after rewrite", r, wantR)
}

// TestLinkFilesKeepOldBytesAcrossRewrite: a snapshot's hard link to a sealed file keeps the bytes
// it linked after the file is rewritten, and the linked prefixes still open as the old log.
func TestLinkFilesKeepOldBytesAcrossRewrite(t *testing.T) {
	l, dir, want := rewriteFixture(t)
	snap := t.TempDir()
	refs, err := l.LinkFiles(l.LastPosition(), snap)
	if err != nil {
		t.Fatal(err)
	}
	base := l.SealedBases()[0]
	orig, err := os.ReadFile(filepath.Join(dir, segmentName(base)))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range l.SealedBases() {
		if _, err := l.Rewrite(b, redactEven); err != nil {
			t.Fatal(err)
		}
	}
	linked, err := os.ReadFile(filepath.Join(snap, segmentName(base)))
	if err != nil {
		t.Fatal(err)
	}
	now, err := os.ReadFile(filepath.Join(dir, segmentName(base)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(linked, orig) || bytes.Equal(now, orig) {
		t.Fatalf("linked file changed (%v) or live file unchanged (%v)", !bytes.Equal(linked, orig), bytes.Equal(now, orig))
	}
	// The linked prefixes open as the original log.
	cp := t.TempDir()
	for _, r := range refs {
		b, err := os.ReadFile(filepath.Join(snap, r.Name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cp, r.Name), b[:r.Size], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkLog(t, mustOpen(t, cp, Options{MaxSegmentBytes: 4 << 10}), want)
}
