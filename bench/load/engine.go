package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is a kind of workload.
type Mode string

// The workloads.
const (
	// Closed: Clients clients, each appends one event and waits for its ack, again and again.
	Closed Mode = "closed"
	// Open: appends start at Rate per second whatever the system does, at most Clients in
	// flight; latency runs from each append's intended start.
	Open Mode = "open"
	// Pipelined: one connection keeps Window appends in flight to one stream.
	Pipelined Mode = "pipelined"
	// Read: Events events are written to a fresh stream (not timed), then read back in order.
	Read Mode = "read"
	// Subscribe: as Read, but the events are delivered by a catch-up subscription from the start.
	Subscribe Mode = "subscribe"
)

// Config is one workload.
type Config struct {
	// Mode is the workload kind.
	Mode Mode
	// Clients is the number of closed-loop clients, or the most appends in flight of an open
	// loop. Default 1.
	Clients int
	// Conns is the number of connections the clients share (client i uses connection i mod
	// Conns). Default 1.
	Conns int
	// Window is the number of appends in flight in Pipelined mode. Default 256.
	Window int
	// Rate is the open loop's target appends per second.
	Rate float64
	// EventBytes is the payload size of each event. Default 256.
	EventBytes int
	// HotStream sends every append of Closed and Open to one stream; otherwise each client has
	// its own stream.
	HotStream bool
	// Events is the number of events of Read and Subscribe. Default 100,000.
	Events int
	// Duration is how long one append run lasts. Default 15 s.
	Duration time.Duration
	// Warmup is a run before the measured runs whose result is discarded; 0 skips it.
	Warmup time.Duration
	// Runs is the number of measured runs; the result holds their medians. Default 1.
	Runs int
	// Prefix starts every stream name, so that runs against the same cluster never share a
	// stream. Default: "b" and a random suffix.
	Prefix string
	// OpTimeout bounds one append or one read-back/catch-up. Default 30 s, or 5 minutes for
	// Read and Subscribe.
	OpTimeout time.Duration
	// ServerPIDs are the server processes (on this machine) whose CPU time per event each run
	// reports, with the load tool's own (RunResult.CPU). Empty: only the load tool's.
	ServerPIDs []int
}

func (c *Config) defaults() error {
	if c.Clients == 0 {
		c.Clients = 1
	}
	if c.Conns == 0 {
		c.Conns = 1
	}
	if c.Window == 0 {
		c.Window = 256
	}
	if c.EventBytes == 0 {
		c.EventBytes = 256
	}
	if c.Events == 0 {
		c.Events = 100_000
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Runs == 0 {
		c.Runs = 1
	}
	if c.Prefix == "" {
		c.Prefix = fmt.Sprintf("b%08x", rand.Uint32())
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 30 * time.Second
		if c.Mode == Read || c.Mode == Subscribe {
			c.OpTimeout = 5 * time.Minute
		}
	}
	switch c.Mode {
	case Closed, Pipelined, Read, Subscribe:
	case Open:
		if c.Rate <= 0 {
			return fmt.Errorf("%w: open loop needs a rate above 0", ErrBadConfig)
		}
	default:
		return fmt.Errorf("%w: unknown mode %q (closed, open, pipelined, read, subscribe)", ErrBadConfig, c.Mode)
	}
	if c.Clients < 0 || c.Conns < 0 || c.Window < 0 || c.EventBytes < 0 || c.Events < 0 || c.Runs < 0 ||
		c.Duration < 0 || c.Warmup < 0 || c.OpTimeout < 0 {
		return fmt.Errorf("%w: counts and durations must not be negative", ErrBadConfig)
	}
	return nil
}

// ErrBadConfig is returned for a workload that cannot run as configured.
var ErrBadConfig = errors.New("bad workload")

// RunResult is one measured run.
type RunResult struct {
	// Seconds is the measured wall time.
	Seconds float64 `json:"seconds"`
	// Events is the number of events acknowledged (appends) or delivered (read, subscribe).
	Events int64 `json:"events"`
	// Errors is the number of failed appends (a read or subscription that fails fails the run).
	Errors int64 `json:"errors"`
	// Missed counts open-loop appends that could not start because Clients were in flight and
	// the backlog was full; they are not in Events and not in the latencies.
	Missed int64 `json:"missed,omitempty"`
	// EventsPerSec is Events / Seconds.
	EventsPerSec float64 `json:"events_per_sec"`
	// Latency is per append (append modes) or per response page (read); catch-up has none.
	Latency Latency `json:"latency_ms"`
	// FirstError is the first append error, for diagnosis.
	FirstError string `json:"first_error,omitempty"`
	// CPU is the CPU time per event of the servers and of the load tool during the measured
	// part (for read and subscribe: the read, not the fill); nil where /proc is not readable.
	CPU *CPUUse `json:"cpu,omitempty"`
}

// Result is a workload's outcome: its configuration, the median over its runs, and each run.
type Result struct {
	System     string  `json:"system"`
	Label      string  `json:"label,omitempty"`
	Mode       Mode    `json:"mode"`
	Clients    int     `json:"clients"`
	Conns      int     `json:"conns"`
	Window     int     `json:"window,omitempty"`
	Rate       float64 `json:"rate,omitempty"`
	EventBytes int     `json:"event_bytes"`
	HotStream  bool    `json:"hot_stream"`
	// Median holds, field by field, the median of the runs (each percentile is the median of
	// that percentile; Max is the largest max).
	Median RunResult   `json:"median"`
	Runs   []RunResult `json:"runs"`
}

// Run runs the workload cfg against d: an optional warm-up run, then cfg.Runs measured runs.
// Appends that fail are counted and the run goes on; a read-back or catch-up that fails, or a
// run in which no append succeeded, fails Run.
func Run(ctx context.Context, d Driver, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := d.Prepare(ctx); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	nconns := cfg.Conns
	if cfg.Mode == Pipelined || cfg.Mode == Read || cfg.Mode == Subscribe {
		nconns = 1
	}
	conns := make([]Conn, 0, nconns)
	defer func() {
		for _, c := range conns {
			_ = c.Close() // nothing to do about a failed close at the end of a benchmark
		}
	}()
	for range nconns {
		c, err := d.Connect(ctx)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		conns = append(conns, c)
	}
	res := &Result{Mode: cfg.Mode, Clients: cfg.Clients, Conns: nconns, EventBytes: cfg.EventBytes, HotStream: cfg.HotStream}
	switch cfg.Mode {
	case Pipelined:
		res.Window, res.Clients = cfg.Window, 1
	case Open:
		res.Rate = cfg.Rate
	}
	data := make([]byte, cfg.EventBytes)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	if cfg.Warmup > 0 && cfg.Mode != Read && cfg.Mode != Subscribe {
		w := cfg
		w.Duration = cfg.Warmup
		if _, err := runOnce(ctx, conns, w, data, "w"); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	for i := range cfg.Runs {
		rr, err := runOnce(ctx, conns, cfg, data, fmt.Sprintf("r%d", i))
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		res.Runs = append(res.Runs, rr)
	}
	res.Median = median(res.Runs)
	return res, nil
}

// runOnce does one run; tag keeps its streams apart from other runs'.
func runOnce(ctx context.Context, conns []Conn, cfg Config, data []byte, tag string) (RunResult, error) {
	var rr RunResult
	var err error
	before := takeCPU(cfg.ServerPIDs)
	switch cfg.Mode {
	case Closed:
		rr = closedLoop(ctx, conns, cfg, data, tag)
	case Open:
		rr = openLoop(ctx, conns, cfg, data, tag)
	case Pipelined:
		c := cfg
		c.Clients, c.Conns, c.HotStream = cfg.Window, 1, true
		rr = closedLoop(ctx, conns[:1], c, data, tag)
	case Read, Subscribe:
		rr, err = readBack(ctx, conns[0], cfg, data, tag)
	}
	if err != nil {
		return rr, err
	}
	if rr.CPU == nil { // readBack measured its read part itself
		rr.CPU = cpuUse(before, takeCPU(cfg.ServerPIDs), rr.Events)
	}
	if (cfg.Mode == Closed || cfg.Mode == Open || cfg.Mode == Pipelined) && rr.Events == 0 {
		return rr, fmt.Errorf("no append succeeded (%d failed; first error: %s)", rr.Errors, rr.FirstError)
	}
	return rr, ctx.Err()
}

// stream names the stream of client i; with a hot stream every client shares one.
func (c Config) stream(tag string, i int) string {
	if c.HotStream {
		return fmt.Sprintf("%s-%s-hot", c.Prefix, tag)
	}
	return fmt.Sprintf("%s-%s-%d", c.Prefix, tag, i)
}

// errTracker counts append failures and keeps the first.
type errTracker struct {
	n     atomic.Int64
	once  sync.Once
	first string
}

func (e *errTracker) add(err error) {
	e.n.Add(1)
	e.once.Do(func() { e.first = err.Error() })
}

// closedLoop runs cfg.Clients clients for cfg.Duration, each appending and waiting for the ack.
// An append still in flight when the time is up completes and is counted (with its latency),
// and the elapsed time runs until the last one is back.
func closedLoop(ctx context.Context, conns []Conn, cfg Config, data []byte, tag string) RunResult {
	rec := NewRecorder()
	var (
		done   atomic.Int64
		errs   errTracker
		wg     sync.WaitGroup
		stop   atomic.Bool
		start  = time.Now()
		timer  = time.AfterFunc(cfg.Duration, func() { stop.Store(true) })
		cancel = context.AfterFunc(ctx, func() { stop.Store(true) })
	)
	defer timer.Stop()
	defer cancel()
	for i := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, stream, slot := conns[i%len(conns)], cfg.stream(tag, i), rec.Slot()
			for !stop.Load() {
				t0 := time.Now()
				if err := appendOne(ctx, conn, stream, data, cfg.OpTimeout); err != nil {
					errs.add(err)
					continue
				}
				rec.Record(slot, time.Since(t0))
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return finish(time.Since(start), done.Load(), &errs, 0, rec)
}

func appendOne(ctx context.Context, conn Conn, stream string, data []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return conn.Append(ctx, stream, data)
}

func finish(elapsed time.Duration, events int64, errs *errTracker, missed int64, rec *Recorder) RunResult {
	rr := RunResult{
		Seconds: elapsed.Seconds(),
		Events:  events,
		Errors:  errs.n.Load(),
		Missed:  missed,
		Latency: rec.Summary(),
	}
	if rr.Seconds > 0 {
		rr.EventsPerSec = float64(events) / rr.Seconds
	}
	if rr.Errors > 0 {
		rr.FirstError = errs.first
	}
	return rr
}

// openLoop starts appends at cfg.Rate per second for cfg.Duration, whatever the system does.
// Each append's latency runs from its intended start time, so time spent waiting for a free
// client counts (no coordinated omission). At most cfg.Clients appends are in flight; up to
// openBacklog more wait; beyond that an append is counted as missed.
func openLoop(ctx context.Context, conns []Conn, cfg Config, data []byte, tag string) RunResult {
	rec := NewRecorder()
	var (
		done   atomic.Int64
		missed int64
		errs   errTracker
		wg     sync.WaitGroup
		queue  = make(chan time.Time, openBacklog)
	)
	for i := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, stream, slot := conns[i%len(conns)], cfg.stream(tag, i), rec.Slot()
			for intended := range queue {
				if err := appendOne(ctx, conn, stream, data, cfg.OpTimeout); err != nil {
					errs.add(err)
					continue
				}
				rec.Record(slot, time.Since(intended))
				done.Add(1)
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	total := int64(cfg.Duration / interval)
	timer := time.NewTimer(0)
	defer timer.Stop()
schedule:
	for n := range total {
		intended := start.Add(time.Duration(n) * interval)
		if wait := time.Until(intended); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break schedule
			case <-timer.C:
			}
		}
		select {
		case queue <- intended:
		default:
			missed++
		}
	}
	close(queue)
	wg.Wait()
	return finish(time.Since(start), done.Load(), &errs, missed, rec)
}

// openBacklog is how many open-loop appends may wait for a free client.
const openBacklog = 100_000

// readBack fills a fresh stream with cfg.Events events (not timed), then times reading them
// back in order (Read) or receiving them through a catch-up subscription (Subscribe).
func readBack(ctx context.Context, conn Conn, cfg Config, data []byte, tag string) (RunResult, error) {
	stream := cfg.stream(tag, 0)
	fctx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
	defer cancel()
	if err := conn.Fill(fctx, stream, cfg.Events, data); err != nil {
		return RunResult{}, fmt.Errorf("fill %d events: %w", cfg.Events, err)
	}
	rec := NewRecorder()
	var got int64
	before := takeCPU(cfg.ServerPIDs)
	start := time.Now()
	last := start
	count := func(k int) {
		now := time.Now()
		if cfg.Mode == Read {
			rec.Record(0, now.Sub(last))
		}
		last = now
		got += int64(k)
	}
	var err error
	rctx, cancel2 := context.WithTimeout(ctx, cfg.OpTimeout)
	defer cancel2()
	if cfg.Mode == Read {
		err = conn.ReadBack(rctx, stream, cfg.Events, count)
	} else {
		err = conn.CatchUp(rctx, stream, cfg.Events, count)
	}
	elapsed := time.Since(start)
	if err != nil {
		return RunResult{}, fmt.Errorf("%s after %d of %d events: %w", cfg.Mode, got, cfg.Events, err)
	}
	if got < int64(cfg.Events) {
		return RunResult{}, fmt.Errorf("%s delivered %d of %d events", cfg.Mode, got, cfg.Events)
	}
	rr := finish(elapsed, got, &errTracker{}, 0, rec)
	rr.CPU = cpuUse(before, takeCPU(cfg.ServerPIDs), got)
	return rr, nil
}

// median returns, field by field, the median of the runs; Max is the largest of the maxima.
func median(runs []RunResult) RunResult {
	if len(runs) == 0 {
		return RunResult{}
	}
	if len(runs) == 1 {
		return runs[0]
	}
	f := func(get func(RunResult) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	m := RunResult{
		Seconds:      f(func(r RunResult) float64 { return r.Seconds }),
		Events:       int64(f(func(r RunResult) float64 { return float64(r.Events) })),
		Errors:       int64(f(func(r RunResult) float64 { return float64(r.Errors) })),
		Missed:       int64(f(func(r RunResult) float64 { return float64(r.Missed) })),
		EventsPerSec: f(func(r RunResult) float64 { return r.EventsPerSec }),
		Latency: Latency{
			Count: int64(f(func(r RunResult) float64 { return float64(r.Latency.Count) })),
			P50:   f(func(r RunResult) float64 { return r.Latency.P50 }),
			P90:   f(func(r RunResult) float64 { return r.Latency.P90 }),
			P99:   f(func(r RunResult) float64 { return r.Latency.P99 }),
			P999:  f(func(r RunResult) float64 { return r.Latency.P999 }),
			Mean:  f(func(r RunResult) float64 { return r.Latency.Mean }),
		},
	}
	m.CPU = medianCPU(runs, f)
	for _, r := range runs {
		m.Latency.Max = max(m.Latency.Max, r.Latency.Max)
		m.Latency.Clamped += r.Latency.Clamped
		if m.FirstError == "" {
			m.FirstError = r.FirstError
		}
	}
	return m
}

// medianCPU is the field-by-field median of the runs' CPU use, or nil unless every run has one
// with the same number of servers.
func medianCPU(runs []RunResult, f func(func(RunResult) float64) float64) *CPUUse {
	for _, r := range runs {
		if r.CPU == nil || len(r.CPU.Servers) != len(runs[0].CPU.Servers) {
			return nil
		}
	}
	u := &CPUUse{
		Servers:      make([]float64, len(runs[0].CPU.Servers)),
		ServersTotal: f(func(r RunResult) float64 { return r.CPU.ServersTotal }),
		LoadTool:     f(func(r RunResult) float64 { return r.CPU.LoadTool }),
	}
	for i := range u.Servers {
		u.Servers[i] = f(func(r RunResult) float64 { return r.CPU.Servers[i] })
	}
	return u
}
