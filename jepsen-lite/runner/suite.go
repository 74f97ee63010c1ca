package runner

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/checker"
)

// SuiteOptions configure a suite.
type SuiteOptions struct {
	Scenarios []Scenario
	// Base supplies the seed (0: from the clock) and the store.
	Base Config
	// MaxSeeds is how many seeds a canary may take to be caught (default 3).
	MaxSeeds int
	// Binary returns the cairnd to use: the real build, or the jepsenbugs build when bugs.
	Binary func(ctx context.Context, bugs bool) (string, error)
	// Overrides, when set, is applied to every scenario's config (command-line flags).
	Overrides func(*Config)
	// Log receives progress and every run's summary.
	Log io.Writer
}

// SuiteEntry is one run of a suite.
type SuiteEntry struct {
	Scenario string
	Bug      string // CAIRN_BUG of this run ("" on the real build)
	Seed     uint64
	Attempt  int
	Verdict  checker.Verdict
	// Want is the verdict the suite expects: invalid for a canary run, valid otherwise.
	Want     checker.Verdict
	CaughtBy []string
	Dir      string
	Err      error
	Took     time.Duration
}

// Pass reports whether the run met its expectation.
func (e SuiteEntry) Pass() bool { return e.Err == nil && e.Verdict == e.Want }

// SuiteResult is the outcome of a suite.
type SuiteResult struct{ Entries []SuiteEntry }

// Suite runs the scenarios: ordinary ones once on the real build (each must be valid); each
// canary on the jepsenbugs build with its bug enabled until it is caught (invalid) or MaxSeeds
// seeds are used, then the same scenario and seed on the real build, which must be valid.
func Suite(ctx context.Context, opts SuiteOptions) SuiteResult {
	if opts.MaxSeeds <= 0 {
		opts.MaxSeeds = 3
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	seed := opts.Base.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano() % 1_000_000)
	}
	var res SuiteResult
	run := func(s Scenario, bug string, seed uint64, attempt int) SuiteEntry {
		cfg := s.Config
		cfg.Scenario, cfg.Store = s.Name, opts.Base.Store
		if opts.Overrides != nil {
			opts.Overrides(&cfg)
		}
		cfg.Seed, cfg.Bug, cfg.Log = seed, bug, logw
		e := SuiteEntry{Scenario: s.Name, Bug: bug, Seed: seed, Attempt: attempt, Want: checker.Valid}
		if bug != "" {
			e.Want = checker.Invalid
		}
		if cfg.Driver == "" || cfg.Driver == "local" {
			bin, err := opts.Binary(ctx, bug != "")
			if err != nil {
				e.Err = err
				return e
			}
			cfg.Binary = bin
		}
		start := time.Now()
		out := Run(ctx, cfg)
		e.Took, e.Dir, e.Err, e.Verdict = time.Since(start), out.Dir, out.Err, out.Verdict
		if out.Report != nil {
			for _, r := range out.Report.Results {
				if r.Safety && r.Verdict == checker.Invalid {
					e.CaughtBy = append(e.CaughtBy, r.Name)
				}
			}
		}
		fmt.Fprint(logw, out.Summary)
		if out.Err != nil {
			fmt.Fprintf(logw, "harness error: %v\n", out.Err)
		}
		return e
	}
	for i, s := range opts.Scenarios {
		if ctx.Err() != nil {
			break
		}
		base := seed + uint64(i)*1000
		if s.Bug == "" {
			res.Entries = append(res.Entries, run(s, "", base, 1))
			continue
		}
		last := base
		for a := 1; a <= opts.MaxSeeds && ctx.Err() == nil; a++ {
			last = base + uint64(a-1)
			e := run(s, s.Bug, last, a)
			if e.Pass() || a == opts.MaxSeeds {
				res.Entries = append(res.Entries, e)
				break
			}
			fmt.Fprintf(logw, "canary %s not caught with seed %d (%s); trying another seed\n", s.Bug, last, e.Verdict)
		}
		if ctx.Err() == nil {
			res.Entries = append(res.Entries, run(s, "", last, 1))
		}
	}
	return res
}

// Table renders the suite's results.
func (r SuiteResult) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-38s %-40s %8s %-8s %-8s %6s  %s\n", "scenario", "build", "seed", "verdict", "expected", "took", "result")
	for _, e := range r.Entries {
		build := "real"
		if e.Bug != "" {
			build = "jepsenbugs CAIRN_BUG=" + e.Bug
		}
		result := "PASS"
		switch {
		case e.Err != nil:
			result = "HARNESS ERROR: " + e.Err.Error()
		case e.Bug != "" && e.Pass():
			result = fmt.Sprintf("CAUGHT by %s (seed attempt %d)", strings.Join(e.CaughtBy, ", "), e.Attempt)
		case e.Bug != "":
			result = fmt.Sprintf("NOT CAUGHT after %d seeds", e.Attempt)
		case !e.Pass():
			result = "FAIL: " + strings.Join(e.CaughtBy, ", ")
		}
		v := string(e.Verdict)
		if e.Err != nil {
			v = "-"
		}
		fmt.Fprintf(&b, "%-38s %-40s %8d %-8s %-8s %5.0fs  %s\n", e.Scenario, build, e.Seed, v, e.Want, e.Took.Seconds(), result)
		if e.Dir != "" && !e.Pass() {
			fmt.Fprintf(&b, "%-38s   run dir: %s\n", "", e.Dir)
		}
	}
	pass := 0
	for _, e := range r.Entries {
		if e.Pass() {
			pass++
		}
	}
	fmt.Fprintf(&b, "%d/%d runs met their expectation\n", pass, len(r.Entries))
	return b.String()
}

// ExitCode is 0 when every run met its expectation, 3 if any had a harness error, 2 if any was
// unknown, else 1.
func (r SuiteResult) ExitCode() int {
	code := 0
	for _, e := range r.Entries {
		switch {
		case e.Err != nil:
			return 3
		case e.Pass():
		case e.Verdict == checker.Unknown:
			code = max(code, 2)
		default:
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}
