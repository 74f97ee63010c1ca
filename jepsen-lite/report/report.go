// Package report writes a run's results: results.json (the verdict and every checker's result),
// summary.txt (the console summary) and report.html (self-contained: verdict, checker table,
// latency and rate plots as inline SVG with fault windows shaded, anomalies, links to the
// porcupine visualisations of failing streams).
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/checker"
	"github.com/cairndb/cairn/jepsen-lite/history"
	"github.com/cairndb/cairn/jepsen-lite/nemesis"
)

// Meta describes a run.
type Meta struct {
	Scenario string        `json:"scenario"`
	Seed     uint64        `json:"seed"`
	Driver   string        `json:"driver"`
	Nodes    int           `json:"nodes"`
	Workload string        `json:"workload"`
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"-"`
	Bug      string        `json:"bug,omitempty"`
	// Faults counts the faults injected, by kind; Schedule is the realised schedule.
	Faults   map[string]int   `json:"faults"`
	Schedule []nemesis.Record `json:"nemesis"`
	Dir      string           `json:"dir"`
	Started  time.Time        `json:"started"`
}

// Stats counts client operations.
type Stats struct {
	Count int                       `json:"count"`
	OK    int                       `json:"ok"`
	Fail  int                       `json:"fail"`
	Info  int                       `json:"info"`
	ByF   map[string]map[string]int `json:"by_f"`
}

// ComputeStats counts the client operations of a history.
func ComputeStats(ops []history.Operation) Stats {
	s := Stats{ByF: map[string]map[string]int{}}
	for _, o := range ops {
		s.Count++
		switch o.Type {
		case history.OK:
			s.OK++
		case history.Fail:
			s.Fail++
		default:
			s.Info++
		}
		if s.ByF[o.F()] == nil {
			s.ByF[o.F()] = map[string]int{}
		}
		s.ByF[o.F()][string(o.Type)]++
	}
	return s
}

// Results is results.json.
type Results struct {
	Valid     checker.Verdict            `json:"valid"`
	Meta      Meta                       `json:"run"`
	DurationS float64                    `json:"duration_s"`
	Stats     Stats                      `json:"stats"`
	Checkers  map[string]*checker.Result `json:"checkers"`
	Order     []string                   `json:"checker_order"`
	Problems  []string                   `json:"history_problems,omitempty"`
}

// Write writes results.json, summary.txt and report.html into dir and returns the summary.
func Write(dir string, meta Meta, rep *checker.Report) (string, error) {
	res := Results{Valid: rep.Verdict, Meta: meta, DurationS: meta.Duration.Seconds(), Checkers: map[string]*checker.Result{},
		Problems: rep.Problems}
	if rep.Analysis != nil {
		res.Stats = ComputeStats(rep.Analysis.Operations)
	}
	for _, r := range rep.Results {
		res.Checkers[r.Name] = r
		res.Order = append(res.Order, r.Name)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", fmt.Errorf("report: encode results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	sum := Summary(res, rep)
	if err := os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(sum), 0o644); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	if err := writeHTML(filepath.Join(dir, "report.html"), res, rep); err != nil {
		return sum, err
	}
	return sum, nil
}

// Summary is the one-screen console summary.
func Summary(res Results, rep *checker.Report) string {
	var b strings.Builder
	m := res.Meta
	fmt.Fprintf(&b, "jepsen-lite %s  seed=%d  driver=%s  nodes=%d  workload=%s  %s  rate=%.0f/s", m.Scenario, m.Seed, m.Driver,
		m.Nodes, m.Workload, m.Duration, m.Rate)
	if m.Bug != "" {
		fmt.Fprintf(&b, "  bug=%s", m.Bug)
	}
	b.WriteString("\n")
	var faults []string
	total := 0
	for f, n := range m.Faults {
		faults = append(faults, fmt.Sprintf("%s ×%d", f, n))
		total += n
	}
	sort.Strings(faults)
	fmt.Fprintf(&b, "ops %d: ok %d  fail %d  info %d      faults: %d (%s)\n", res.Stats.Count, res.Stats.OK, res.Stats.Fail,
		res.Stats.Info, total, strings.Join(faults, ", "))
	for _, r := range rep.Results {
		word := map[checker.Verdict]string{checker.Valid: "PASS", checker.Invalid: "FAIL", checker.Unknown: "UNKNOWN",
			checker.Skipped: "skip"}[r.Verdict]
		if !r.Safety {
			word = map[checker.Verdict]string{checker.Valid: "OK", checker.Invalid: "WARN", checker.Unknown: "UNKNOWN",
				checker.Skipped: "skip"}[r.Verdict]
		}
		fmt.Fprintf(&b, "  %-14s %-7s %s\n", r.Name, word, r.Summary)
		if r.Verdict == checker.Invalid {
			for i, a := range r.Anomalies {
				if i == 3 {
					fmt.Fprintf(&b, "      … %d more (results.json)\n", len(r.Anomalies)-3)
					break
				}
				fmt.Fprintf(&b, "      %s: %s\n", a.Kind, a.Detail)
			}
		}
	}
	for _, p := range res.Problems {
		fmt.Fprintf(&b, "  history problem: %s\n", p)
	}
	switch res.Valid {
	case checker.Valid:
		b.WriteString("Everything looks good!")
	case checker.Invalid:
		b.WriteString("Analysis invalid! (safety violated)")
	default:
		b.WriteString("Validity unknown (a checker could not decide)")
	}
	fmt.Fprintf(&b, "  valid=%s  -> %s\n", res.Valid, filepath.Join(m.Dir, "report.html"))
	return b.String()
}

// ReadMeta reads a run's description back from its results.json, or from config.json when the
// run ended before writing results.
func ReadMeta(dir string) (Meta, error) {
	var res Results
	if b, err := os.ReadFile(filepath.Join(dir, "results.json")); err == nil {
		if err := json.Unmarshal(b, &res); err != nil {
			return Meta{}, fmt.Errorf("report: results.json: %w", err)
		}
		res.Meta.Dir = dir
		res.Meta.Duration = time.Duration(res.DurationS * float64(time.Second))
		return res.Meta, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return Meta{}, fmt.Errorf("report: neither results.json nor config.json in %s: %w", dir, err)
	}
	var cfg struct {
		Scenario string        `json:"scenario"`
		Seed     uint64        `json:"seed"`
		Driver   string        `json:"driver"`
		Nodes    int           `json:"nodes"`
		Duration time.Duration `json:"duration"`
		Bug      string        `json:"bug"`
		Workload struct {
			Name string  `json:"Name"`
			Rate float64 `json:"Rate"`
		} `json:"workload"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return Meta{}, fmt.Errorf("report: config.json: %w", err)
	}
	m := Meta{Scenario: cfg.Scenario, Seed: cfg.Seed, Driver: cfg.Driver, Nodes: cfg.Nodes, Duration: cfg.Duration, Bug: cfg.Bug,
		Workload: cfg.Workload.Name, Rate: cfg.Workload.Rate, Dir: dir}
	if recs, err := nemesis.ReadSchedule(filepath.Join(dir, "nemesis.jsonl")); err == nil {
		m.Schedule = recs
		m.Faults = map[string]int{}
		for _, r := range recs {
			m.Faults[r.Fault]++
		}
	}
	return m, nil
}
