package segment

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// benchEvent returns a realistic event with a payload of size bytes: one of 100 streams,
// one of 4 types, JSON content type, a small metadata blob and one tag.
func benchEvent(pos uint64, size int) Record {
	r := Record{
		Index:       pos,
		Position:    pos,
		Revision:    pos / 100,
		Timestamp:   1_700_000_000_000_000_000 + int64(pos),
		Kind:        1,
		Stream:      fmt.Sprintf("order-%04d", pos%100),
		Type:        []string{"OrderPlaced", "OrderPaid", "OrderShipped", "OrderClosed"}[pos%4],
		ContentType: "application/json",
		Data:        make([]byte, size),
		Metadata:    []byte(`{"corr":"abc"}`),
		Tags:        []string{"region-eu"},
	}
	for i := range r.Data {
		r.Data[i] = byte('a' + (i+int(pos))%26)
	}
	r.ID[0], r.ID[1] = byte(pos), byte(pos>>8)
	return r
}

func benchBatch(size, n int) []Record {
	batch := make([]Record, n)
	for i := range batch {
		batch[i] = benchEvent(uint64(i+1), size)
	}
	return batch
}

func encodeBatch(b *testing.B, batch []Record) []byte {
	var buf []byte
	for i := range batch {
		var err error
		if buf, err = AppendEncoded(buf, &batch[i]); err != nil {
			b.Fatal(err)
		}
	}
	return buf
}

// BenchmarkAppend measures Append (encode + CRC + one write per batch, no fsync except
// the one at each 64 MiB roll) against a raw write of the same encoded bytes ("raw") and
// against a raw write with the same roll policy ("raw+roll").
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{256, 4096} {
		for _, n := range []int{1, 64} {
			b.Run(fmt.Sprintf("event=%dB/batch=%d/segment", size, n), func(b *testing.B) {
				l, err := Open(b.TempDir(), Options{Logger: discard()})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				batch := benchBatch(size, n)
				b.SetBytes(int64(len(encodeBatch(b, batch))))
				b.ReportAllocs()
				pos := uint64(1)
				b.ResetTimer()
				for range b.N {
					for i := range batch {
						batch[i].Position, batch[i].Index = pos, pos
						pos++
					}
					if err := l.Append(batch); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("event=%dB/batch=%d/raw", size, n), func(b *testing.B) {
				benchRaw(b, encodeBatch(b, benchBatch(size, n)), false)
			})
			b.Run(fmt.Sprintf("event=%dB/batch=%d/raw+roll", size, n), func(b *testing.B) {
				benchRaw(b, encodeBatch(b, benchBatch(size, n)), true)
			})
		}
	}
}

// benchRaw writes enc repeatedly to a plain file with one write call each. With roll it
// also does what the Log does every 64 MiB (fsync the file, create the next one, fsync the
// directory), which separates the cost of the roll policy from the cost of the code.
func benchRaw(b *testing.B, enc []byte, roll bool) {
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "raw-0"))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { f.Close() }()
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	b.ResetTimer()
	var size int64
	files := 0
	for range b.N {
		if roll && size+int64(len(enc)) > DefaultMaxSegmentBytes {
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			f.Close()
			files++
			if f, err = os.Create(filepath.Join(dir, fmt.Sprintf("raw-%d", files))); err != nil {
				b.Fatal(err)
			}
			if err := syncDir(dir); err != nil {
				b.Fatal(err)
			}
			size = 0
		}
		if _, err := f.Write(enc); err != nil {
			b.Fatal(err)
		}
		size += int64(len(enc))
	}
}

// benchLog builds a closed-and-reopened log of about total bytes of size-byte events.
func benchLog(b *testing.B, size int, total int64) (*Log, int64, uint64) {
	b.Helper()
	dir := b.TempDir()
	l, err := Open(dir, Options{Logger: discard()})
	if err != nil {
		b.Fatal(err)
	}
	batch := benchBatch(size, 64)
	per := int64(len(encodeBatch(b, batch)))
	pos := uint64(1)
	for written := int64(0); written < total; written += per {
		for i := range batch {
			batch[i].Position, batch[i].Index = pos, pos
			pos++
		}
		if err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if l, err = Open(dir, Options{Logger: discard()}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	var bytes int64
	for _, s := range l.segs {
		bytes += s.size - fileHeaderSize
	}
	return l, bytes, pos - 1
}

// BenchmarkScanForward measures a full forward scan of ~128 MiB from the page cache.
func BenchmarkScanForward(b *testing.B) {
	for _, size := range []int{256, 4096} {
		b.Run(fmt.Sprintf("event=%dB", size), func(b *testing.B) {
			l, bytes, n := benchLog(b, size, 128<<20)
			b.SetBytes(bytes)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				it := l.Scan(0, Forward)
				var got uint64
				for it.Next() {
					got++
				}
				if it.Err() != nil || got != n {
					b.Fatalf("scanned %d of %d: %v", got, n, it.Err())
				}
				it.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(uint64(b.N)*n), "ns/record")
		})
	}
}

// BenchmarkReadRandom measures Read at uniformly random positions from the page cache.
func BenchmarkReadRandom(b *testing.B) {
	for _, size := range []int{256, 4096} {
		b.Run(fmt.Sprintf("event=%dB", size), func(b *testing.B) {
			l, _, n := benchLog(b, size, 128<<20)
			rng := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := l.Read(1 + rng.Uint64N(n)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
