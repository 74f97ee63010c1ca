package fsm

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm/fsmpb"
)

// BenchmarkSnapshotPersist measures how long the leader takes to persist a snapshot (the part
// raft waits for before it can compact its log) as the stored data grows: with manifest
// snapshots it should not grow with the data. Each size builds its FSM once (256-byte events, 64
// per raft entry), outside the timer. Run once per size:
//
//	go test -run '^$' -bench SnapshotPersist -benchtime=3x ./fsm/
func BenchmarkSnapshotPersist(b *testing.B) {
	for _, events := range []int{100_000, 1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("events=%d", events), func(b *testing.B) {
			if testing.Short() && events > 100_000 {
				b.Skip("large sizes are skipped in -short")
			}
			f, err := Open(Config{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			payload := make([]byte, 256)
			var logs []*raft.Log
			id := uint64(1)
			for idx := uint64(1); int(id) <= events; idx++ {
				evs := make([]*fsmpb.Event, 0, 64)
				for range 64 {
					evs = append(evs, &fsmpb.Event{Id: id16(id), Type: "Bench", Data: payload})
					id++
				}
				data, err := EncodeCommand(&fsmpb.Command{TimestampUnixNano: int64(idx), Requests: []*fsmpb.Request{
					{Kind: &fsmpb.Request_Append{Append: &fsmpb.AppendRequest{Parts: []*fsmpb.StreamAppend{{
						Stream: fmt.Sprintf("s-%d", idx%1000), Expected: &fsmpb.ExpectedRevision{Kind: fsmpb.ExpectedRevision_KIND_ANY}, Events: evs,
					}}}}},
				}})
				if err != nil {
					b.Fatal(err)
				}
				logs = append(logs, &raft.Log{Index: idx, Type: raft.LogCommand, Data: data})
				if len(logs) == 64 {
					f.ApplyBatch(logs)
					logs = logs[:0]
				}
			}
			if len(logs) > 0 {
				f.ApplyBatch(logs)
			}
			store, err := NewSnapshotStore(b.TempDir(), 1, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			stats := f.Storage()
			b.ResetTimer()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				snap, err := f.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				sink, err := store.Create(raft.SnapshotVersionMax, f.AppliedIndex(), uint64(i+1), raft.Configuration{}, 1, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := snap.Persist(sink); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/snapshot")
			b.ReportMetric(float64(stats.Bytes)/(1<<20), "data-MiB")
			b.ReportMetric(float64(stats.Segments), "segments")
		})
	}
}

func id16(n uint64) []byte {
	b := make([]byte, 16)
	b[0] = 0xBE
	for i := 0; i < 8; i++ {
		b[15-i] = byte(n >> (8 * i))
	}
	return b
}
