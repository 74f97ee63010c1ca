package checker

import (
	"fmt"
	"sort"
)

// Verdict is a checker's (or a run's) conclusion.
type Verdict string

// Verdicts. A run is Valid only if every safety checker is Valid or Skipped; Invalid if any is
// Invalid; otherwise Unknown (a checker timed out, or the data it needs is missing).
const (
	Valid   Verdict = "valid"
	Invalid Verdict = "invalid"
	Unknown Verdict = "unknown"
	Skipped Verdict = "skipped"
)

// Anomaly is one finding, attributable to operations and event ids.
type Anomaly struct {
	// Kind names the anomaly (lost, duplicate, stale-read, ...).
	Kind   string `json:"kind"`
	Stream string `json:"stream,omitempty"`
	Node   string `json:"node,omitempty"`
	// IDs are event ids as writer:seq.
	IDs []string `json:"ids,omitempty"`
	// Ops are history indexes of the invoke records involved.
	Ops    []int  `json:"ops,omitempty"`
	Detail string `json:"detail"`
	// Time is when it happened or was observed (ns since the start), 0 if unknown.
	Time int64 `json:"t,omitempty"`
}

// Result is one checker's report.
type Result struct {
	Name    string  `json:"name"`
	Verdict Verdict `json:"verdict"`
	// Safety is false for checkers whose failure says nothing about safety (liveness).
	Safety bool `json:"safety"`
	// Summary is one console line.
	Summary string `json:"summary"`
	// Counts are named tallies (anomalies by kind and checker-specific numbers).
	Counts map[string]int `json:"counts,omitempty"`
	// Anomalies lists findings, at most maxPerKind of each kind (Counts has the totals).
	Anomalies []Anomaly `json:"anomalies,omitempty"`
	// Extra holds checker-specific data (distributions, digests, series for plots).
	Extra  map[string]any `json:"extra,omitempty"`
	Millis int64          `json:"ms"`
}

// maxPerKind bounds the anomalies of one kind kept in a result.
const maxPerKind = 50

func newResult(name string, safety bool) *Result {
	return &Result{Name: name, Safety: safety, Verdict: Valid, Counts: map[string]int{}, Extra: map[string]any{}}
}

// add records an anomaly; it makes the result Invalid unless soft.
func (r *Result) add(a Anomaly) {
	r.Counts[a.Kind]++
	if r.Counts[a.Kind] <= maxPerKind {
		r.Anomalies = append(r.Anomalies, a)
	}
	r.Verdict = Invalid
}

// unknown downgrades a Valid result to Unknown.
func (r *Result) unknown() {
	if r.Verdict == Valid || r.Verdict == Skipped {
		r.Verdict = Unknown
	}
}

// anomalyKinds returns "kind n, kind n" for the summary, sorted by kind.
func (r *Result) anomalyKinds(kinds ...string) string {
	var parts []string
	if len(kinds) == 0 {
		for k := range r.Counts {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
	}
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.Counts[k]))
	}
	return joinComma(parts)
}

func joinComma(parts []string) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += ", "
		}
		out += p
	}
	return out
}

// Combine folds checker verdicts into a run verdict: safety checkers only.
func Combine(results []*Result) Verdict {
	v := Valid
	for _, r := range results {
		if !r.Safety {
			continue
		}
		switch r.Verdict {
		case Invalid:
			return Invalid
		case Unknown:
			v = Unknown
		}
	}
	return v
}
