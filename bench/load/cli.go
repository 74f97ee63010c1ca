package load

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// Main is the load tool's command line, shared by cmd/bench (Cairn only) and bench/peers's
// peerbench (Cairn, NATS, etcd): `run` (the default) runs one workload against one system and
// prints its result, `table` turns JSON results into the side-by-side markdown table. It
// returns the process exit code: 0 on success, 1 when the workload or a file failed, 2 for bad
// usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, reg Registry) int {
	if len(args) > 0 && args[0] == "table" {
		return mainTable(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "run" {
		args = args[1:]
	}
	return mainRun(ctx, args, stdout, stderr, reg)
}

func mainRun(ctx context.Context, args []string, stdout, stderr io.Writer, reg Registry) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg      Config
		system   = fs.String("system", SystemCairn, "system under test: "+strings.Join(reg.names(), ", "))
		addrs    = fs.String("addrs", "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103", "comma-separated client addresses of the nodes")
		replicas = fs.Int("replicas", 3, "replication factor for drivers that create their stream (NATS)")
		label    = fs.String("label", "", "system name recorded in the result (default: --system), e.g. nats-always")
		asJSON   = fs.Bool("json", false, "print the result as JSON")
		out      = fs.String("out", "", "also write the JSON result to this file")
		mode     = fs.String("mode", string(Closed), "workload: closed, open, pipelined, read, subscribe")
		cpuProf  = fs.String("cpuprofile", "", "write the load tool's own CPU profile (measured runs and warm-up) to this file")
		pids     = fs.String("server-pids", "", "comma-separated pids of the server processes whose CPU per event to report (Linux)")
	)
	fs.IntVar(&cfg.Clients, "clients", 1, "closed loop: clients; open loop: most appends in flight")
	fs.IntVar(&cfg.Conns, "conns", 1, "connections the clients share")
	fs.IntVar(&cfg.Window, "window", 256, "pipelined: appends in flight on one connection")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: target appends per second")
	fs.IntVar(&cfg.EventBytes, "event-bytes", 256, "payload bytes per event")
	fs.BoolVar(&cfg.HotStream, "hot-stream", false, "every client appends to one stream (default: a stream per client)")
	fs.IntVar(&cfg.Events, "events", 100_000, "read, subscribe: events written and then read back")
	fs.DurationVar(&cfg.Duration, "duration", DefaultDuration, "length of one append run")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "length of a discarded warm-up run before the measured runs")
	fs.IntVar(&cfg.Runs, "runs", 1, "measured runs; the result is their median")
	fs.StringVar(&cfg.Prefix, "prefix", "", "stream name prefix (default: random)")
	fs.DurationVar(&cfg.OpTimeout, "op-timeout", 0, "timeout of one append (default 30s) or one read-back (default 5m)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %q\n", fs.Args())
		return 2
	}
	cfg.Mode = Mode(*mode)
	for _, p := range strings.Split(*pids, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			fmt.Fprintf(stderr, "--server-pids: bad pid %q\n", p)
			return 2
		}
		cfg.ServerPIDs = append(cfg.ServerPIDs, n)
	}
	if err := cfg.defaults(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	var list []string
	for _, a := range strings.Split(*addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			list = append(list, a)
		}
	}
	if len(list) == 0 {
		fmt.Fprintln(stderr, "--addrs: no address")
		return 2
	}
	d, err := reg.New(*system, DriverConfig{Addrs: list, Replicas: *replicas})
	if err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, ErrUnknownSystem) {
			return 2
		}
		return 1
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			fmt.Fprintf(stderr, "--cpuprofile: %v\n", err)
			return 1
		}
		defer f.Close() //nolint:errcheck // closed after StopCPUProfile has flushed it
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "--cpuprofile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	res, err := Run(ctx, d, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", *system, cfg.Mode, err)
		return 1
	}
	res.System = *system
	if *label != "" {
		res.System = *label
	}
	if *out != "" {
		if err := writeJSONFile(*out, res); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	PrintText(stdout, res)
	return 0
}

// DefaultDuration is the default length of one append run.
const DefaultDuration = 15 * time.Second

func writeJSONFile(path string, res *Result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// PrintText writes a human-readable summary of res.
func PrintText(w io.Writer, res *Result) {
	m := res.Median
	desc := rowKey(res)
	fmt.Fprintf(w, "%s, %s (%d-byte events, %d run(s)): %s events/s, %d events in %.1f s",
		res.System, desc, res.EventBytes, len(res.Runs), thousands(m.EventsPerSec), m.Events, m.Seconds)
	if m.Errors > 0 {
		fmt.Fprintf(w, ", %d errors (first: %s)", m.Errors, m.FirstError)
	}
	if m.Missed > 0 {
		fmt.Fprintf(w, ", %d missed starts", m.Missed)
	}
	fmt.Fprintln(w)
	if l := m.Latency; l.Count > 0 {
		what := "append"
		if res.Mode == Read {
			what = "page"
		}
		fmt.Fprintf(w, "  %s latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
			what, l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	}
	if c := m.CPU; c != nil {
		fmt.Fprintf(w, "  CPU µs per event: load tool %.1f", c.LoadTool)
		if len(c.Servers) > 0 {
			fmt.Fprintf(w, ", servers %.1f (", c.ServersTotal)
			for i, s := range c.Servers {
				if i > 0 {
					fmt.Fprint(w, " + ")
				}
				fmt.Fprintf(w, "%.1f", s)
			}
			fmt.Fprint(w, ")")
		}
		fmt.Fprintln(w)
	}
}

func mainTable(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rssFile := fs.String("rss", "", "file of \"<system> <node> <peak RSS KiB>\" lines")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: table [--rss FILE] RESULT.json...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	var results []*Result
	for _, p := range fs.Args() {
		r, err := decodeFile(p)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		results = append(results, r)
	}
	var rss []RSS
	if *rssFile != "" {
		f, err := os.Open(*rssFile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		rss, err = ParseRSS(f)
		_ = f.Close() // read-only
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", *rssFile, err)
			return 1
		}
	}
	if err := Table(stdout, results, rss); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

func decodeFile(path string) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open result: %w", err)
	}
	defer f.Close() //nolint:errcheck // read-only
	r, err := DecodeResult(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}
