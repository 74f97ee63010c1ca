package checker

import (
	"fmt"
	"sort"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

// Global checks the global log ($all) from the final drains, the tailers' pages and the
// acknowledged positions:
//
//   - positions dense and unique (1..N), each event once ("gap", "duplicate-position",
//     "duplicate");
//   - per-stream order inside the global order: a stream's revisions appear as 0, 1, 2, ... in
//     position order ("stream-order");
//   - every acknowledged append at its acknowledged positions ("lost", "wrong-position");
//     unseen at end = acknowledged events absent from the drain;
//   - final stream reads agree with the log ("final-read-mismatch");
//   - real time: an append invoked after another was acknowledged gets larger positions
//     ("realtime-inversion");
//   - tailers' pages start where asked and agree with the log ("poll-skip",
//     "nonmonotonic-poll", "divergent-page"); a linearizable tail read sees every position
//     acknowledged before it started ("stale-tail");
//   - every node's drain equals the reference drain ("drain-divergence").
//
// It also computes the "unseen" series: acknowledged events not yet read by any tailer, over
// time, which must end at 0.
func Global(a *Analysis) *Result {
	start := time.Now()
	r := newResult("global", true)
	if a.LogNode == "" {
		r.Verdict = Skipped
		r.Summary = "no final drain of $all"
		for _, o := range a.Operations {
			if o.F() == history.Drain {
				r.Verdict = Unknown
				r.Summary = "no node answered the final drain of $all: cannot check the global log"
				break
			}
		}
		return r
	}
	log := a.Log
	byPos := map[uint64]history.Record{}
	idAt := map[uint64]uint64{} // id -> position
	streamNext := map[string]uint64{}
	for i, rec := range log {
		want := uint64(i + 1)
		if rec.Position != want {
			kind := "gap"
			if rec.Position < want {
				kind = "duplicate-position"
			}
			r.add(Anomaly{Kind: kind, Node: a.LogNode, Detail: fmt.Sprintf("record %d of the log has position %d, want %d", i, rec.Position, want)})
		}
		byPos[rec.Position] = rec
		if p, dup := idAt[rec.ID]; dup {
			r.add(Anomaly{Kind: "duplicate", Stream: rec.Stream, IDs: []string{history.IDString(rec.ID)},
				Detail: fmt.Sprintf("event %s is at positions %d and %d", history.IDString(rec.ID), p, rec.Position)})
		} else {
			idAt[rec.ID] = rec.Position
		}
		if rec.Revision != streamNext[rec.Stream] {
			r.add(Anomaly{Kind: "stream-order", Stream: rec.Stream, IDs: []string{history.IDString(rec.ID)},
				Detail: fmt.Sprintf("position %d holds revision %d of %s, want revision %d", rec.Position, rec.Revision, rec.Stream, streamNext[rec.Stream])})
		}
		streamNext[rec.Stream] = rec.Revision + 1
	}
	// Final stream reads against the log. The drain of $all runs after the stream reads, and an
	// append whose outcome was unknown may commit in between (its client gave up, the server
	// did not): the log may extend a final read, but only with events of unknown appends.
	unknown := map[uint64]bool{}
	for _, w := range a.Writes {
		if w.Outcome == history.Info {
			for _, id := range w.IDs {
				unknown[id] = true
			}
		}
	}
	for s, op := range a.TruthOp {
		var fromLog []uint64
		for _, rec := range log {
			if rec.Stream == s {
				fromLog = append(fromLog, rec.ID)
			}
		}
		if !extendsWithUnknown(fromLog, a.Truth[s], unknown) {
			r.add(Anomaly{Kind: "final-read-mismatch", Stream: s, Ops: []int{op.Inv.Index},
				Detail: fmt.Sprintf("the final read of %s has %d events, the log %d (or they differ)", s, len(a.Truth[s]), len(fromLog))})
		}
	}
	// Acknowledged appends at their positions.
	unseenEnd := 0
	for _, w := range a.Writes {
		if w.Outcome != history.OK {
			continue
		}
		p0, p1 := w.Positions()
		if p0 == 0 {
			continue
		}
		absent := 0
		for i, id := range w.IDs {
			p, ok := idAt[id]
			if !ok {
				absent++
				continue
			}
			if p != p0+uint64(i) || p1 != p0+uint64(len(w.IDs)-1) {
				r.add(Anomaly{Kind: "wrong-position", Stream: w.Stream, IDs: []string{history.IDString(id)}, Ops: attemptOps(w),
					Detail: fmt.Sprintf("append op %d was acknowledged at positions %d..%d; event %s is at %d", w.FirstOp(), p0, p1, history.IDString(id), p)})
				break
			}
		}
		if absent > 0 {
			unseenEnd += absent
			r.add(Anomaly{Kind: "lost", Stream: w.Stream, IDs: idStrings(w.IDs), Ops: attemptOps(w), Time: w.Return,
				Detail: fmt.Sprintf("append op %d acknowledged at positions %d..%d: %d of its events are not in $all", w.FirstOp(), p0, p1, absent)})
		}
	}
	r.Counts["unseen-at-end"] = unseenEnd
	r.Counts["positions"] = len(log)

	// Real time over the global order.
	type mark struct {
		t   int64
		pos uint64
		op  int
	}
	var marks []mark
	type probe struct {
		t     int64
		first uint64
		op    int
		tail  bool
		node  string
	}
	var probes []probe
	for _, w := range a.Writes {
		if w.Outcome == history.Fail {
			continue
		}
		first, ok1 := idAt[w.IDs[0]]
		last, ok2 := idAt[w.IDs[len(w.IDs)-1]]
		if !ok1 || !ok2 {
			continue
		}
		if w.Outcome == history.OK {
			marks = append(marks, mark{w.Return, last, w.FirstOp()})
		}
		probes = append(probes, probe{t: w.Call, first: first, op: w.FirstOp()})
	}
	for _, o := range a.Operations {
		if o.F() == history.Tail && o.Type == history.OK {
			probes = append(probes, probe{t: o.Call, first: uint64(o.Out().Version), op: o.Inv.Index, tail: true, node: o.Out().ServedBy})
			if o.Out().Version > int64(len(log)) {
				r.add(Anomaly{Kind: "divergent-page", Ops: []int{o.Inv.Index},
					Detail: fmt.Sprintf("tail op %d saw position %d beyond the end of the log (%d)", o.Inv.Index, o.Out().Version, len(log))})
			}
		}
	}
	sort.Slice(marks, func(i, j int) bool { return marks[i].t < marks[j].t })
	sort.Slice(probes, func(i, j int) bool { return probes[i].t < probes[j].t })
	best := mark{op: -1}
	j := 0
	for _, p := range probes {
		for j < len(marks) && marks[j].t < p.t {
			if marks[j].pos > best.pos {
				best = marks[j]
			}
			j++
		}
		switch {
		case p.tail && p.first < best.pos:
			r.add(Anomaly{Kind: "stale-tail", Ops: []int{p.op, best.op}, Time: p.t, Node: p.node,
				Detail: fmt.Sprintf("linearizable tail op %d (served by %s) saw position %d; op %d was acknowledged at %d before it started",
					p.op, p.node, p.first, best.op, best.pos)})
		case !p.tail && p.first <= best.pos:
			r.add(Anomaly{Kind: "realtime-inversion", Ops: []int{p.op, best.op}, Time: p.t,
				Detail: fmt.Sprintf("append op %d was invoked after op %d was acknowledged at position %d, yet landed at %d",
					p.op, best.op, best.pos, p.first)})
		}
	}

	// Tailers' pages.
	var firstSeen []seenAt
	seenIDs := map[uint64]bool{}
	for _, o := range a.Operations {
		if o.F() != history.ReadAll || o.Type != history.OK {
			continue
		}
		recs := o.Out().Records
		from := max(o.Inv.From, 1)
		for i, rec := range recs {
			want := from + uint64(i)
			switch {
			case rec.Position < want:
				r.add(Anomaly{Kind: "nonmonotonic-poll", Ops: []int{o.Inv.Index}, Node: o.Out().ServedBy, Time: o.Return,
					Detail: fmt.Sprintf("page op %d from %d returned position %d at index %d", o.Inv.Index, from, rec.Position, i)})
			case rec.Position > want:
				r.add(Anomaly{Kind: "poll-skip", Ops: []int{o.Inv.Index}, Node: o.Out().ServedBy, Time: o.Return,
					Detail: fmt.Sprintf("page op %d from %d skipped to position %d at index %d", o.Inv.Index, from, rec.Position, i)})
			}
			if truth, ok := byPos[rec.Position]; !ok || truth.ID != rec.ID || truth.Stream != rec.Stream || truth.Revision != rec.Revision {
				r.add(Anomaly{Kind: "divergent-page", Ops: []int{o.Inv.Index}, Node: o.Out().ServedBy, Stream: rec.Stream,
					IDs: []string{history.IDString(rec.ID)}, Time: o.Return,
					Detail: fmt.Sprintf("page op %d (served by %s) has %s at position %d; the log has %s", o.Inv.Index, o.Out().ServedBy,
						history.IDString(rec.ID), rec.Position, history.IDString(truth.ID))})
				break
			}
			if !seenIDs[rec.ID] {
				seenIDs[rec.ID] = true
				firstSeen = append(firstSeen, seenAt{o.Return, rec.ID})
			}
		}
	}
	// Drains of other nodes.
	for node, d := range a.Drains {
		if node == a.LogNode {
			continue
		}
		other := d.Out().Records
		n := min(len(other), len(log))
		div := -1
		for i := 0; i < n; i++ {
			if other[i] != log[i] {
				div = i
				break
			}
		}
		if div < 0 && len(other) != len(log) {
			div = n
			// One drain is a prefix of the other. That is no divergence when the shorter one was
			// served at a lower applied index and everything it lacks was written by appends
			// whose outcome was unknown: those may commit after the final probe that every
			// drain waits for (their clients gave up, the server did not).
			shortApplied, longApplied, extra := d.Out().Applied, a.Drains[a.LogNode].Out().Applied, log[n:]
			if len(other) > len(log) {
				shortApplied, longApplied, extra = longApplied, shortApplied, other[n:]
			}
			if shortApplied < longApplied && allUnknown(extra, unknown) {
				div = -1
			}
		}
		if div >= 0 {
			r.add(Anomaly{Kind: "drain-divergence", Node: node, Ops: []int{d.Inv.Index},
				Detail: fmt.Sprintf("node %s's $all (%d records) differs from %s's (%d records) from position %d", node, len(other),
					a.LogNode, len(log), div+1)})
		}
	}
	// Unseen series (only meaningful with tailers).
	if len(firstSeen) > 0 {
		r.Extra["unseen"] = unseenSeries(a, firstSeen)
	}
	r.Summary = fmt.Sprintf("%d positions, unseen at end %d", len(log), unseenEnd)
	if len(r.Anomalies) > 0 {
		r.Summary += "; " + r.anomalyKinds()
	} else {
		r.Summary += ", dense, unique, per-stream order kept, real-time order kept"
	}
	r.Millis = time.Since(start).Milliseconds()
	return r
}

type seenAt struct {
	t  int64
	id uint64
}

// unseenSeries returns [t_ns, count] points: acknowledged events not yet returned to any tailer.
func unseenSeries(a *Analysis, seen []seenAt) [][2]int64 {
	type ev struct {
		t     int64
		delta int64
	}
	seenAtID := map[uint64]int64{}
	for _, s := range seen {
		seenAtID[s.id] = s.t
	}
	var evs []ev
	for _, w := range a.Writes {
		if w.Outcome != history.OK {
			continue
		}
		for _, id := range w.IDs {
			evs = append(evs, ev{w.Return, 1})
			if t, ok := seenAtID[id]; ok {
				evs = append(evs, ev{max(t, w.Return), -1})
			}
		}
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].t < evs[j].t })
	var out [][2]int64
	var cur int64
	var step int64 = 250 * int64(time.Millisecond)
	next := int64(0)
	for _, e := range evs {
		for next < e.t {
			out = append(out, [2]int64{next, cur})
			next += step
		}
		cur += e.delta
	}
	out = append(out, [2]int64{next, cur})
	return out
}

// extendsWithUnknown reports whether log is read followed only by events of unknown appends.
func extendsWithUnknown(log, read []uint64, unknown map[uint64]bool) bool {
	if len(log) < len(read) || !sameIDs(log[:len(read)], read) {
		return false
	}
	for _, id := range log[len(read):] {
		if !unknown[id] {
			return false
		}
	}
	return true
}

// allUnknown reports whether every record was written by an append whose outcome was unknown.
func allUnknown(recs []history.Record, unknown map[uint64]bool) bool {
	for _, rec := range recs {
		if !unknown[rec.ID] {
			return false
		}
	}
	return true
}
