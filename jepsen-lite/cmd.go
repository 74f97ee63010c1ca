package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cairndb/cairn/jepsen-lite/checker"
	"github.com/cairndb/cairn/jepsen-lite/driver"
	"github.com/cairndb/cairn/jepsen-lite/history"
	"github.com/cairndb/cairn/jepsen-lite/nemesis"
	"github.com/cairndb/cairn/jepsen-lite/report"
	"github.com/cairndb/cairn/jepsen-lite/runner"
)

// runFlags are the flags shared by run and suite.
type runFlags struct {
	scenario, workload, nemesis, driver, bug, cairnd, store, schedule, composeFile, composeProject string
	seed                                                                                           uint64
	duration, opTimeout, faultMin, faultMax, quietMin, quietMax                                    time.Duration
	rate                                                                                           float64
	nodes, clients, retries                                                                        int
	snapshotThreshold                                                                              uint64
	keepData, raceNodes                                                                            bool
}

func (f *runFlags) register(fs *pflag.FlagSet, suite bool) {
	fs.Uint64Var(&f.seed, "seed", 0, "random seed (0: from the clock); the run is reproducible from it and its nemesis.jsonl")
	fs.StringVar(&f.driver, "driver", "local", "cluster driver: local (cairnd processes on loopback behind per-link proxies) or compose")
	fs.StringVar(&f.cairnd, "cairnd", "", "cairnd binary (default: built from this module, with -tags jepsenbugs for --bug)")
	fs.StringVar(&f.store, "store", "jepsen-lite/runs", "directory for run directories")
	fs.StringVar(&f.composeFile, "compose-file", "docker-compose.yml", "compose file (compose driver)")
	fs.StringVar(&f.composeProject, "compose-project", "cairn-jepsen", "compose project name (compose driver)")
	fs.DurationVar(&f.duration, "duration", 0, "length of the faulty phase (default: the scenario's, else 60s)")
	fs.Float64Var(&f.rate, "rate", 0, "client operations per second (default: the scenario's, else 100)")
	fs.IntVar(&f.nodes, "nodes", 0, "cluster size (local driver; default 3)")
	fs.IntVar(&f.clients, "clients", 0, "concurrent client workers (default: the scenario's, else 8)")
	fs.BoolVar(&f.keepData, "keep-data", false, "keep node data directories of valid runs too")
	fs.BoolVar(&f.raceNodes, "race-nodes", false, "build cairnd with the race detector (needs cgo; slower)")
	if suite {
		return
	}
	fs.StringVar(&f.scenario, "scenario", "", "start from a named scenario (see `jepsen-lite scenarios`); flags override it")
	fs.StringVar(&f.workload, "workload", "", "workload: streams, global or follower (default streams)")
	fs.StringVar(&f.nemesis, "nemesis", "", "comma-separated faults: "+strings.Join(nemesis.Faults, ", ")+"; 'none' for no faults")
	fs.StringVar(&f.bug, "bug", "", "planted bug to enable (CAIRN_BUG; builds cairnd with -tags jepsenbugs)")
	fs.StringVar(&f.schedule, "schedule", "", "replay a realised fault schedule (a run's nemesis.jsonl)")
	fs.DurationVar(&f.opTimeout, "op-timeout", 0, "timeout of one client request (default 2s)")
	fs.DurationVar(&f.faultMin, "fault-min", 0, "shortest fault (default 4s)")
	fs.DurationVar(&f.faultMax, "fault-max", 0, "longest fault (default 8s)")
	fs.DurationVar(&f.quietMin, "quiet-min", 0, "shortest quiet period between faults (default 3s)")
	fs.DurationVar(&f.quietMax, "quiet-max", 0, "longest quiet period between faults (default 6s)")
	fs.IntVar(&f.retries, "retries", 0, "retries of an append of unknown outcome with the same ids (default 2; -1 none)")
	fs.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", 0, "raft entries between snapshots (default 256)")
}

// apply overrides cfg with the flags that were set.
func (f *runFlags) apply(fs *pflag.FlagSet, cfg *runner.Config) {
	set := func(name string) bool { return fs.Changed(name) }
	if set("seed") {
		cfg.Seed = f.seed
	}
	if set("driver") || cfg.Driver == "" {
		cfg.Driver = f.driver
	}
	cfg.Store, cfg.ComposeFile, cfg.ComposeProject, cfg.KeepData = f.store, f.composeFile, f.composeProject, f.keepData
	if set("duration") {
		cfg.Duration = f.duration
	}
	if set("rate") {
		cfg.Workload.Rate = f.rate
	}
	if set("nodes") {
		cfg.Nodes = f.nodes
	}
	if set("clients") {
		cfg.Workload.Clients = f.clients
	}
	if set("workload") {
		cfg.Workload.Name = f.workload
	}
	if set("nemesis") {
		cfg.Faults = nil
		if f.nemesis != "none" && f.nemesis != "" {
			cfg.Faults = strings.Split(f.nemesis, ",")
		}
	}
	if set("bug") {
		cfg.Bug = f.bug
	}
	if set("schedule") {
		cfg.Schedule = f.schedule
	}
	if set("op-timeout") {
		cfg.OpTimeout = f.opTimeout
	}
	if set("fault-min") {
		cfg.FaultMin = f.faultMin
	}
	if set("fault-max") {
		cfg.FaultMax = f.faultMax
	}
	if set("quiet-min") {
		cfg.QuietMin = f.quietMin
	}
	if set("quiet-max") {
		cfg.QuietMax = f.quietMax
	}
	if set("retries") {
		cfg.Workload.Retries = f.retries
	}
	if set("snapshot-threshold") {
		cfg.SnapshotThreshold = f.snapshotThreshold
	}
}

// binaries builds (once per process) the cairnd binaries a run needs.
type binaries struct {
	explicit string
	race     bool
	store    string
	built    map[bool]string
}

func (b *binaries) get(ctx context.Context, bugs bool) (string, error) {
	if b.explicit != "" {
		return b.explicit, nil
	}
	if p, ok := b.built[bugs]; ok {
		return p, nil
	}
	root, err := driver.ModuleRoot(".")
	if err != nil {
		return "", err
	}
	var tags []string
	if bugs {
		tags = []string{"jepsenbugs"}
	}
	what := "cairnd"
	if bugs {
		what += " -tags jepsenbugs"
	}
	if b.race {
		what += " -race"
	}
	fmt.Fprintf(os.Stderr, "building %s...\n", what)
	p, err := driver.Build(ctx, root, filepath.Join(b.store, ".bin"), tags, b.race)
	if err != nil {
		return "", err
	}
	if b.built == nil {
		b.built = map[bool]string{}
	}
	b.built[bugs] = p
	return p, nil
}

func runCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run one test: workload + faults, heal, final reads, checkers, report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := runner.Config{}
			if f.scenario != "" {
				s, err := runner.Lookup(f.scenario)
				if err != nil {
					return err
				}
				cfg = s.Config
			}
			f.apply(cmd.Flags(), &cfg)
			cfg.Log = os.Stderr
			if cfg.Driver == "local" {
				bins := &binaries{explicit: f.cairnd, race: f.raceNodes, store: f.store}
				bin, err := bins.get(cmd.Context(), cfg.Bug != "")
				if err != nil {
					return err
				}
				cfg.Binary = bin
			}
			out := runner.Run(cmd.Context(), cfg)
			if out.Err != nil {
				fmt.Fprintf(os.Stderr, "jepsen-lite: harness error: %v\n", out.Err)
				if out.Dir != "" {
					fmt.Fprintf(os.Stderr, "run directory: %s\n", out.Dir)
				}
				return &exitError{3}
			}
			fmt.Print(out.Summary)
			if code := out.ExitCode(); code != 0 {
				return &exitError{code}
			}
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	return cmd
}

func checkCmd() *cobra.Command {
	var linearTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "check <run-dir>",
		Short: "Re-run the checkers on a stored run (history.jsonl, node logs) and rewrite its report",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if resolved, err := filepath.EvalSymlinks(dir); err == nil {
				dir = resolved
			}
			ops, err := history.ReadFile(filepath.Join(dir, "history.jsonl"))
			if err != nil {
				return err
			}
			logs := map[string]string{}
			entries, _ := os.ReadDir(filepath.Join(dir, "nodes"))
			for _, e := range entries {
				p := filepath.Join(dir, "nodes", e.Name(), "cairnd.log")
				if _, err := os.Stat(p); err == nil {
					logs[e.Name()] = p
				}
			}
			rep, err := checker.Check(ops, checker.Options{Linear: checker.LinearOptions{Timeout: linearTimeout, VizDir: dir}, NodeLogs: logs})
			if err != nil {
				return err
			}
			meta, err := report.ReadMeta(dir)
			if err != nil {
				return err
			}
			sum, err := report.Write(dir, meta, rep)
			if err != nil {
				return err
			}
			fmt.Print(sum)
			out := &runner.Outcome{Verdict: rep.Verdict}
			if code := out.ExitCode(); code != 0 {
				return &exitError{code}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&linearTimeout, "linear-timeout", 60*time.Second, "porcupine timeout per stream")
	return cmd
}

func scenariosCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "scenarios",
		Short: "List the named scenarios and suites",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			fmt.Print(runner.Catalogue())
		},
	}
}

func suiteCmd() *cobra.Command {
	var f runFlags
	var set string
	var seeds int
	cmd := &cobra.Command{
		Use:   "suite",
		Short: "Run a set of scenarios (smoke, nightly, canary) and report each verdict",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			scen, err := runner.Set(set)
			if err != nil {
				return err
			}
			bins := &binaries{explicit: f.cairnd, race: f.raceNodes, store: f.store}
			base := runner.Config{}
			f.apply(cmd.Flags(), &base)
			res := runner.Suite(cmd.Context(), runner.SuiteOptions{
				Scenarios: scen, Base: base, MaxSeeds: seeds, Log: os.Stderr,
				Binary:    func(ctx context.Context, bugs bool) (string, error) { return bins.get(ctx, bugs) },
				Overrides: func(c *runner.Config) { f.apply(cmd.Flags(), c) },
			})
			fmt.Print(res.Table())
			if code := res.ExitCode(); code != 0 {
				return &exitError{code}
			}
			return nil
		},
	}
	f.register(cmd.Flags(), true)
	cmd.Flags().StringVar(&set, "set", "smoke", "scenario set (smoke, nightly, canary) or comma-separated scenario names")
	cmd.Flags().IntVar(&seeds, "canary-seeds", 3, "seeds to try per canary before declaring it not caught")
	return cmd
}
