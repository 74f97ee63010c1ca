package fsm

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm/fsmpb"
)

// BenchmarkReclaimHalfTombstoned measures space reclaim on the data set of the issue: streams
// streams of events of 1 KiB, half of them tombstoned, then one compaction. It reports the
// segment bytes before and after the reclaim pass and the time from applying the compaction until
// the pass finished, and the append rate (20 events of 1 KiB per apply) before and during the
// pass: the pass runs in the background and appends go on meanwhile, on the same 2 cores.
//
//	go test -run '^$' -bench BenchmarkReclaimHalfTombstoned -benchtime 1x ./fsm/
func BenchmarkReclaimHalfTombstoned(b *testing.B) {
	const streams, perStream, perEntry = 1000, 100, 20
	for range b.N {
		b.StopTimer()
		f := mustOpen(b, b.TempDir(), func(c *Config) { c.Segment.MaxSegmentBytes = 8 << 20 })
		var idx, n uint64
		data := bytes.Repeat([]byte{0x5a}, 1024)
		batch := make([]*raft.Log, 0, 64)
		flush := func() {
			if len(batch) > 0 {
				f.ApplyBatch(batch)
				batch = batch[:0]
			}
		}
		add := func(reqs ...*fsmpb.Request) {
			idx++
			batch = append(batch, entry(b, idx, int64(idx)*1000, reqs...))
			if len(batch) == cap(batch) {
				flush()
			}
		}
		for round := 0; round < perStream/perEntry; round++ {
			for s := range streams {
				evs := make([]*fsmpb.Event, perEntry)
				for i := range evs {
					n++
					evs[i] = &fsmpb.Event{Id: id(n), Type: "Filled", ContentType: "application/octet-stream", Data: data}
				}
				add(appendReq(part(fmt.Sprintf("stream-%d", s), any_(), evs...)))
			}
		}
		for s := 0; s < streams; s += 2 {
			add(tombstoneReq(fmt.Sprintf("stream-%d", s), any_()))
		}
		flush()
		// Appends of the live half, one entry of 20 events per apply batch, as a baseline.
		live := func() {
			evs := make([]*fsmpb.Event, perEntry)
			for i := range evs {
				n++
				evs[i] = &fsmpb.Event{Id: id(n), Type: "Filled", ContentType: "application/octet-stream", Data: data}
			}
			add(appendReq(part(fmt.Sprintf("stream-%d", 1+2*(n%(streams/2))), any_(), evs...)))
			flush()
		}
		t0 := time.Now()
		for range 200 {
			live()
		}
		baseline := 200 * perEntry / time.Since(t0).Seconds()
		before := f.Storage()
		b.StartTimer()
		start := time.Now()
		add(compactReq())
		flush()
		compactIdx := idx
		// Appends go on while the background pass rewrites the sealed segments.
		during, t1 := 0, time.Now()
		for f.ReclaimStatus().CoveredIndex < compactIdx && during < 100_000 {
			live()
			during++
		}
		duringRate := float64(during*perEntry) / time.Since(t1).Seconds()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		st, err := f.WaitReclaimed(ctx, compactIdx)
		cancel()
		took := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(baseline, "events/s_appended_before")
		b.ReportMetric(duringRate, "events/s_appended_during_reclaim")
		// Appends during the pass add bytes; what is left of the data set is before - reclaimed.
		b.ReportMetric(float64(before.Bytes)/(1<<20), "MiB_before")
		b.ReportMetric(float64(before.Bytes-st.Covering.BytesReclaimed())/(1<<20), "MiB_after")
		b.ReportMetric(float64(st.Covering.BytesReclaimed())/(1<<20), "MiB_reclaimed")
		b.ReportMetric(float64(st.Covering.SegmentsRewritten), "segments_rewritten")
		b.ReportMetric(float64(before.Segments), "segments")
		b.ReportMetric(took.Seconds()*1000, "ms_compact+reclaim")
		b.ReportMetric(float64(st.Covering.BytesBefore)/(1<<20)/st.Covering.Duration.Seconds(), "MiB/s_rewritten")
		f.Close()
	}
}
