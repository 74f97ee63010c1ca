//go:build unix

package client_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/testcluster"
)

// BenchmarkSubscribers measures subscriptions under load on an in-process three-node cluster
// (real raft, gRPC on loopback): appends from 16 writers for a fixed window without
// subscribers, then the same with N subscribers to $all on one follower (N = 10 and 100). It
// reports the append rate of both windows and its loss, the events delivered per second over
// all subscribers, and the delivery latency (commit timestamp on the leader to receipt by the
// subscriber, so it includes replication to the follower). Run it once:
//
//	go test -run '^$' -bench BenchmarkSubscribers -benchtime 1x ./client/
func BenchmarkSubscribers(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) { benchSubscribers(b, n) })
	}
}

func benchSubscribers(b *testing.B, subscribers int) {
	const (
		writers = 16
		window  = 5 * time.Second
	)
	for range b.N {
		tc := testcluster.New(b, 3)
		leader := tc.WaitLeader(b)
		follower := tc.Followers(leader)[0]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		wc, err := client.New(tc.Addrs())
		if err != nil {
			b.Fatal(err)
		}
		// appendFor runs the writers for d and returns the number of acknowledged appends and
		// the last position written.
		appendFor := func(d time.Duration) (int64, uint64) {
			var n atomic.Int64
			var last atomic.Uint64
			wctx, wcancel := context.WithTimeout(ctx, d)
			defer wcancel()
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					data := []byte(fmt.Sprintf(`{"writer":%d,"payload":"%0100d"}`, w, 0))
					for wctx.Err() == nil {
						res, err := wc.Append(wctx, fmt.Sprintf("bench-%d", w), client.Any(),
							[]client.EventData{{Type: "Bench", ContentType: "application/json", Data: data}})
						if err != nil {
							continue
						}
						n.Add(1)
						for {
							cur := last.Load()
							if res.LastPosition <= cur || last.CompareAndSwap(cur, res.LastPosition) {
								break
							}
						}
					}
				}()
			}
			wg.Wait()
			return n.Load(), last.Load()
		}
		appendFor(time.Second) // warm up
		cpu0 := cpuTime(b)
		base, _ := appendFor(window)
		cpuBase := cpuTime(b) - cpu0

		// The subscribers on the follower, over 4 client connections.
		type subStats struct {
			events atomic.Int64
			last   atomic.Uint64
			lat    []time.Duration
		}
		stats := make([]*subStats, subscribers)
		caughtUp := make(chan struct{}, subscribers)
		var clients []*client.Client
		for range 4 {
			c, err := client.New([]string{follower.Addr})
			if err != nil {
				b.Fatal(err)
			}
			clients = append(clients, c)
		}
		sctx, scancel := context.WithCancel(ctx)
		var swg sync.WaitGroup
		for i := range subscribers {
			st := &subStats{}
			stats[i] = st
			sub, err := clients[i%len(clients)].Subscribe(sctx, client.SubscribeOptions{FromEnd: true,
				Consistency: client.Stale, Address: follower.Addr})
			if err != nil {
				b.Fatal(err)
			}
			swg.Add(1)
			go func() {
				defer swg.Done()
				defer sub.Close()
				for {
					m, err := sub.Next()
					if err != nil {
						return
					}
					switch m.Kind {
					case client.MessageEvent:
						st.lat = append(st.lat, time.Since(m.Event.CommitTime))
						st.events.Add(1)
						st.last.Store(m.Position)
					case client.MessageCaughtUp:
						select {
						case caughtUp <- struct{}{}:
						default:
						}
					}
				}
			}()
		}
		for range subscribers {
			<-caughtUp
		}
		start := time.Now()
		cpu1 := cpuTime(b)
		with, last := appendFor(window)
		// Wait (bounded) until every subscriber has the last event, then stop them.
		deadline := time.Now().Add(30 * time.Second)
		for _, st := range stats {
			for st.last.Load() < last && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond) // polling a counter at the end of a benchmark
			}
		}
		elapsed := time.Since(start)
		cpuWith := cpuTime(b) - cpu1
		scancel()
		swg.Wait()
		var delivered int64
		var lat []time.Duration
		behind := 0
		for _, st := range stats {
			delivered += st.events.Load()
			lat = append(lat, st.lat...)
			if st.last.Load() < last {
				behind++
			}
		}
		slices.Sort(lat)
		pct := func(p float64) time.Duration {
			if len(lat) == 0 {
				return 0
			}
			return lat[min(len(lat)-1, int(float64(len(lat))*p))]
		}
		baseRate := float64(base) / window.Seconds()
		withRate := float64(with) / window.Seconds()
		b.ReportMetric(baseRate, "appends/s-alone")
		b.ReportMetric(withRate, "appends/s-with-subs")
		b.ReportMetric(100*(baseRate-withRate)/baseRate, "%append-loss")
		b.ReportMetric(float64(delivered)/elapsed.Seconds(), "delivered/s")
		b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "ms-p50")
		b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "ms-p99")
		b.ReportMetric(float64(behind), "subs-behind")
		// CPU of the whole process (three nodes, writers, subscribers): per append alone, and
		// per delivered event once the appends' own share is taken out.
		perAppend := float64(cpuBase.Microseconds()) / float64(max(base, 1))
		b.ReportMetric(perAppend, "cpu-us/append")
		b.ReportMetric((float64(cpuWith.Microseconds())-perAppend*float64(with))/float64(max(delivered, 1)), "cpu-us/delivery")
		b.ReportMetric(cpuWith.Seconds()/elapsed.Seconds(), "cores-used-with-subs")
		for _, c := range clients {
			_ = c.Close()
		}
		_ = wc.Close()
		cancel()
		stopAll(tc)
	}
}

// cpuTime returns the user+system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stopAll kills every node now, so that consecutive benchmark iterations do not overlap.
func stopAll(tc *testcluster.Cluster) {
	for _, n := range tc.Nodes {
		n.Kill()
	}
}
