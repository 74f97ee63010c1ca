package checker

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

// Convergence compares every node's Cluster.Digest taken after the final heal (Digest records):
// nodes that cover the same last position must have the same SHA-256 ("divergent-replicas",
// a safety failure); a node that did not catch up to the others, or did not answer, leaves the
// verdict Unknown ("not-converged").
func Convergence(a *Analysis) *Result {
	r := newResult("convergence", true)
	asked := map[string]bool{}
	got := map[string]*history.Op{}
	for _, o := range a.Operations {
		if o.F() != history.Digest {
			continue
		}
		asked[o.Node()] = true
		if o.Type == history.OK {
			got[o.Node()] = o.Comp
		}
	}
	if len(asked) == 0 {
		r.Verdict = Skipped
		r.Summary = "no digests taken"
		return r
	}
	nodes := make([]string, 0, len(asked))
	for n := range asked {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	digests := map[string]string{}
	var maxPos int64
	for _, n := range nodes {
		if d, ok := got[n]; ok {
			maxPos = max(maxPos, d.Version)
		}
	}
	bySum := map[int64]map[string][]string{} // position -> sha -> nodes
	for _, n := range nodes {
		d, ok := got[n]
		if !ok {
			r.add(Anomaly{Kind: "not-converged", Node: n, Detail: fmt.Sprintf("node %s did not answer Digest after the heal", n)})
			continue
		}
		digests[n] = fmt.Sprintf("%s@%d", short(d.Digest), d.Version)
		if d.Version < maxPos {
			r.add(Anomaly{Kind: "not-converged", Node: n, Detail: fmt.Sprintf("node %s covers positions up to %d, others up to %d", n, d.Version, maxPos)})
		}
		if bySum[d.Version] == nil {
			bySum[d.Version] = map[string][]string{}
		}
		bySum[d.Version][d.Digest] = append(bySum[d.Version][d.Digest], n)
	}
	divergent := false
	for pos, sums := range bySum {
		if len(sums) > 1 {
			divergent = true
			var parts []string
			for sum, ns := range sums {
				parts = append(parts, fmt.Sprintf("%v=%s", ns, short(sum)))
			}
			sort.Strings(parts)
			r.add(Anomaly{Kind: "divergent-replicas", Detail: fmt.Sprintf("digests up to position %d differ: %s", pos, strings.Join(parts, " "))})
		}
	}
	r.Extra["digests"] = digests
	if !divergent && r.Counts["not-converged"] > 0 {
		r.Verdict = Unknown
	}
	switch {
	case divergent:
		r.Summary = "replicas DIVERGED: " + r.Anomalies[len(r.Anomalies)-1].Detail
	case r.Counts["not-converged"] > 0:
		r.Summary = fmt.Sprintf("%d of %d nodes did not converge", r.Counts["not-converged"], len(nodes))
	default:
		var any string
		for _, d := range digests {
			any = d
		}
		r.Summary = fmt.Sprintf("%d/%d nodes digest %s", len(got), len(nodes), any)
	}
	return r
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// logPatterns are the lines that make a node log a failure.
var logPatterns = []string{"panic:", "fatal error:", "WARNING: DATA RACE", "INVARIANT"}

// LogScan scans node logs (node -> path) for panics, fatal runtime errors, data races and
// INVARIANT lines.
func LogScan(logs map[string]string) *Result {
	r := newResult("logscan", true)
	if len(logs) == 0 {
		r.Verdict = Skipped
		r.Summary = "no node logs"
		return r
	}
	nodes := make([]string, 0, len(logs))
	for n := range logs {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	lines := 0
	for _, n := range nodes {
		f, err := os.Open(logs[n])
		if err != nil {
			r.unknown()
			r.Counts["unreadable"]++
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		ln := 0
		for sc.Scan() {
			ln++
			lines++
			t := sc.Text()
			for _, p := range logPatterns {
				if strings.Contains(t, p) {
					r.add(Anomaly{Kind: strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(p, "WARNING: ")), ":"), Node: n,
						Detail: fmt.Sprintf("%s line %d: %s", n, ln, truncate(t, 300))})
				}
			}
		}
		f.Close()
	}
	r.Counts["lines"] = lines
	if len(r.Anomalies) == 0 {
		r.Summary = fmt.Sprintf("%d nodes, %d lines: no panic, fatal error, data race or INVARIANT", len(nodes), lines)
	} else {
		r.Summary = r.anomalyKinds()
	}
	return r
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Liveness reports how quickly the cluster served clients again after each fault stopped, and
// whether the final phase (after the last heal) completed: a probe append acknowledged and every
// final read served within within. It is not a safety verdict: Invalid here means "did not
// recover", reported separately.
func Liveness(a *Analysis, within time.Duration) *Result {
	r := newResult("liveness", false)
	var recov []float64
	var okTimes []int64
	for _, o := range a.Operations {
		if o.Type == history.OK && !o.Inv.Final && (o.F() == history.Append || o.F() == history.Read) {
			okTimes = append(okTimes, o.Return)
		}
	}
	sort.Slice(okTimes, func(i, j int) bool { return okTimes[i] < okTimes[j] })
	notRecovered := 0
	for i, w := range a.Windows {
		end := history.Never
		if i+1 < len(a.Windows) {
			end = a.Windows[i+1].Start
		}
		k := sort.Search(len(okTimes), func(j int) bool { return okTimes[j] >= w.Stop })
		if k < len(okTimes) && okTimes[k] < end {
			recov = append(recov, float64(okTimes[k]-w.Stop)/1e9)
		} else if end != history.Never {
			notRecovered++
			r.Counts["not-recovered-before-next-fault"]++
		}
	}
	// Final phase.
	var finalStart, firstOK int64 = -1, -1
	finalFailed := 0
	finals := 0
	probeOK := false
	for _, o := range a.Operations {
		if !o.Inv.Final {
			continue
		}
		if finalStart < 0 || o.Call < finalStart {
			finalStart = o.Call
		}
		if o.Type == history.OK && (firstOK < 0 || o.Return < firstOK) && (o.F() == history.Append || o.F() == history.FinalRead) {
			firstOK = o.Return
		}
		if o.F() == history.Append && o.Type == history.OK {
			probeOK = true
		}
		if o.F() == history.FinalRead {
			finals++
		}
	}
	for s := range streamsNeedingFinal(a) {
		if _, ok := a.TruthOp[s]; !ok && a.LogNode == "" {
			finalFailed++
		}
	}
	r.Extra["recovered_after_heal_s"] = recov
	switch {
	case finalStart < 0:
		r.Verdict = Unknown
		r.Summary = "no final phase recorded"
	case !probeOK:
		r.add(Anomaly{Kind: "no-write-after-heal", Detail: "no append was acknowledged after the final heal"})
	case firstOK-finalStart > int64(within):
		r.add(Anomaly{Kind: "slow-recovery", Detail: fmt.Sprintf("first acknowledgement %.1f s after the final heal (limit %v)", float64(firstOK-finalStart)/1e9, within)})
	case finalFailed > 0:
		r.add(Anomaly{Kind: "final-read-failed", Detail: fmt.Sprintf("%d streams could not be read after the final heal", finalFailed)})
	}
	if r.Verdict == Valid {
		q := quantiles(recov)
		r.Summary = fmt.Sprintf("recovered %.1f s after the final heal; after faults p50 %.1f s, max %.1f s", float64(firstOK-finalStart)/1e9, q["p50"], q["max"])
		if notRecovered > 0 {
			r.Summary += fmt.Sprintf("; %d faults not recovered before the next one", notRecovered)
		}
	} else if r.Summary == "" {
		r.Summary = r.Anomalies[0].Detail
	}
	return r
}

func streamsNeedingFinal(a *Analysis) map[string]bool {
	out := map[string]bool{}
	for _, w := range a.Writes {
		if w.Outcome != history.Fail {
			out[w.Stream] = true
		}
	}
	return out
}

// contract lists, per operation, the error reasons the API may legitimately answer with. Any
// other reason is an "unexpected-error"; INTERNAL is always one (the server could not map an
// error: a bug, and the client cannot know whether the operation took effect).
var contract = map[string][]string{
	history.Append: {history.ReasonWrongExpectedRevision, history.ReasonNotLeader, history.ReasonNoLeader,
		history.ReasonOutcomeUnknown, history.ReasonShuttingDown, history.ReasonDeadlineExceeded, history.ReasonCanceled},
	history.Read: {history.ReasonNotLeader, history.ReasonNoLeader, history.ReasonForwardFailed, history.ReasonShuttingDown,
		history.ReasonDeadlineExceeded, history.ReasonCanceled, history.ReasonIncomplete},
	history.FollowerRead: {history.ReasonNotCaughtUp, history.ReasonTooStale, history.ReasonShuttingDown,
		history.ReasonDeadlineExceeded, history.ReasonCanceled, history.ReasonIncomplete},
}

// Errors tallies completions by operation, type and reason, and flags reasons outside the API's
// contract for that operation (INTERNAL, INVALID_COMMAND, INVALID_ARGUMENT for requests the
// harness builds valid, ...).
func Errors(a *Analysis) *Result {
	r := newResult("errors", true)
	tally := map[string]int{}
	for _, o := range a.Operations {
		if o.Comp == nil || o.Type == history.OK {
			continue
		}
		reason := o.Out().Error
		tally[o.F()+" "+string(o.Type)+" "+reason]++
		if strings.HasPrefix(reason, history.ReasonTransport) {
			continue
		}
		allowed, known := contract[o.F()]
		if !known {
			allowed = append(append([]string(nil), contract[history.Read]...), contract[history.FollowerRead]...)
		}
		ok := false
		for _, x := range allowed {
			ok = ok || x == reason
		}
		if !ok {
			r.add(Anomaly{Kind: "unexpected-error", Node: o.Node(), Stream: o.Stream(), Ops: []int{o.Inv.Index}, Time: o.Return,
				Detail: fmt.Sprintf("%s op %d answered %s (%s)", o.F(), o.Inv.Index, reason, o.Out().Value)})
		}
	}
	r.Extra["by_reason"] = tally
	if len(r.Anomalies) == 0 {
		r.Summary = fmt.Sprintf("%d kinds of failure, all within the API contract", len(tally))
	} else {
		r.Summary = fmt.Sprintf("%d answers outside the API contract (first: %s)", len(r.Anomalies), r.Anomalies[0].Detail)
	}
	return r
}
