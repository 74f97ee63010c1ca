package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/driver"
	"github.com/cairndb/cairn/jepsen-lite/runner"
)

// TestSmoke is CI's jepsen-lite run (make test): the smoke scenarios on the real build must be
// valid, and a reduced canary check must catch two planted bugs (the full canary suite is
// `make jepsen`). Sized for about 4 minutes on 2 cores under -race. JEPSEN_SEED fixes the seed;
// JEPSEN_KEEP=1 keeps the run directories.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real clusters; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	seed := uint64(time.Now().UnixNano() % 1_000_000)
	if s, err := strconv.ParseUint(os.Getenv("JEPSEN_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (JEPSEN_SEED=%d reproduces the fault schedules)", seed, seed)
	root, err := driver.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	real, err := driver.Build(ctx, root, bin, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	bugs, err := driver.Build(ctx, root, bin, []string{"jepsenbugs"}, false)
	if err != nil {
		t.Fatal(err)
	}
	store, err := os.MkdirTemp("", "jepsen-smoke-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() || os.Getenv("JEPSEN_KEEP") != "" {
			t.Logf("run directories kept in %s", store)
			return
		}
		os.RemoveAll(store)
	}()
	smoke, err := runner.Set("smoke")
	if err != nil {
		t.Fatal(err)
	}
	canaries, err := runner.Set("canary-version-check-on-leader,canary-follower-ignores-min-log-index")
	if err != nil {
		t.Fatal(err)
	}
	log := logWriter{t}
	res := runner.Suite(ctx, runner.SuiteOptions{
		Scenarios: smoke,
		Base:      runner.Config{Seed: seed, Store: store},
		Log:       log,
		Binary:    func(context.Context, bool) (string, error) { return real, nil },
	})
	// Canaries only on the bug build: their control runs are what the smoke scenarios already do.
	for i, s := range canaries {
		s.Config.Duration = 15 * time.Second
		for attempt := 1; attempt <= 2; attempt++ {
			cfg := s.Config
			cfg.Scenario, cfg.Store, cfg.Seed, cfg.Binary, cfg.Log = s.Name, store, seed+uint64(100*i+attempt), bugs, log
			start := time.Now()
			out := runner.Run(ctx, cfg)
			fmt.Fprint(log, out.Summary)
			e := runner.SuiteEntry{Scenario: s.Name, Bug: s.Bug, Seed: cfg.Seed, Attempt: attempt, Want: "invalid",
				Verdict: out.Verdict, Dir: out.Dir, Err: out.Err, Took: time.Since(start)}
			if out.Report != nil {
				for _, r := range out.Report.Results {
					if r.Safety && r.Verdict == "invalid" {
						e.CaughtBy = append(e.CaughtBy, r.Name)
					}
				}
			}
			if e.Pass() || attempt == 2 {
				res.Entries = append(res.Entries, e)
				break
			}
		}
	}
	t.Logf("\n%s", res.Table())
	if code := res.ExitCode(); code != 0 {
		t.Fatalf("jepsen-lite smoke suite: exit code %d (see the table above)", code)
	}
}

// logWriter sends progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
