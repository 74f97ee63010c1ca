package segment

import "testing"

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
