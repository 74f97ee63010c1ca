package systemtest

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/api/cairnpb"
)

// BenchmarkCatchUp measures how fast a new node joining a loaded cluster catches up: the leader
// holds N events (CAIRN_CATCHUP_EVENTS, default 1 000 000, 256 bytes each, written 64 per
// append by 64 clients), snapshots, and a fourth node joins with --join; the time runs from its
// start until its applied index reaches the leader's commit index (snapshot install, then the
// log). Reported as MB/s of segment data. Run once:
//
//	CAIRN_CATCHUP_EVENTS=1000000 go test -run '^$' -bench CatchUp -benchtime 1x ./systemtest/
func BenchmarkCatchUp(b *testing.B) {
	events := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("CAIRN_CATCHUP_EVENTS")); err == nil && v > 0 {
		events = v
	}
	c := mustStartCluster(b, 3, "--log-level", "warn")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	const clients, perAppend = 64, 64
	var next atomic.Int64
	var wg sync.WaitGroup
	payload := make([]byte, 256)
	loadStart := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(perAppend) <= int64(events) {
				evs := make([]*cairnpb.EventData, perAppend)
				for j := range evs {
					evs[j] = &cairnpb.EventData{Id: newUUID(), Type: "Load", Data: payload}
				}
				if _, err := leader.Events().Append(ctx, &cairnpb.AppendRequest{Stream: fmt.Sprintf("load-%d", i),
					Expected: anyRev(), Events: evs}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.Logf("loaded %d events in %v", events, time.Since(loadStart))
	if _, err := leader.Cluster().Snapshot(ctx, &cairnpb.SnapshotRequest{}); err != nil {
		b.Logf("snapshot: %v", err)
	}
	st, err := leader.Status(ctx)
	if err != nil {
		b.Fatal(err)
	}
	target := st.GetCommitIndex()
	var bytes int64
	filepath.WalkDir(filepath.Join(leader.DataDir, "fsm"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(d.Name()) == ".seg" {
			if info, err := d.Info(); err == nil {
				bytes += info.Size()
			}
		}
		return nil
	})

	b.ResetTimer()
	start := time.Now()
	n4, err := c.AddNode("--log-level", "warn")
	if err != nil {
		b.Fatal(err)
	}
	for {
		s, err := n4.Status(ctx)
		if err == nil && s.GetAppliedIndex() >= target {
			break
		}
		if ctx.Err() != nil {
			b.Fatalf("new node did not catch up: %v", ctx.Err())
		}
		time.Sleep(50 * time.Millisecond) // polling the new node's progress, bounded by ctx
	}
	took := time.Since(start)
	b.StopTimer()
	b.ReportMetric(took.Seconds(), "catchup-s")
	b.ReportMetric(float64(bytes)/(1<<20), "data-MiB")
	b.ReportMetric(float64(bytes)/(1<<20)/took.Seconds(), "MiB/s")
}
