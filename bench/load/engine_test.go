package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fake is an in-memory system: appends succeed (or fail every failEvery-th call) after
// serviceTime, and it records what it was asked.
type fake struct {
	serviceTime time.Duration
	failEvery   int64
	// stall is the extra service time of the first append.
	stall time.Duration

	calls, failed, inFlight, maxInFlight atomic.Int64
	stalled                              atomic.Bool
	mu                                   sync.Mutex
	perStream                            map[string]int64
	filled                               map[string]int
	prepared, connects                   int
}

var errFake = errors.New("fake append failure")

func newFake() *fake { return &fake{perStream: map[string]int64{}, filled: map[string]int{}} }

func (f *fake) Prepare(context.Context) error { f.prepared++; return nil }
func (f *fake) Connect(context.Context) (Conn, error) {
	f.mu.Lock()
	f.connects++
	f.mu.Unlock()
	return f, nil
}
func (f *fake) Close() error { return nil }

func (f *fake) Append(ctx context.Context, stream string, _ []byte) error {
	n := f.calls.Add(1)
	cur := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxInFlight.Load()
		if cur <= m || f.maxInFlight.CompareAndSwap(m, cur) {
			break
		}
	}
	d := f.serviceTime
	if f.stall > 0 && f.stalled.CompareAndSwap(false, true) {
		d += f.stall
	}
	if d > 0 {
		time.Sleep(d) // simulated service time of the system, not a wait for a condition
	}
	if f.failEvery > 0 && n%f.failEvery == 0 {
		f.failed.Add(1)
		return errFake
	}
	f.mu.Lock()
	f.perStream[stream]++
	f.mu.Unlock()
	return ctx.Err()
}

func (f *fake) Fill(_ context.Context, stream string, n int, _ []byte) error {
	f.mu.Lock()
	f.filled[stream] += n
	f.mu.Unlock()
	return nil
}

// ReadBack delivers pages of 1000 of what was filled.
func (f *fake) ReadBack(_ context.Context, stream string, n int, page func(int)) error {
	f.mu.Lock()
	have := f.filled[stream]
	f.mu.Unlock()
	for got := 0; got < n; {
		k := min(1000, n-got, have-got)
		if k <= 0 {
			return errors.New("stream ended")
		}
		got += k
		page(k)
	}
	return nil
}

func (f *fake) CatchUp(ctx context.Context, stream string, n int, got func(int)) error {
	return f.ReadBack(ctx, stream, n, got)
}

func (f *fake) stored() (total int64, streams int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.perStream {
		total += v
	}
	return total, len(f.perStream)
}

func TestRecorderPercentiles(t *testing.T) {
	r := NewRecorder()
	// 1..10,000 µs, one each, spread over shards as many goroutines would.
	for i := 1; i <= 10_000; i++ {
		r.Record(i, time.Duration(i)*time.Microsecond)
	}
	r.Record(0, 2*time.Minute) // above the ceiling: clamped
	s := r.Summary()
	if s.Count != 10_001 || s.Clamped != 1 {
		t.Fatalf("count %d clamped %d, want 10001 and 1", s.Count, s.Clamped)
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want)/want > 0.002 { // 3 significant digits plus rank rounding
			t.Errorf("%s = %.4f ms, want %.4f ms ±0.2%%", name, got, want)
		}
	}
	near("p50", s.P50, 5.0)
	near("p90", s.P90, 9.0)
	near("p99", s.P99, 9.9)
	near("p99.9", s.P999, 9.99)
	near("max", s.Max, 60_000)
	if NewRecorder().Summary() != (Latency{}) {
		t.Errorf("empty recorder summary = %+v, want zero", NewRecorder().Summary())
	}
}

func TestRecorderSubMicrosecond(t *testing.T) {
	r := NewRecorder()
	r.Record(3, 10*time.Nanosecond)
	if s := r.Summary(); s.Count != 1 || s.P50 != 0.001 {
		t.Fatalf("sub-µs latency summary %+v, want one value of 0.001 ms", s)
	}
}

func TestClosedLoopAccounting(t *testing.T) {
	f := newFake()
	f.serviceTime = 200 * time.Microsecond
	f.failEvery = 10
	res, err := Run(context.Background(), f, Config{Mode: Closed, Clients: 8, Conns: 3, Duration: 200 * time.Millisecond, Prefix: "t"})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Median
	stored, streams := f.stored()
	if m.Events != stored || m.Events+m.Errors != f.calls.Load() || m.Errors != f.failed.Load() {
		t.Fatalf("events %d errors %d; fake: %d stored, %d calls, %d failed", m.Events, m.Errors, stored, f.calls.Load(), f.failed.Load())
	}
	if m.Latency.Count != m.Events {
		t.Errorf("latency count %d, want one per acknowledged append (%d)", m.Latency.Count, m.Events)
	}
	if m.FirstError != errFake.Error() {
		t.Errorf("first error %q, want %q", m.FirstError, errFake)
	}
	if streams != 8 {
		t.Errorf("%d streams written, want one per client (8)", streams)
	}
	if f.connects != 3 || res.Conns != 3 || f.prepared != 1 {
		t.Errorf("connects %d (result says %d), prepared %d; want 3, 3, 1", f.connects, res.Conns, f.prepared)
	}
	if m.Seconds < 0.2 || math.Abs(m.EventsPerSec-float64(m.Events)/m.Seconds) > 1e-6 {
		t.Errorf("seconds %.3f, events/s %.1f for %d events", m.Seconds, m.EventsPerSec, m.Events)
	}
	if m.Latency.P50 < 0.2 {
		t.Errorf("p50 %.3f ms below the 0.2 ms service time", m.Latency.P50)
	}
}

func TestClosedLoopHotStream(t *testing.T) {
	f := newFake()
	if _, err := Run(context.Background(), f, Config{Mode: Closed, Clients: 4, HotStream: true, Duration: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, streams := f.stored(); streams != 1 {
		t.Fatalf("%d streams written with a hot stream, want 1", streams)
	}
}

func TestPipelinedKeepsWindowInFlight(t *testing.T) {
	f := newFake()
	f.serviceTime = 2 * time.Millisecond
	res, err := Run(context.Background(), f, Config{Mode: Pipelined, Window: 32, Clients: 99, Conns: 5, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.maxInFlight.Load(); got != 32 {
		t.Errorf("at most %d appends in flight, want the window, 32", got)
	}
	if _, streams := f.stored(); streams != 1 || f.connects != 1 {
		t.Errorf("%d streams over %d connections, want 1 and 1", streams, f.connects)
	}
	if res.Window != 32 || res.Clients != 1 || res.Conns != 1 {
		t.Errorf("result window %d clients %d conns %d, want 32, 1, 1", res.Window, res.Clients, res.Conns)
	}
}

// An open loop measures from the intended start: a stall of the system shows up in the
// latency of every append scheduled during it, not only the one that stalled.
func TestOpenLoopNoCoordinatedOmission(t *testing.T) {
	f := newFake()
	f.stall = 200 * time.Millisecond
	res, err := Run(context.Background(), f, Config{Mode: Open, Rate: 1000, Clients: 1, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Median
	if m.Events != 300 || m.Missed != 0 || m.Errors != 0 {
		t.Fatalf("events %d missed %d errors %d, want the 300 scheduled, 0, 0", m.Events, m.Missed, m.Errors)
	}
	// About 200 of the 300 appends were scheduled during the 200 ms stall of the first one;
	// waiting counts, so their latencies spread from 200 ms down to 0 and the p50 is tens of
	// milliseconds (measured from the actual start, only the first append would be slow and
	// the p50 would be the fake's ~0 service time).
	if m.Latency.Max < 195 || m.Latency.P50 < 20 {
		t.Errorf("max %.1f ms p50 %.2f ms: the stall is not in the latencies", m.Latency.Max, m.Latency.P50)
	}
}

func TestOpenLoopNeedsRate(t *testing.T) {
	_, err := Run(context.Background(), newFake(), Config{Mode: Open})
	if !errors.Is(err, ErrBadConfig) {
		t.Fatalf("err %v, want ErrBadConfig", err)
	}
}

func TestReadAndSubscribe(t *testing.T) {
	for _, mode := range []Mode{Read, Subscribe} {
		f := newFake()
		res, err := Run(context.Background(), f, Config{Mode: mode, Events: 5500, Runs: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Runs) != 2 || res.Median.Events != 5500 || len(f.filled) != 2 {
			t.Fatalf("%s: %d runs, %d events, %d streams filled; want 2, 5500, 2", mode, len(res.Runs), res.Median.Events, len(f.filled))
		}
		wantPages := int64(6)
		if mode == Subscribe {
			wantPages = 0 // a catch-up has no per-page latency
		}
		if res.Median.Latency.Count != wantPages {
			t.Errorf("%s: %d latency values, want %d", mode, res.Median.Latency.Count, wantPages)
		}
	}
}

// short is a fake whose streams hold fewer events than were filled.
type short struct{ *fake }

func (s short) Fill(ctx context.Context, stream string, n int, data []byte) error {
	return s.fake.Fill(ctx, stream, n-1, data)
}
func (s short) Connect(context.Context) (Conn, error) { return s, nil }

func TestReadBackShortFails(t *testing.T) {
	_, err := Run(context.Background(), short{newFake()}, Config{Mode: Read, Events: 10})
	if err == nil || !strings.Contains(err.Error(), "after 9 of 10 events") {
		t.Fatalf("err %v, want a read that stopped after 9 of 10 events", err)
	}
}

func TestEveryAppendFailingFailsTheRun(t *testing.T) {
	f := newFake()
	f.failEvery = 1
	_, err := Run(context.Background(), f, Config{Mode: Closed, Duration: 20 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), errFake.Error()) {
		t.Fatalf("err %v, want a failed run naming the append error", err)
	}
}

func TestMedian(t *testing.T) {
	runs := []RunResult{
		{EventsPerSec: 300, Events: 3, Latency: Latency{P50: 3, P99: 30, Max: 100}},
		{EventsPerSec: 100, Events: 1, Latency: Latency{P50: 1, P99: 90, Max: 50}, FirstError: "x"},
		{EventsPerSec: 200, Events: 2, Latency: Latency{P50: 2, P99: 10, Max: 70}},
	}
	m := median(runs)
	if m.EventsPerSec != 200 || m.Events != 2 || m.Latency.P50 != 2 || m.Latency.P99 != 30 || m.Latency.Max != 100 || m.FirstError != "x" {
		t.Fatalf("median %+v", m)
	}
	if m := median(runs[:2]); m.EventsPerSec != 200 {
		t.Fatalf("median of two = %v, want their mean 200", m.EventsPerSec)
	}
}

func TestWarmupIsDiscarded(t *testing.T) {
	f := newFake()
	res, err := Run(context.Background(), f, Config{Mode: Closed, Duration: 30 * time.Millisecond, Warmup: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 1 || res.Median.Events >= f.calls.Load() {
		t.Fatalf("%d runs with %d events of %d calls: the warm-up is not discarded", len(res.Runs), res.Median.Events, f.calls.Load())
	}
}

// The JSON field names are an interface: run.sh and Table read them.
func TestJSONShape(t *testing.T) {
	var out, errOut bytes.Buffer
	reg := Registry{"fake": func(DriverConfig) (Driver, error) { return newFake(), nil }}
	code := Main(context.Background(), []string{"--system", "fake", "--label", "fake-x", "--clients", "2", "--duration", "20ms", "--json"}, &out, &errOut, reg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"system", "mode", "clients", "conns", "event_bytes", "hot_stream", "median", "runs"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out.String())
		}
	}
	if m["system"] != "fake-x" || m["mode"] != "closed" {
		t.Errorf("system %v mode %v, want fake-x closed", m["system"], m["mode"])
	}
	med := m["median"].(map[string]any)
	for _, k := range []string{"seconds", "events", "errors", "events_per_sec", "latency_ms"} {
		if _, ok := med[k]; !ok {
			t.Errorf("median lacks %q", k)
		}
	}
	lat := med["latency_ms"].(map[string]any)
	for _, k := range []string{"count", "p50", "p90", "p99", "p99_9", "max", "mean"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency lacks %q", k)
		}
	}
	if _, err := DecodeResult(bytes.NewReader(out.Bytes())); err != nil {
		t.Errorf("DecodeResult of --json output: %v", err)
	}
}

func TestMainUsageErrors(t *testing.T) {
	reg := Registry{"fake": func(DriverConfig) (Driver, error) { return newFake(), nil }}
	for _, args := range [][]string{
		{"--system", "nope"},
		{"--system", "fake", "--mode", "sideways"},
		{"--system", "fake", "--addrs", " , "},
		{"--system", "fake", "--clients", "-1"},
		{"table"},
	} {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), args, &out, &errOut, reg); code != 2 || errOut.Len() == 0 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, errOut.String())
		}
	}
}
