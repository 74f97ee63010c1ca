package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/checker"
	"github.com/cairndb/cairn/jepsen-lite/driver"
	"github.com/cairndb/cairn/jepsen-lite/history"
	"github.com/cairndb/cairn/jepsen-lite/nemesis"
	"github.com/cairndb/cairn/jepsen-lite/report"
	"github.com/cairndb/cairn/jepsen-lite/workload"
)

// Outcome is what a run produced.
type Outcome struct {
	// Dir is the run directory.
	Dir string
	// Verdict is the checkers' verdict; meaningless when Err is set.
	Verdict checker.Verdict
	Report  *checker.Report
	// Err is a harness error (the cluster could not be started, the run was interrupted, ...).
	Err error
	// Summary is the console summary.
	Summary string
}

// ExitCode maps an outcome to jepsen-lite's exit codes: 0 valid, 1 invalid, 2 unknown,
// 3 harness error.
func (o *Outcome) ExitCode() int {
	switch {
	case o == nil || o.Err != nil:
		return 3
	case o.Verdict == checker.Valid:
		return 0
	case o.Verdict == checker.Invalid:
		return 1
	}
	return 2
}

// ErrInterrupted is the harness error of a run whose context was cancelled (Ctrl-C).
var ErrInterrupted = errors.New("runner: interrupted")

// Run runs one test. The cluster it starts is torn down before it returns, whatever happens;
// ctx cancellation (Ctrl-C) aborts the run, which then reports a harness error.
func Run(ctx context.Context, cfg Config) *Outcome {
	cfg = cfg.Defaults()
	out := &Outcome{}
	if err := cfg.Validate(); err != nil {
		out.Err = err
		return out
	}
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	var logMu sync.Mutex
	start := time.Now()
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(logw, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	dir := filepath.Join(cfg.Store, cfg.Scenario, fmt.Sprintf("%s-%d", time.Now().UTC().Format("20060102T150405Z"), cfg.Seed))
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	out.Dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		out.Err = fmt.Errorf("runner: %w", err)
		return out
	}
	updateLatest(cfg.Store, cfg.Scenario, dir)
	if err := writeJSON(filepath.Join(dir, "config.json"), cfg); err != nil {
		out.Err = err
		return out
	}
	var replay []nemesis.Record
	if cfg.Schedule != "" {
		var err error
		if replay, err = nemesis.ReadSchedule(cfg.Schedule); err != nil {
			out.Err = err
			return out
		}
	}
	hf, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		out.Err = fmt.Errorf("runner: %w", err)
		return out
	}
	rec := history.NewRecorder(hf)
	nf, err := os.Create(filepath.Join(dir, "nemesis.jsonl"))
	if err != nil {
		rec.Close()
		out.Err = fmt.Errorf("runner: %w", err)
		return out
	}
	defer nf.Close()

	d, err := newDriver(cfg, dir)
	if err != nil {
		rec.Close()
		out.Err = err
		return out
	}
	closed := false
	closeDriver := func(keep bool) {
		if closed {
			return
		}
		closed = true
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := d.Collect(cctx); err != nil {
			logf("collecting node logs: %v", err)
		}
		cancel()
		if err := d.Close(keep); err != nil {
			logf("tearing down the cluster: %v", err)
		}
	}
	defer closeDriver(true)

	logf("%s: starting %d-node %s cluster (run dir %s)", cfg.Scenario, cfg.Nodes, cfg.Driver, dir)
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	err = d.Start(sctx)
	cancel()
	if err != nil {
		closeDriver(true)
		rec.Close()
		out.Err = fmt.Errorf("runner: start cluster: %w", err)
		if ctx.Err() != nil {
			out.Err = fmt.Errorf("%w: %w", ErrInterrupted, out.Err)
		}
		return out
	}
	env := &workload.Env{Rec: rec, Driver: d, Nonce: uint32(cfg.Seed) ^ uint32(time.Now().UnixNano()), OpTimeout: cfg.OpTimeout}
	nem := nemesis.New(d, rec, cfg.Seed, cfg.schedule(replay), nf, logf)

	logf("%s workload at %.0f ops/s with %d clients for %v; faults %v", cfg.Workload.Name, cfg.Workload.Rate,
		cfg.Workload.Clients, cfg.Duration, cfg.Faults)
	rctx, rcancel := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	var wlErr error
	wg.Add(2)
	go func() { defer wg.Done(); wlErr = workload.Run(rctx, env, cfg.Workload) }()
	go func() { defer wg.Done(); nem.Run(rctx) }()
	wg.Wait()
	rcancel()
	if wlErr != nil {
		out.Err = wlErr
		return out
	}
	if ctx.Err() != nil {
		closeDriver(true)
		rec.Close()
		out.Err = ErrInterrupted
		return out
	}
	logf("healing and reading everything back")
	ferr := finalPhase(ctx, env, d, nem, cfg, logf)
	if ferr != nil {
		logf("final phase: %v", ferr)
	}
	if ctx.Err() != nil {
		closeDriver(true)
		rec.Close()
		out.Err = ErrInterrupted
		return out
	}
	closeDriver(true)
	if err := rec.Close(); err != nil {
		out.Err = err
		return out
	}
	logf("checking %d history records", len(rec.Ops()))
	rep, err := checker.Check(rec.Ops(), checker.Options{
		Linear:         checker.LinearOptions{Timeout: cfg.LinearTimeout, VizDir: dir},
		NodeLogs:       d.LogPaths(),
		LivenessWithin: cfg.LivenessWithin,
	})
	if err != nil {
		out.Err = fmt.Errorf("runner: check: %w", err)
		return out
	}
	out.Report, out.Verdict = rep, rep.Verdict
	meta := report.Meta{Scenario: cfg.Scenario, Seed: cfg.Seed, Driver: cfg.Driver, Nodes: cfg.Nodes, Workload: cfg.Workload.Name,
		Rate: cfg.Workload.Rate, Duration: cfg.Duration, Bug: cfg.Bug, Faults: nem.Counts(), Schedule: nem.Records(),
		Dir: dir, Started: rec.Start()}
	out.Summary, err = report.Write(dir, meta, rep)
	if err != nil {
		out.Err = err
		return out
	}
	if rep.Verdict == checker.Valid && !cfg.KeepData {
		removeData(dir)
	}
	return out
}

func newDriver(cfg Config, dir string) (driver.Driver, error) {
	switch cfg.Driver {
	case "local":
		args := []string{"--heartbeat-timeout", cfg.HeartbeatTimeout.String(), "--election-timeout", cfg.ElectionTimeout.String(),
			"--snapshot-threshold", fmt.Sprint(cfg.SnapshotThreshold), "--snapshot-interval", cfg.SnapshotInterval.String()}
		var env []string
		if cfg.Bug != "" {
			env = append(env, "CAIRN_BUG="+cfg.Bug)
		}
		return driver.NewLocal(driver.LocalOptions{Binary: cfg.Binary, Dir: dir, Nodes: cfg.Nodes, ExtraArgs: args, Env: env, Seed: cfg.Seed})
	case "compose":
		c, err := driver.NewCompose(driver.ComposeOptions{File: cfg.ComposeFile, Project: cfg.ComposeProject, Dir: dir})
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("runner: unknown driver %q", cfg.Driver)
}

// finalPhase heals the cluster, waits for a leader, appends a probe (liveness), reads every
// stream, waits for every node to apply the leader's commit index, drains $all from every node and
// takes every node's digest. All of it is recorded as final-phase operations; the checkers decide
// what a failure here means.
func finalPhase(ctx context.Context, env *workload.Env, d driver.Driver, nem *nemesis.Nemesis, cfg Config, logf func(string, ...any)) error {
	fctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var errs []error
	if err := nem.HealAll(fctx); err != nil {
		errs = append(errs, fmt.Errorf("heal: %w", err))
	}
	lctx, lcancel := context.WithTimeout(fctx, 40*time.Second)
	leader, err := driver.WaitLeader(lctx, d)
	lcancel()
	if err != nil {
		errs = append(errs, err)
		leader, _ = driver.Leader(fctx, d, time.Second)
	}
	c := env.NewClient(9000, cfg.Seed)
	c.Final = true
	nodes := d.Nodes()
	target := func(i int) string {
		if leader != "" && i%2 == 0 {
			return leader
		}
		return nodes[i%len(nodes)]
	}
	// Liveness probe: one append, retried with the same id until acknowledged.
	ids := c.NextIDs(1)
	deadline := time.Now().Add(cfg.LivenessWithin)
	probed := false
	for i := 0; time.Now().Before(deadline) && fctx.Err() == nil; i++ {
		if op := c.Append(fctx, target(i), "probe", history.ExpectAny, ids, i); op.Type == history.OK {
			probed = true
			break
		}
		waitFor(fctx, 200*time.Millisecond)
	}
	if !probed {
		errs = append(errs, errors.New("no append acknowledged after the heal"))
	}
	// Final reads of every stream.
	streams := env.Streams()
	sort.Strings(streams)
	readDeadline := time.Now().Add(60 * time.Second)
	for _, s := range streams {
		ok := false
		for i := 0; time.Now().Before(readDeadline) && fctx.Err() == nil; i++ {
			if op := c.FinalRead(fctx, target(i), s); op.Type == history.OK && op.End {
				ok = true
				break
			}
			waitFor(fctx, 100*time.Millisecond)
		}
		if !ok {
			errs = append(errs, fmt.Errorf("final read of %s failed", s))
		}
	}
	// Convergence: every node applies the leader's commit index.
	var commit uint64
	if leader != "" {
		if st, err := driver.Status(fctx, d, leader, 2*time.Second); err == nil {
			commit = st.GetCommitIndex()
		}
	}
	cdeadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for time.Now().Before(cdeadline) && fctx.Err() == nil {
			st, err := driver.Status(fctx, d, n, time.Second)
			if err == nil && st.GetAppliedIndex() >= commit {
				break
			}
			waitFor(fctx, 100*time.Millisecond)
		}
	}
	// Drains and digests.
	var upTo uint64
	refNode := leader
	if refNode == "" {
		refNode = nodes[0]
	}
	for _, n := range append([]string{refNode}, without(nodes, refNode)...) {
		op := c.Drain(fctx, n, commit, n == refNode, 30*time.Second)
		if n == refNode && op.Type == history.OK {
			upTo = uint64(len(op.Records))
			if upTo > 0 {
				upTo = op.Records[len(op.Records)-1].Position
			}
		}
		if op.Type != history.OK {
			errs = append(errs, fmt.Errorf("drain of %s failed: %s", n, op.Error))
		}
	}
	for _, n := range nodes {
		c.Digest(fctx, n, upTo)
	}
	logf("final phase done: leader %s, %d streams read, commit index %d, %d positions", leader, len(streams), commit, upTo)
	return errors.Join(errs...)
}

func without(xs []string, x string) []string {
	var out []string
	for _, y := range xs {
		if y != x {
			out = append(out, y)
		}
	}
	return out
}

// waitFor is the final phase's retry backoff: it waits d or until ctx ends.
func waitFor(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("runner: encode %s: %w", filepath.Base(path), err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("runner: %w", err)
	}
	return nil
}

// updateLatest points Store/latest and Store/<scenario>/latest at dir.
func updateLatest(store, scenario, dir string) {
	for _, link := range []string{filepath.Join(store, "latest"), filepath.Join(store, scenario, "latest")} {
		_ = os.Remove(link)
		_ = os.Symlink(dir, link)
	}
}

// removeData deletes node data directories of a valid run (logs stay).
func removeData(dir string) {
	entries, _ := os.ReadDir(filepath.Join(dir, "nodes"))
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, "nodes", e.Name(), "data"))
	}
}
