package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/fsm/fsmpb"
	"github.com/cairndb/cairn/segment"
)

// Results and the exact commands are recorded in docs/benchmarks.md ("Storage engine: fsm").

// BenchmarkApplyBatch measures apply throughput: 256-byte events appended with expected ANY to
// streams drawn round-robin from a pool of 1000, one append request per raft entry, entries
// applied with ApplyBatch 64 at a time (raft's default MaxAppendEntries). b.N counts events.
// Entries are encoded outside the timer: the leader pays for that, not the FSM. The segment
// files are written without fsync, as in production (the raft log is the durable copy).
func BenchmarkApplyBatch(b *testing.B) {
	for _, perEntry := range []int{1, 64} {
		b.Run(fmt.Sprintf("events_per_entry=%d", perEntry), func(b *testing.B) { benchApply(b, perEntry) })
	}
}

func benchApply(b *testing.B, perEntry int) {
	const (
		streams      = 1000
		batchEntries = 64
		chunkBatches = 32 // batches encoded per timer stop, to keep StopTimer's cost negligible
	)
	f := mustOpen(b, b.TempDir(), func(c *Config) { c.Logger = slog.New(slog.DiscardHandler) })
	names := make([]string, streams)
	for i := range names {
		names[i] = fmt.Sprintf("stream-%04d", i)
	}
	data := bytes.Repeat([]byte{'x'}, 256)
	var (
		index  uint64
		nextID uint64 = 1
	)
	newEntry := func(events int) *raft.Log {
		evs := make([]*fsmpb.Event, events)
		for i := range evs {
			evs[i] = &fsmpb.Event{Id: id(nextID), Type: "BenchEvent", ContentType: "application/octet-stream", Data: data}
			nextID++
		}
		index++
		return entry(b, index, time.Unix(0, 0).Add(time.Duration(index)).UnixNano(),
			appendReq(part(names[index%streams], any_(), evs...)))
	}

	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for queued := 0; queued < b.N; {
		b.StopTimer()
		var batches [][]*raft.Log
		for len(batches) < chunkBatches && queued < b.N {
			var logs []*raft.Log
			for len(logs) < batchEntries && queued < b.N {
				n := min(perEntry, b.N-queued)
				logs = append(logs, newEntry(n))
				queued += n
			}
			batches = append(batches, logs)
		}
		b.StartTimer()
		for _, logs := range batches {
			out := f.ApplyBatch(logs)
			if res, ok := out[len(out)-1].([]Result); !ok || res[0].Err != nil {
				b.Fatalf("apply: %v", out[len(out)-1])
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if got := f.LastPosition(); got != uint64(b.N) {
		b.Fatalf("wrote %d events, want %d", got, b.N)
	}
}

// BenchmarkIndexMemory measures the heap of the in-memory index (stream index + dedupe window)
// built from synthetic records, without disk: it is a pure function of the records, so index.add
// is all that runs. Each iteration builds one index; run it once:
//
//	go test -run '^$' -bench IndexMemory -benchtime=1x ./fsm/
//
// Metrics: MiB is the index's heap (live heap after GC, before minus after); dedupe-MiB the part
// of it the dedupe window holds (measured by dropping the window); B/stream is MiB per stream and
// B/stream-beyond-name the same less the stream name bytes.
func BenchmarkIndexMemory(b *testing.B) {
	defaults := Config{}.withDefaults().Dedupe
	for _, tc := range []struct {
		name            string
		streams, events int
	}{
		{"streams=1M/events=1M", 1_000_000, 1_000_000},
		{"streams=1M/events=10M", 1_000_000, 10_000_000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchIndexMemory(b, tc.streams, tc.events, defaults)
			}
		})
	}
}

func benchIndexMemory(b *testing.B, streams, events int, h DedupeHorizon) {
	names := make([]string, streams)
	nameBytes := 0
	for i := range names {
		names[i] = fmt.Sprintf("stream-%07d", i)
		nameBytes += len(names[i])
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

	heapBefore := liveHeap()
	idx := newIndex(h)
	r := segment.Record{Kind: KindEvent, Type: "BenchEvent"}
	r.ID[0] = 0xCA
	for i := range events {
		// Round-robin: every stream grows one event at a time, as interleaved writers make it.
		r.Position, r.Index, r.Revision = uint64(i+1), uint64(i/64+1), uint64(i/streams)
		r.Timestamp = base + int64(i)*int64(time.Microsecond)
		r.Stream = names[i%streams]
		binary.BigEndian.PutUint64(r.ID[8:], uint64(i+1))
		idx.add(&r)
	}
	heapIndex := liveHeap()
	window := idx.dedupe.len()
	idx.dedupe = newDedupeIndex(h)
	heapNoDedupe := liveHeap()
	runtime.KeepAlive(idx)
	runtime.KeepAlive(names)

	if len(idx.streams) != streams || idx.lastPos != uint64(events) {
		b.Fatalf("index holds %d streams, last position %d; want %d, %d", len(idx.streams), idx.lastPos, streams, events)
	}
	if want := min(events, h.MaxEvents); window != want {
		b.Fatalf("dedupe window holds %d ids, want %d", window, want)
	}
	total := float64(heapIndex - heapBefore)
	dedupe := float64(heapIndex - heapNoDedupe)
	b.ReportMetric(total/(1<<20), "MiB")
	b.ReportMetric(dedupe/(1<<20), "dedupe-MiB")
	b.ReportMetric(float64(window), "dedupe-ids")
	b.ReportMetric(total/float64(streams), "B/stream")
	b.ReportMetric((total-float64(nameBytes))/float64(streams), "B/stream-beyond-name")
	b.ReportMetric((total-dedupe-float64(nameBytes))/float64(streams), "B/stream-beyond-name-excl-dedupe")
}

// liveHeap returns the live heap in bytes after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkReadAllHidden measures what hiding costs a $all reader: ReadAll pages of 32 records
// with the Hidden predicate applied to each, over 64 Ki events in 1000 streams, without any
// lifecycle state ("none"), and with metadata (max_count 10) on every tenth stream ("10pct"),
// which makes the predicate take the read lock and look the stream up per record. b.N counts
// records read; compare ns/op between the cases.
//
//	go test -run '^$' -bench ReadAllHidden -benchmem ./fsm/
func BenchmarkReadAllHidden(b *testing.B) {
	for _, withMeta := range []bool{false, true} {
		name := "none"
		if withMeta {
			name = "10pct"
		}
		b.Run("metadata="+name, func(b *testing.B) {
			f := mustOpen(b, b.TempDir(), func(c *Config) { c.Logger = slog.New(slog.DiscardHandler) })
			const events, streams = 1 << 16, 1000
			var logs []*raft.Log
			idx := uint64(0)
			for i := 0; i < events; i += 64 {
				var parts []*fsmpb.StreamAppend
				for j := range 64 {
					n := uint64(i + j + 1)
					parts = append(parts, part(fmt.Sprintf("s-%d", (i+j)%streams), any_(), ev(n)))
				}
				for _, p := range parts { // one request per event: streams repeat within 64
					idx++
					logs = append(logs, entry(b, idx, int64(idx), appendReq(p)))
				}
			}
			if withMeta {
				for s := 0; s < streams; s += 10 {
					idx++
					logs = append(logs, entry(b, idx, int64(idx), setMetaReq(fmt.Sprintf("s-%d", s), any_(),
						&fsmpb.StreamMetadata{MaxCount: proto.Uint64(10)})))
				}
			}
			for len(logs) > 0 {
				n := min(64, len(logs))
				f.ApplyBatch(logs[:n])
				logs = logs[n:]
			}
			last := f.LastPosition()
			b.ResetTimer()
			from, hiddenCount := uint64(1), 0
			for read := 0; read < b.N; {
				page, err := f.ReadAll(from, Forward, 32)
				if err != nil {
					b.Fatal(err)
				}
				hidden := f.Hidden(0)
				for i := range page {
					if hidden(&page[i]) {
						hiddenCount++
					}
				}
				read += len(page)
				from += uint64(len(page))
				if from > last {
					from = 1
				}
			}
			b.ReportMetric(float64(hiddenCount)/float64(b.N), "hidden/record")
		})
	}
}
