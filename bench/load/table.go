package load

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// The systems of the side-by-side table, in column order; others follow in order of appearance.
const (
	SystemCairn       = "cairn"
	SystemNATSAlways  = "nats-always"
	SystemNATSDefault = "nats-default"
	SystemEtcd        = "etcd"
)

// RSS is one node's peak resident set size under load, as bench/peers/run.sh samples it from
// /proc/<pid>/status (VmHWM is not used: it would include start-up and earlier workloads).
type RSS struct {
	System string
	Node   string
	KiB    int64
}

// ParseRSS reads lines "<system> <node> <peak RSS in KiB>"; blank lines and lines starting
// with '#' are skipped.
func ParseRSS(r io.Reader) ([]RSS, error) {
	var out []RSS
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("%w: rss line %d: want \"<system> <node> <KiB>\", got %q", ErrBadInput, n, line)
		}
		kib, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || kib < 0 {
			return nil, fmt.Errorf("%w: rss line %d: bad KiB %q", ErrBadInput, n, f[2])
		}
		out = append(out, RSS{System: f[0], Node: f[1], KiB: kib})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read rss: %w", err)
	}
	return out, nil
}

// ErrBadInput is returned for a result or RSS file that cannot be read.
var ErrBadInput = errors.New("bad input")

// DecodeResult reads one JSON Result as written by --json.
func DecodeResult(r io.Reader) (*Result, error) {
	var res Result
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		return nil, fmt.Errorf("%w: result JSON: %w", ErrBadInput, err)
	}
	if res.System == "" || res.Mode == "" {
		return nil, fmt.Errorf("%w: result JSON without system or mode", ErrBadInput)
	}
	return &res, nil
}

// rowKey identifies a workload across systems.
func rowKey(r *Result) string {
	switch r.Mode {
	case Closed:
		if r.Clients == 1 {
			return "1 client"
		}
		return fmt.Sprintf("%d clients", r.Clients)
	case Open:
		return fmt.Sprintf("open loop %.0f/s, %d clients", r.Rate, r.Clients)
	case Pipelined:
		return fmt.Sprintf("1 client, %d in flight", r.Window)
	case Read:
		return "read back in order"
	case Subscribe:
		return "catch-up subscription"
	}
	return string(r.Mode)
}

// goal is a row's target for Cairn; check reports whether it is met given the row's results.
type goal struct {
	text  string
	check func(cairn *Result, peers map[string]*Result) bool
}

func goalFor(r *Result) *goal {
	tput := func(x *Result) float64 { return x.Median.EventsPerSec }
	twiceNATS := func(c *Result, p map[string]*Result, floor float64) bool {
		n, ok := p[SystemNATSAlways]
		return tput(c) >= floor && (!ok || tput(c) >= 2*tput(n))
	}
	switch {
	case r.Mode == Closed && r.Clients == 1:
		return &goal{"≥ 1,600 ev/s, p50 ≤ 0.6 ms", func(c *Result, _ map[string]*Result) bool {
			return tput(c) >= 1600 && c.Median.Latency.P50 <= 0.6
		}}
	case r.Mode == Closed && r.Clients == 16:
		return &goal{"≥ 2× NATS-always and ≥ 10 k ev/s", func(c *Result, p map[string]*Result) bool {
			return twiceNATS(c, p, 10_000)
		}}
	case r.Mode == Closed && r.Clients == 256:
		return &goal{"≥ 2× NATS-always and ≥ 30 k ev/s, p99 ≤ 20 ms", func(c *Result, p map[string]*Result) bool {
			return twiceNATS(c, p, 30_000) && c.Median.Latency.P99 <= 20
		}}
	case r.Mode == Pipelined:
		return &goal{"≥ 100 k ev/s", func(c *Result, _ map[string]*Result) bool { return tput(c) >= 100_000 }}
	case r.Mode == Read:
		return &goal{"≥ 1 M ev/s", func(c *Result, _ map[string]*Result) bool { return tput(c) >= 1_000_000 }}
	case r.Mode == Subscribe:
		return &goal{"≥ 500 k ev/s", func(c *Result, _ map[string]*Result) bool { return tput(c) >= 500_000 }}
	}
	return nil
}

// rssGoalKiB is the goal for a node's RSS under the 256-client load.
const rssGoalKiB = 256 * 1024

// Table writes the side-by-side markdown table of results (one column per system, one row per
// workload) with the ratios Cairn ÷ NATS-always and Cairn ÷ etcd of throughput, Cairn's goal for
// the row and whether it is met, then the RSS table when rss is not empty.
func Table(w io.Writer, results []*Result, rss []RSS) error {
	var systems, rows []string
	byRow := map[string]map[string]*Result{}
	for _, r := range results {
		k := rowKey(r)
		if byRow[k] == nil {
			byRow[k] = map[string]*Result{}
			rows = append(rows, k)
		}
		byRow[k][r.System] = r
		if !slices.Contains(systems, r.System) {
			systems = append(systems, r.System)
		}
	}
	order := []string{SystemCairn, SystemNATSAlways, SystemEtcd, SystemNATSDefault}
	slices.SortStableFunc(systems, func(a, b string) int {
		ia, ib := slices.Index(order, a), slices.Index(order, b)
		if ia < 0 {
			ia = len(order)
		}
		if ib < 0 {
			ib = len(order)
		}
		return ia - ib
	})
	var b strings.Builder
	b.WriteString("| workload |")
	for _, s := range systems {
		fmt.Fprintf(&b, " %s |", s)
	}
	b.WriteString(" Cairn ÷ NATS-always | Cairn ÷ etcd | goal (Cairn) | met? |\n|---|")
	for range systems {
		b.WriteString("---|")
	}
	b.WriteString("---|---|---|---|\n")
	for _, k := range rows {
		row := byRow[k]
		fmt.Fprintf(&b, "| %s |", k)
		for _, s := range systems {
			fmt.Fprintf(&b, " %s |", cell(row[s]))
		}
		c := row[SystemCairn]
		fmt.Fprintf(&b, " %s | %s |", ratio(c, row[SystemNATSAlways]), ratio(c, row[SystemEtcd]))
		var g *goal
		if c != nil {
			g = goalFor(c)
		}
		switch {
		case g == nil:
			b.WriteString(" — | — |\n")
		default:
			met := "**not met**"
			if g.check(c, row) {
				met = "met"
			}
			fmt.Fprintf(&b, " %s | %s |\n", g.text, met)
		}
	}
	for _, r := range results {
		if r.Median.CPU != nil && len(r.Median.CPU.Servers) > 0 {
			b.WriteString("\n\"µs CPU/ev\": CPU time (user + system, from /proc) of the three server processes together per event; the load tool's own is in the JSON results.\n")
			break
		}
	}
	if len(rss) > 0 {
		b.WriteString("\nPeak RSS of each node under the 256-client load (sampled from /proc every second):\n\n")
		b.WriteString("| system | node | peak RSS | goal (Cairn ≤ 256 MiB) |\n|---|---|---|---|\n")
		for _, r := range rss {
			met := "—"
			if r.System == SystemCairn {
				met = "met"
				if r.KiB > rssGoalKiB {
					met = "**not met**"
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %.1f MiB | %s |\n", r.System, r.Node, float64(r.KiB)/1024, met)
		}
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// cell formats one system's result: throughput, and the latency percentiles that matter.
func cell(r *Result) string {
	if r == nil {
		return "—"
	}
	m := r.Median
	s := fmt.Sprintf("%s ev/s", thousands(m.EventsPerSec))
	switch r.Mode {
	case Closed, Open, Pipelined:
		s += fmt.Sprintf(", p50 %.2f ms, p99 %.1f ms", m.Latency.P50, m.Latency.P99)
	}
	if m.CPU != nil && len(m.CPU.Servers) > 0 {
		s += fmt.Sprintf(", %.0f µs CPU/ev", m.CPU.ServersTotal)
	}
	if m.Errors > 0 {
		s += fmt.Sprintf(", %d errors", m.Errors)
	}
	return s
}

func ratio(a, b *Result) string {
	if a == nil || b == nil || b.Median.EventsPerSec == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a.Median.EventsPerSec/b.Median.EventsPerSec)
}

// thousands formats v rounded to an integer with "," between groups of three digits.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
