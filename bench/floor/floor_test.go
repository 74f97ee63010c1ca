package floor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// BenchmarkFdatasync4K appends 4 KiB to a file and fdatasyncs it, once per op: the disk's floor.
func BenchmarkFdatasync4K(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "f"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close() //nolint:errcheck // benchmark scratch file
	buf := make([]byte, 4096)
	b.ResetTimer()
	for range b.N {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBoltStoreLogs commits raft log entries of 300 bytes (a one-event append command)
// through raft-boltdb/v2, the product's raft log store, `entries` per commit as raft's leader
// loop and followers do. One op is one commit; the metric entries/s shows what group commit buys.
func BenchmarkBoltStoreLogs(b *testing.B) {
	for _, entries := range []int{1, 16, 256} {
		for _, noFreelistSync := range []bool{false, true} {
			name := map[int]string{1: "entries=1", 16: "entries=16", 256: "entries=256"}[entries]
			if noFreelistSync {
				name += "/NoFreelistSync"
			}
			b.Run(name, func(b *testing.B) { benchStoreLogs(b, entries, noFreelistSync) })
		}
	}
}

func benchStoreLogs(b *testing.B, entries int, noFreelistSync bool) {
	{
		{
			opts := raftboltdb.Options{Path: filepath.Join(b.TempDir(), "raft.db")}
			if noFreelistSync {
				opts.BoltOptions = &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
			}
			s, err := raftboltdb.New(opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close() //nolint:errcheck // benchmark scratch store
			logs := make([]*raft.Log, entries)
			data := make([]byte, 300)
			next := uint64(1)
			b.ResetTimer()
			for range b.N {
				for i := range logs {
					logs[i] = &raft.Log{Index: next, Term: 1, Type: raft.LogCommand, Data: data}
					next++
				}
				if err := s.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*entries)/b.Elapsed().Seconds(), "entries/s")
		}
	}
}
