package checker

import (
	"fmt"
	"sort"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

// Follower checks STALE reads served by any node. They are not linearizable by contract, so they
// are checked against what the contract does promise (DESIGN §3):
//
//   - a prefix of the final stream: no phantom (uncommitted or invented) or reordered events
//     ("phantom-read");
//   - read-your-writes: with min_log_index, the serving node's applied index is at least the
//     token ("below-min-log-index") and every acknowledged append of that stream whose log
//     index is at most the token is visible ("read-your-writes");
//   - the node's own claim: every acknowledged append with a log index at most the applied index
//     the node reported is visible ("applied-but-invisible").
//
// Staleness (how long before the read started the first acknowledged event it missed had been
// acknowledged) is reported per node as a distribution; it is not a verdict.
func Follower(a *Analysis) *Result {
	start := time.Now()
	r := newResult("follower", true)
	// Acknowledged appends per stream, by log index.
	type ackd struct {
		logIndex uint64
		length   int64 // stream length once it is visible
		ret      int64
		op       int
	}
	acks := map[string][]ackd{}
	for _, w := range a.Writes {
		if w.Outcome == history.OK && w.LogIndex() > 0 {
			acks[w.Stream] = append(acks[w.Stream], ackd{w.LogIndex(), w.Version(), w.Return, w.FirstOp()})
		}
	}
	staleness := map[string][]float64{}
	reads := 0
	for _, o := range a.Operations {
		if o.F() != history.FollowerRead || o.Type != history.OK {
			continue
		}
		reads++
		s, out := o.Stream(), o.Out()
		node := out.ServedBy
		length := int64(o.Inv.From) + int64(len(out.Events))
		if truth, ok := a.Truth[s]; ok {
			for i, id := range out.Events {
				rev := int(o.Inv.From) + i
				if rev >= len(truth) || truth[rev] != id {
					r.add(Anomaly{Kind: "phantom-read", Stream: s, Node: node, IDs: []string{history.IDString(id)}, Ops: []int{o.Inv.Index},
						Time: o.Return, Detail: fmt.Sprintf("follower read op %d on %s has %s at revision %d; the final stream has %s",
							o.Inv.Index, node, history.IDString(id), rev, truthAt(truth, rev))})
					break
				}
			}
		}
		if tok := o.Inv.MinLogIndex; tok > 0 && out.Applied < tok {
			r.add(Anomaly{Kind: "below-min-log-index", Stream: s, Node: node, Ops: []int{o.Inv.Index}, Time: o.Return,
				Detail: fmt.Sprintf("follower read op %d with min_log_index %d was served by %s at applied index %d",
					o.Inv.Index, tok, node, out.Applied)})
		}
		for _, ak := range acks[s] {
			if ak.length <= length {
				continue
			}
			switch {
			case ak.logIndex <= o.Inv.MinLogIndex:
				r.add(Anomaly{Kind: "read-your-writes", Stream: s, Node: node, Ops: []int{o.Inv.Index, ak.op}, Time: o.Return,
					Detail: fmt.Sprintf("follower read op %d with min_log_index %d saw length %d, but append op %d (log index %d) made it %d",
						o.Inv.Index, o.Inv.MinLogIndex, length, ak.op, ak.logIndex, ak.length)})
			case ak.logIndex <= out.Applied:
				r.add(Anomaly{Kind: "applied-but-invisible", Stream: s, Node: node, Ops: []int{o.Inv.Index, ak.op}, Time: o.Return,
					Detail: fmt.Sprintf("follower read op %d on %s reported applied index %d and length %d, but append op %d (log index %d) made it %d",
						o.Inv.Index, node, out.Applied, length, ak.op, ak.logIndex, ak.length)})
			default:
				continue
			}
			break
		}
		// Staleness: the earliest acknowledgement of an event the read missed.
		var missedSince int64 = -1
		for _, ak := range acks[s] {
			if ak.length > length && ak.ret < o.Call && (missedSince < 0 || ak.ret < missedSince) {
				missedSince = ak.ret
			}
		}
		ms := 0.0
		if missedSince >= 0 {
			ms = float64(o.Call-missedSince) / 1e6
		}
		staleness[node] = append(staleness[node], ms)
	}
	if reads == 0 {
		r.Verdict = Skipped
		r.Summary = "no follower reads"
		return r
	}
	dist := map[string]map[string]float64{}
	var all []float64
	for node, v := range staleness {
		dist[node] = quantiles(v)
		all = append(all, v...)
	}
	q := quantiles(all)
	dist["all"] = q
	r.Extra["staleness_ms"] = dist
	r.Counts["reads"] = reads
	r.Summary = fmt.Sprintf("%d reads, staleness p50 %.0f ms, p99 %.0f ms, max %.0f ms", reads, q["p50"], q["p99"], q["max"])
	if len(r.Anomalies) > 0 {
		r.Summary += "; " + r.anomalyKinds()
	} else {
		r.Summary += "; prefixes of the truth, read-your-writes kept"
	}
	r.Millis = time.Since(start).Milliseconds()
	return r
}

// quantiles returns p50, p95, p99 and max of v.
func quantiles(v []float64) map[string]float64 {
	out := map[string]float64{"n": float64(len(v))}
	if len(v) == 0 {
		return out
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	out["p50"], out["p95"], out["p99"], out["max"] = at(0.50), at(0.95), at(0.99), s[len(s)-1]
	return out
}
