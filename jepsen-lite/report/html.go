package report

import (
	"fmt"
	"html"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cairndb/cairn/jepsen-lite/checker"
)

var verdictColor = map[checker.Verdict]string{checker.Valid: "#2e7d32", checker.Invalid: "#c62828",
	checker.Unknown: "#ef6c00", checker.Skipped: "#777"}

// writeHTML writes the self-contained report.
func writeHTML(path string, res Results, rep *checker.Report) error {
	var b strings.Builder
	e := html.EscapeString
	m := res.Meta
	b.WriteString(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>jepsen-lite ` + e(m.Scenario) + `</title><style>
body{font-family:sans-serif;margin:24px;max-width:1200px;color:#222}
h1{margin-bottom:4px} h2{margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4} .v{font-weight:bold;color:#fff;padding:2px 8px;border-radius:3px}
code,pre{font-size:12px} details{margin:4px 0} .muted{color:#777}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;border-radius:3px;font-size:12px}
</style></head><body>`)
	fmt.Fprintf(&b, `<h1>jepsen-lite: %s <span class="v" style="background:%s">%s</span></h1>`, e(m.Scenario),
		verdictColor[res.Valid], strings.ToUpper(string(res.Valid)))
	fmt.Fprintf(&b, `<p class="muted">%s</p>`, e(verdictSentence(res.Valid)))

	b.WriteString(`<h2>Run</h2><table>`)
	row := func(k, v string) { fmt.Fprintf(&b, `<tr><th>%s</th><td>%s</td></tr>`, e(k), v) }
	row("seed", fmt.Sprint(m.Seed))
	row("driver / nodes", e(fmt.Sprintf("%s / %d", m.Driver, m.Nodes)))
	row("workload", e(fmt.Sprintf("%s at %.0f ops/s for %s", m.Workload, m.Rate, m.Duration)))
	if m.Bug != "" {
		row("planted bug", "<b>"+e(m.Bug)+"</b> (jepsenbugs build)")
	}
	row("started", e(m.Started.UTC().Format("2006-01-02 15:04:05 UTC")))
	st := res.Stats
	row("operations", e(fmt.Sprintf("%d: ok %d, fail %d, info %d", st.Count, st.OK, st.Fail, st.Info)))
	var fs []string
	for f, byType := range st.ByF {
		fs = append(fs, fmt.Sprintf("%s: ok %d fail %d info %d", f, byType["ok"], byType["fail"], byType["info"]))
	}
	sort.Strings(fs)
	row("by operation", e(strings.Join(fs, " · ")))
	var faults []string
	for f, n := range m.Faults {
		faults = append(faults, fmt.Sprintf("%s ×%d", f, n))
	}
	sort.Strings(faults)
	row("faults", e(strings.Join(faults, ", ")))
	row("files", `<a href="results.json">results.json</a> · <a href="history.jsonl">history.jsonl</a> · <a href="nemesis.jsonl">nemesis.jsonl</a> · <a href="config.json">config.json</a>`+nodeLogLinks(m.Dir))
	b.WriteString(`</table>`)

	b.WriteString(`<h2>Checkers</h2><table><tr><th>checker</th><th>verdict</th><th>summary</th><th>ms</th></tr>`)
	for _, r := range rep.Results {
		label := string(r.Verdict)
		if !r.Safety {
			label += " (liveness, not safety)"
		}
		fmt.Fprintf(&b, `<tr><td>%s</td><td><span class="v" style="background:%s">%s</span></td><td>%s</td><td>%d</td></tr>`,
			e(r.Name), verdictColor[r.Verdict], e(label), e(r.Summary), r.Millis)
	}
	b.WriteString(`</table>`)
	for _, p := range res.Problems {
		fmt.Fprintf(&b, `<p style="color:#c62828">history problem: %s</p>`, e(p))
	}

	// Anomalies.
	any := false
	for _, r := range rep.Results {
		if len(r.Anomalies) == 0 {
			continue
		}
		if !any {
			b.WriteString(`<h2>Anomalies</h2><p class="muted">Operation numbers are history indexes (line i of history.jsonl); event ids are writer:sequence.</p>`)
			any = true
		}
		fmt.Fprintf(&b, `<details open><summary><b>%s</b>: %s</summary><table><tr><th>kind</th><th>stream</th><th>node</th><th>t (s)</th><th>detail</th></tr>`,
			e(r.Name), e(anomalyCounts(r)))
		for _, a := range r.Anomalies {
			fmt.Fprintf(&b, `<tr><td>%s</td><td>%s</td><td>%s</td><td>%.2f</td><td>%s</td></tr>`, e(a.Kind), e(a.Stream), e(a.Node),
				float64(a.Time)/1e9, e(a.Detail))
		}
		b.WriteString(`</table></details>`)
	}
	if lin := rep.Get("linearizable"); lin != nil {
		if viz, ok := lin.Extra["viz"].([]string); ok && len(viz) > 0 {
			b.WriteString(`<h2>Linearizability visualisations</h2><p>Porcupine's view of each stream with no linearization (fault windows annotated):</p><ul>`)
			for _, v := range viz {
				fmt.Fprintf(&b, `<li><a href="%s">%s</a></li>`, e(v), e(v))
			}
			b.WriteString(`</ul>`)
		}
	}

	// Plots.
	b.WriteString(`<h2>Plots</h2><p class="legend">Fault windows: `)
	seen := map[string]bool{}
	if rep.Analysis != nil {
		for _, w := range rep.Analysis.Windows {
			if !seen[w.Fault] {
				seen[w.Fault] = true
				fmt.Fprintf(&b, `<span style="background:%s">%s</span>`, checker.FaultColor(w.Fault), e(w.Fault))
			}
		}
		b.WriteString(`</p>`)
		var unseen [][2]int64
		if g := rep.Get("global"); g != nil {
			unseen, _ = g.Extra["unseen"].([][2]int64)
		}
		for _, svg := range plotsFor(rep.Analysis, unseen) {
			b.WriteString(`<div>` + svg + `</div>`)
		}
		// Fault schedule.
		b.WriteString(`<h2>Fault schedule</h2><table><tr><th>#</th><th>fault</th><th>targets</th><th>start (s)</th><th>stop (s)</th><th>detail</th></tr>`)
		for _, w := range rep.Analysis.Windows {
			fmt.Fprintf(&b, `<tr><td>%d</td><td><span style="background:%s;padding:0 4px">%s</span></td><td>%s</td><td>%.2f</td><td>%.2f</td><td>%s</td></tr>`,
				w.ID, checker.FaultColor(w.Fault), e(w.Fault), e(strings.Join(w.Targets, ", ")), float64(w.Start)/1e9, float64(w.Stop)/1e9, e(w.Value))
		}
		b.WriteString(`</table>`)
	}
	b.WriteString(`<h2>How to read this report</h2><ul>
<li><b>Verdict</b>: valid = every safety checker passed; invalid = a safety property was violated (see Anomalies); unknown = a checker could not decide (porcupine timed out, the final reads failed). Liveness is reported separately and never decides the verdict.</li>
<li><b>linearizable</b>: porcupine, per stream, after appends of unknown outcome were resolved from the final reads. <b>version-order</b>: the same histories checked in linear time, naming each anomaly (lost prefix/middle/postfix, duplicate, inconsistent versions, failed-but-visible, stale read, real-time inversion).</li>
<li><b>global</b>: $all dense and unique, per-stream order inside the global order, every acknowledged append at its position; <b>follower</b>: STALE reads are prefixes of the truth and honour min_log_index; <b>convergence</b>: Cluster.Digest equal on every node after the heal; <b>errors</b>: answers outside the API contract; <b>logscan</b>: panics, fatal errors, data races in node logs.</li>
<li>Plots: blue ok, orange info (unknown outcome), pink fail; shaded bands are fault windows (partition yellow, kill red, pause blue, slow/lossy green).</li>
<li>Re-check a stored run: <code>go run ./jepsen-lite check &lt;run dir&gt;</code>. Replay its faults: <code>go run ./jepsen-lite run --seed N --schedule &lt;run dir&gt;/nemesis.jsonl</code>.</li></ul>`)
	b.WriteString(`</body></html>`)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func verdictSentence(v checker.Verdict) string {
	switch v {
	case checker.Valid:
		return "Every safety checker passed: nothing acknowledged was lost, duplicated or reordered, and linearizable reads were linearizable."
	case checker.Invalid:
		return "A safety property was violated: see the anomalies below."
	}
	return "At least one checker could not decide; this is not a pass."
}

func nodeLogLinks(dir string) string {
	entries, _ := os.ReadDir(filepath.Join(dir, "nodes"))
	var out []string
	for _, en := range entries {
		rel := filepath.Join("nodes", en.Name(), "cairnd.log")
		if _, err := os.Stat(filepath.Join(dir, rel)); err == nil {
			out = append(out, fmt.Sprintf(`<a href="%s">%s log</a>`, html.EscapeString(rel), html.EscapeString(en.Name())))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " · " + strings.Join(out, " · ")
}

// anomalyCounts renders "kind n, kind n" for a result's anomaly kinds.
func anomalyCounts(r *checker.Result) string {
	seen := map[string]bool{}
	var parts []string
	for _, a := range r.Anomalies {
		if !seen[a.Kind] {
			seen[a.Kind] = true
			parts = append(parts, fmt.Sprintf("%s %d", a.Kind, r.Counts[a.Kind]))
		}
	}
	return strings.Join(parts, ", ")
}
