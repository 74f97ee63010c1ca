package segment

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestStatsCountFilesAndBytes(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{MaxSegmentBytes: 4096})
	if s := l.Stats(); s.Segments != 0 || s.Bytes != 0 {
		t.Fatalf("empty log: %+v", s)
	}
	var recs []Record
	for i := range 40 {
		recs = append(recs, Record{Index: uint64(i + 1), Position: uint64(i + 1), Stream: "s", Data: make([]byte, 200)})
	}
	for i := range recs {
		if err := l.Append(recs[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	s := l.Stats()
	if s.Segments < 2 || s.Bytes < 40*200 {
		t.Fatalf("after 40 records of 200 bytes with 4 KiB segments: %+v", s)
	}
}

// A copy of the prefixes Files reports opens as a log holding exactly positions 1..upTo.
func TestFilesPrefixesOpenAsTheSameLog(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{MaxSegmentBytes: 2048})
	for i := range 30 {
		if err := l.Append([]Record{{Index: uint64(i + 1), Position: uint64(i + 1), Stream: "s", Data: make([]byte, 150)}}); err != nil {
			t.Fatal(err)
		}
	}
	files, err := l.Files(17)
	if err != nil || len(files) < 2 {
		t.Fatalf("files: %v %v", files, err)
	}
	cp := t.TempDir()
	for _, f := range files {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cp, f.Name), b[:f.Size], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := mustOpen(t, cp, Options{MaxSegmentBytes: 2048})
	if c.FirstPosition() != 1 || c.LastPosition() != 17 || c.LastIndex() != 17 {
		t.Fatalf("copy holds %d..%d (index %d)", c.FirstPosition(), c.LastPosition(), c.LastIndex())
	}
	if _, err := l.Files(99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("files beyond the end: %v", err)
	}
}
