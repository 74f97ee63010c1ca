package systemtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/localcluster"
)

// Cluster benchmarks: 3 cairnd processes on loopback, durable (every append acknowledged only
// after its raft entry is fsynced on a quorum). Run with
//
//	go test -run '^$' -bench . -benchtime 5s ./systemtest/
//
// and record the results in docs/benchmarks.md.

func benchCluster(b *testing.B) (*localcluster.Cluster, *localcluster.Node) {
	b.Helper()
	c := mustStartCluster(b, 3, "--log-level", "warn")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return c, leader
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// BenchmarkAppend measures single-event 256-byte appends sent to the leader by C concurrent
// clients, each to its own stream.
func BenchmarkAppend(b *testing.B) {
	for _, clients := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			_, leader := benchCluster(b)
			events := leader.Events()
			var (
				next    atomic.Int64
				mu      sync.Mutex
				lat     = make([]time.Duration, 0, b.N)
				failed  atomic.Int64
				wg      sync.WaitGroup
				ctx     = context.Background()
				payload = make([]byte, 256)
			)
			b.ResetTimer()
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					stream := fmt.Sprintf("bench-%d", i)
					local := make([]time.Duration, 0, b.N/clients+1)
					for next.Add(1) <= int64(b.N) {
						start := time.Now()
						_, err := events.Append(ctx, &cairnpb.AppendRequest{Stream: stream, Expected: anyRev(),
							Events: []*cairnpb.EventData{{Id: newUUID(), Type: "Bench", Data: payload}}})
						if err != nil {
							failed.Add(1)
							continue
						}
						local = append(local, time.Since(start))
					}
					mu.Lock()
					lat = append(lat, local...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			b.StopTimer()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d appends failed", f)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "appends/s")
			b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkRead measures reads of one event with 16 concurrent clients: LINEARIZABLE on the
// leader (one quorum round per batch of concurrent reads) and STALE on a follower.
func BenchmarkRead(b *testing.B) {
	for _, mode := range []string{"linearizable", "stale"} {
		b.Run(mode, func(b *testing.B) {
			c, leader := benchCluster(b)
			ctx := context.Background()
			resp, err := leader.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "r", Expected: anyRev(),
				Events: []*cairnpb.EventData{event(newUUID())}})
			if err != nil {
				b.Fatal(err)
			}
			target, opts := leader, &cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_LINEARIZABLE}
			if mode == "stale" {
				for _, n := range c.Nodes {
					if n != leader {
						target = n
					}
				}
				opts = stale(resp.GetLogIndex())
			}
			events := target.Events()
			var next, failed atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						r, err := events.Read(ctx, &cairnpb.ReadRequest{Stream: "r", Limit: 1, Options: opts})
						if err != nil || len(r.GetEvents()) != 1 {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d reads failed", f)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}
