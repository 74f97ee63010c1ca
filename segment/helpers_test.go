package segment

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"
)

// mustOpen opens a Log in dir with a test logger (unless opts has one) and closes it at the
// end of the test if the test did not.
func mustOpen(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// genRecord returns a deterministic record for pos that exercises every field, with
// empty and non-empty variants.
func genRecord(pos, idx uint64) Record {
	r := Record{
		Index:     idx,
		Position:  pos,
		Revision:  pos / 3,
		Timestamp: int64(pos)*1_000_000_007 - 5,
		Kind:      uint8(pos % 3),
		Stream:    fmt.Sprintf("stream-%d", pos%5),
		Type:      []string{"", "created", "updated-é"}[pos%3],
	}
	binary.BigEndian.PutUint64(r.ID[:8], pos)
	binary.BigEndian.PutUint64(r.ID[8:], ^idx)
	if pos%4 != 0 {
		r.ContentType = "application/json"
	}
	if n := int(pos % 37); n > 0 {
		r.Data = bytes.Repeat([]byte{byte(pos), 0xff}, n)
	} else if pos%2 == 0 {
		r.Data = []byte{} // empty, not nil: must read back as nil
	}
	if pos%2 == 0 {
		r.Metadata = fmt.Appendf(nil, `{"p":%d}`, pos)
	}
	for i := range int(pos % 4) {
		r.Tags = append(r.Tags, fmt.Sprintf("tag-%d", i))
	}
	if pos%7 == 0 {
		r.Tags = append(r.Tags, "") // empty tag value
	}
	return r
}

// makeBatches returns batches with the given sizes, positions from startPos, and one raft
// index per batch (like one raft entry per Append) from startIdx.
func makeBatches(startPos, startIdx uint64, sizes ...int) [][]Record {
	var out [][]Record
	pos := startPos
	for b, n := range sizes {
		var batch []Record
		for range n {
			batch = append(batch, genRecord(pos, startIdx+uint64(b)))
			pos++
		}
		out = append(out, batch)
	}
	return out
}

func flatten(batches [][]Record) []Record {
	var out []Record
	for _, b := range batches {
		out = append(out, b...)
	}
	return out
}

func appendAll(t testing.TB, l *Log, batches [][]Record) {
	t.Helper()
	for i, b := range batches {
		if err := l.Append(b); err != nil {
			t.Fatalf("Append batch %d (positions %d..): %v", i, b[0].Position, err)
		}
	}
}

// norm maps empty slices to nil: the format does not distinguish them.
func norm(r Record) Record {
	if len(r.Data) == 0 {
		r.Data = nil
	}
	if len(r.Metadata) == 0 {
		r.Metadata = nil
	}
	if len(r.Tags) == 0 {
		r.Tags = nil
	}
	return r
}

func sameRecord(a, b Record) bool { return reflect.DeepEqual(norm(a), norm(b)) }

func checkRecord(t testing.TB, what string, got, want Record) {
	t.Helper()
	if !sameRecord(got, want) {
		t.Fatalf("%s: record mismatch\n got: %+v\nwant: %+v", what, got, want)
	}
}

// checkLog verifies that l holds exactly want (contiguous positions): bounds, LastIndex,
// Read of every position, and full scans both ways.
func checkLog(t testing.TB, l *Log, want []Record) {
	t.Helper()
	if err := verifyLog(l, want); err != nil {
		t.Fatal(err)
	}
}

func verifyLog(l *Log, want []Record) error {
	var first, last, lastIdx uint64
	if len(want) > 0 {
		first, last, lastIdx = want[0].Position, want[len(want)-1].Position, want[len(want)-1].Index
	}
	if l.FirstPosition() != first || l.LastPosition() != last || l.LastIndex() != lastIdx {
		return fmt.Errorf("bounds: first=%d last=%d lastIndex=%d, want %d %d %d",
			l.FirstPosition(), l.LastPosition(), l.LastIndex(), first, last, lastIdx)
	}
	for _, w := range want {
		got, err := l.Read(w.Position)
		if err != nil {
			return fmt.Errorf("Read(%d): %w", w.Position, err)
		}
		if !sameRecord(got, w) {
			return fmt.Errorf("Read(%d):\n got: %+v\nwant: %+v", w.Position, got, w)
		}
	}
	if _, err := l.Read(last + 1); !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("Read(last+1=%d) = %v, want ErrNotFound", last+1, err)
	}
	for _, dir := range []Direction{Forward, Backward} {
		from := uint64(0)
		if dir == Backward {
			from = math.MaxUint64
		}
		got, err := collect(l, from, dir)
		if err != nil {
			return fmt.Errorf("scan %v: %w", dir, err)
		}
		if len(got) != len(want) {
			return fmt.Errorf("scan %v: %d records, want %d", dir, len(got), len(want))
		}
		for i := range got {
			w := want[i]
			if dir == Backward {
				w = want[len(want)-1-i]
			}
			if !sameRecord(got[i], w) {
				return fmt.Errorf("scan %v record %d:\n got: %+v\nwant: %+v", dir, i, got[i], w)
			}
		}
	}
	return nil
}

// scanAll collects deep copies of every record an iterator yields.
func scanAll(t testing.TB, l *Log, from uint64, dir Direction) []Record {
	t.Helper()
	out, err := collect(l, from, dir)
	if err != nil {
		t.Fatalf("Scan(%d, %v): %v", from, dir, err)
	}
	return out
}

func collect(l *Log, from uint64, dir Direction) ([]Record, error) {
	it := l.Scan(from, dir)
	defer it.Close()
	var out []Record
	for it.Next() {
		out = append(out, cloneRecord(*it.Record()))
	}
	return out, it.Err()
}

func cloneRecord(r Record) Record {
	r.Data = bytes.Clone(r.Data)
	r.Metadata = bytes.Clone(r.Metadata)
	r.Tags = append([]string(nil), r.Tags...)
	return norm(r)
}

// segFiles returns the segment file paths in dir, in order.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+fileExt))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// recordingHandler is a slog.Handler that keeps messages, for asserting what was logged.
type recordingHandler struct {
	mu   *sync.Mutex
	msgs *[]string
}

func newRecordingLogger() (*slog.Logger, func() []string) {
	h := recordingHandler{mu: new(sync.Mutex), msgs: new([]string)}
	return slog.New(h), func() []string {
		h.mu.Lock()
		defer h.mu.Unlock()
		return append([]string(nil), *h.msgs...)
	}
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.msgs = append(*h.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
