package load

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: latencies are recorded in microseconds from 1 µs to 60 s with 3 significant
// digits (a relative error of at most 0.1 %). Longer latencies are clamped to the top and
// counted in Clamped.
const (
	histLowestUs  = 1
	histHighestUs = 60_000_000
	histSigFigs   = 3
	// histShards spreads recording over several histograms so that hundreds of clients do not
	// contend on one lock; each shard costs about 200 KiB.
	histShards = 16
)

// Recorder collects latencies from many goroutines into an HDR histogram.
type Recorder struct {
	shards  [histShards]shard
	next    atomic.Uint32
	clamped atomic.Int64
}

type shard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	_  [40]byte // keep shards on separate cache lines
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	r := &Recorder{}
	for i := range r.shards {
		r.shards[i].h = hdrhistogram.New(histLowestUs, histHighestUs, histSigFigs)
	}
	return r
}

// Slot returns a shard index for one recording goroutine to pass to Record; goroutines that
// keep their slot spread over the shards.
func (r *Recorder) Slot() int { return int(r.next.Add(1)-1) % histShards }

// Record adds one latency d, recorded at shard slot. Values below 1 µs count as 1 µs, above 60 s
// as 60 s (counted in Clamped).
func (r *Recorder) Record(slot int, d time.Duration) {
	us := d.Microseconds()
	if us < histLowestUs {
		us = histLowestUs
	}
	if us > histHighestUs {
		us = histHighestUs
		r.clamped.Add(1)
	}
	s := &r.shards[slot%histShards]
	s.mu.Lock()
	// RecordValue fails only outside the trackable range, which the clamping above rules out.
	_ = s.h.RecordValue(us)
	s.mu.Unlock()
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	// Count is the number of recorded values.
	Count int64 `json:"count"`
	// P50 ... Max are percentiles of the recorded values, in milliseconds.
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	// Mean is the arithmetic mean, in milliseconds.
	Mean float64 `json:"mean"`
	// Clamped counts values above the histogram's 60 s ceiling, recorded as 60 s.
	Clamped int64 `json:"clamped,omitempty"`
}

// Summary merges the shards and returns the percentiles. It may be called while recording goes
// on; the result then reflects a moment during the merge.
func (r *Recorder) Summary() Latency {
	all := hdrhistogram.New(histLowestUs, histHighestUs, histSigFigs)
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		all.Merge(s.h)
		s.mu.Unlock()
	}
	return summarize(all, r.clamped.Load())
}

func summarize(h *hdrhistogram.Histogram, clamped int64) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count:   h.TotalCount(),
		P50:     ms(h.ValueAtQuantile(50)),
		P90:     ms(h.ValueAtQuantile(90)),
		P99:     ms(h.ValueAtQuantile(99)),
		P999:    ms(h.ValueAtQuantile(99.9)),
		Max:     ms(h.Max()),
		Mean:    h.Mean() / 1000,
		Clamped: clamped,
	}
}
