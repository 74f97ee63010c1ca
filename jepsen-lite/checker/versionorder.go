package checker

import (
	"fmt"
	"sort"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

// VersionOrder is the Elle-style checker for streams: with unique event ids and reads that return
// whole streams, the order of versions is observed, not searched for, so it runs in linear time
// and names every anomaly in plain words. It reports:
//
//   - lost: an acknowledged append absent from the final stream, split per writer into lost
//     prefix, middle and postfix (middle is the damning case: later writes of the same writer
//     survived);
//   - duplicate: an event at two places of the final stream (or twice in one read);
//   - inconsistent-versions: one stream revision seen holding two different events, or an
//     acknowledged append found at other revisions than acknowledged;
//   - split-batch: only part of an append present, or not contiguous (atomicity);
//   - failed-visible: an append that definitely failed is visible;
//   - vanished: an append of unknown outcome seen by a linearizable read, absent at the end;
//   - unexpected: an event nobody appended;
//   - divergent-read: a linearizable read that is not a prefix of the final stream;
//   - stale-read: a linearizable read shorter than what was visible before it started;
//   - realtime-inversion: an append invoked after another was acknowledged (or read) but
//     ordered before it;
//   - condition-violated: an append with an expected revision that landed elsewhere (two
//     appends with the same expected revision both won).
func VersionOrder(a *Analysis) *Result {
	start := time.Now()
	r := newResult("version-order", true)
	truthIdx := a.truthIndex()

	// Duplicates in the truth.
	for id, places := range truthIdx {
		if len(places) > 1 {
			r.add(Anomaly{Kind: "duplicate", Stream: places[0].Stream, IDs: []string{history.IDString(id)},
				Detail: fmt.Sprintf("event %s is stored %d times: %v", history.IDString(id), len(places), places)})
		}
	}
	// Unexpected events in the truth.
	for s, ids := range a.Truth {
		for rev, id := range ids {
			if _, ok := a.ByID[id]; !ok {
				r.add(Anomaly{Kind: "unexpected", Stream: s, IDs: []string{history.IDString(id)},
					Detail: fmt.Sprintf("revision %d of %s holds event %s, which nobody appended", rev, s, history.IDString(id))})
			}
		}
	}

	// Observed versions: (stream, revision) -> id, from acknowledged appends and reads.
	type obs struct {
		id uint64
		op int
	}
	observed := map[Place]obs{}
	observe := func(s string, rev int64, id uint64, op int, t int64) {
		p := Place{s, rev}
		if prev, ok := observed[p]; ok && prev.id != id {
			r.add(Anomaly{Kind: "inconsistent-versions", Stream: s, IDs: []string{history.IDString(prev.id), history.IDString(id)},
				Ops: []int{prev.op, op}, Time: t,
				Detail: fmt.Sprintf("revision %d of %s was seen holding %s (op %d) and %s (op %d)", rev, s,
					history.IDString(prev.id), prev.op, history.IDString(id), op)})
			return
		}
		if _, ok := observed[p]; !ok {
			observed[p] = obs{id, op}
		}
	}
	seenByRead := map[uint64]bool{}
	for _, rd := range a.Reads {
		out := rd.Out()
		if rd.F() == history.Head {
			if out.Version > 0 {
				observe(rd.Stream(), out.Version-1, out.LastID, rd.Inv.Index, rd.Return)
				seenByRead[out.LastID] = true
			}
			continue
		}
		inRead := map[uint64]bool{}
		for i, id := range out.Events {
			if inRead[id] {
				r.add(Anomaly{Kind: "duplicate", Stream: rd.Stream(), IDs: []string{history.IDString(id)}, Ops: []int{rd.Inv.Index},
					Time: rd.Return, Detail: fmt.Sprintf("read op %d returned event %s twice", rd.Inv.Index, history.IDString(id))})
			}
			inRead[id] = true
			seenByRead[id] = true
			observe(rd.Stream(), int64(rd.Inv.From)+int64(i), id, rd.Inv.Index, rd.Return)
			if _, ok := a.ByID[id]; !ok && truthIdx[id] == nil {
				r.add(Anomaly{Kind: "unexpected", Stream: rd.Stream(), IDs: []string{history.IDString(id)}, Ops: []int{rd.Inv.Index},
					Time: rd.Return, Detail: fmt.Sprintf("read op %d returned event %s, which nobody appended", rd.Inv.Index, history.IDString(id))})
			}
		}
	}
	for _, w := range a.Writes {
		if w.Outcome != history.OK {
			continue
		}
		v := w.Version()
		n := int64(len(w.IDs))
		for i, id := range w.IDs {
			observe(w.Stream, v-n+int64(i), id, w.Acked.Inv.Index, w.Return)
		}
	}

	// Every logical write against the truth.
	missing := map[string]bool{}
	for _, s := range a.Missing {
		missing[s] = true
	}
	type writerID struct {
		seq     uint32
		present bool
		lost    bool
	}
	perWriter := map[int][]writerID{}
	recovered := 0
	for _, w := range a.Writes {
		if missing[w.Stream] {
			continue
		}
		var present []Place
		for _, id := range w.IDs {
			for _, p := range truthIdx[id] {
				if p.Stream == w.Stream {
					present = append(present, p)
					break
				}
			}
		}
		contiguous := len(present) == len(w.IDs)
		for i := 1; contiguous && i < len(present); i++ {
			contiguous = present[i].Revision == present[0].Revision+int64(i)
		}
		ids := idStrings(w.IDs)
		if w.Outcome != history.Fail && contiguous && w.Expected != history.ExpectAny && present[0].Revision != w.Expected {
			r.add(Anomaly{Kind: "condition-violated", Stream: w.Stream, IDs: ids, Ops: attemptOps(w), Time: w.Return,
				Detail: fmt.Sprintf("append op %d required the stream to have %d events, yet landed at revision %d (%s)",
					w.FirstOp(), w.Expected, present[0].Revision, w.Outcome)})
		}
		switch w.Outcome {
		case history.OK:
			v := w.Version()
			switch {
			case len(present) == 0:
				// counted per writer below
			case !contiguous:
				r.add(Anomaly{Kind: "split-batch", Stream: w.Stream, IDs: ids, Ops: []int{w.FirstOp()}, Time: w.Return,
					Detail: fmt.Sprintf("acknowledged append op %d: %d of its %d events present, at %v", w.FirstOp(), len(present), len(w.IDs), present)})
			case present[0].Revision != v-int64(len(w.IDs)):
				r.add(Anomaly{Kind: "inconsistent-versions", Stream: w.Stream, IDs: ids, Ops: []int{w.FirstOp()}, Time: w.Return,
					Detail: fmt.Sprintf("append op %d was acknowledged at revisions %d..%d but is stored at %d..%d", w.FirstOp(),
						v-int64(len(w.IDs)), v-1, present[0].Revision, present[len(present)-1].Revision)})
			}
		case history.Info:
			switch {
			case contiguous:
				recovered++
			case len(present) > 0:
				r.add(Anomaly{Kind: "split-batch", Stream: w.Stream, IDs: ids, Ops: []int{w.FirstOp()},
					Detail: fmt.Sprintf("append op %d (outcome unknown): %d of its %d events present, at %v", w.FirstOp(), len(present), len(w.IDs), present)})
			default:
				for _, id := range w.IDs {
					if seenByRead[id] {
						r.add(Anomaly{Kind: "vanished", Stream: w.Stream, IDs: ids, Ops: []int{w.FirstOp()},
							Detail: fmt.Sprintf("append op %d (outcome unknown) was seen by a linearizable read, then disappeared", w.FirstOp())})
						break
					}
				}
			}
		case history.Fail:
			visible := len(present) > 0
			for _, id := range w.IDs {
				visible = visible || seenByRead[id]
			}
			if visible {
				reasons := map[string]bool{}
				for _, at := range w.Attempts {
					reasons[at.Out().Error] = true
				}
				r.add(Anomaly{Kind: "failed-visible", Stream: w.Stream, IDs: ids, Ops: attemptOps(w),
					Detail: fmt.Sprintf("append op %d failed definitely (%v) yet its events are visible", w.FirstOp(), keys(reasons))})
			}
		}
		if w.Outcome != history.Fail {
			for _, id := range w.IDs {
				lost := w.Outcome == history.OK && len(present) == 0
				perWriter[history.IDWriter(id)] = append(perWriter[history.IDWriter(id)],
					writerID{seq: history.IDSeq(id), present: len(present) > 0, lost: lost})
			}
		}
	}
	// Lost writes, per writer: prefix / middle / postfix of what survived.
	lostIDs := map[uint64]string{}
	for writer, list := range perWriter {
		sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
		firstPresent, lastPresent := -1, -1
		for i, e := range list {
			if e.present {
				if firstPresent < 0 {
					firstPresent = i
				}
				lastPresent = i
			}
		}
		for i, e := range list {
			if !e.lost {
				continue
			}
			kind := "middle"
			switch {
			case firstPresent < 0 || i < firstPresent:
				kind = "prefix"
			case i > lastPresent:
				kind = "postfix"
			}
			lostIDs[history.MakeID(writer, e.seq)] = kind
		}
	}
	for _, w := range a.Writes {
		if w.Outcome != history.OK {
			continue
		}
		kind, lost := lostIDs[w.IDs[0]]
		if !lost {
			continue
		}
		r.Counts["lost-"+kind]++
		r.add(Anomaly{Kind: "lost", Stream: w.Stream, IDs: idStrings(w.IDs), Ops: attemptOps(w), Time: w.Return,
			Detail: fmt.Sprintf("append op %d acknowledged at revision %d (node %s, %s) is missing from the final stream (lost %s of its writer)",
				w.FirstOp(), w.Version()-1, w.Acked.Node(), faultNote(a, w.Return), kind)})
	}

	// Linearizable reads must be prefixes of the final stream.
	for _, rd := range a.Reads {
		truth, ok := a.Truth[rd.Stream()]
		if !ok || missing[rd.Stream()] {
			continue
		}
		out := rd.Out()
		if rd.F() == history.Head {
			if out.Version > int64(len(truth)) || out.Version > 0 && truth[out.Version-1] != out.LastID {
				r.add(Anomaly{Kind: "divergent-read", Stream: rd.Stream(), Ops: []int{rd.Inv.Index}, Time: rd.Return,
					Detail: fmt.Sprintf("head op %d saw length %d ending in %s; the final stream has length %d", rd.Inv.Index,
						out.Version, history.IDString(out.LastID), len(truth))})
			}
			continue
		}
		for i, id := range out.Events {
			rev := int(rd.Inv.From) + i
			if rev >= len(truth) || truth[rev] != id {
				r.add(Anomaly{Kind: "divergent-read", Stream: rd.Stream(), IDs: []string{history.IDString(id)}, Ops: []int{rd.Inv.Index},
					Time: rd.Return, Detail: fmt.Sprintf("read op %d (served by %s) has %s at revision %d; the final stream has %s there",
						rd.Inv.Index, out.ServedBy, history.IDString(id), rev, truthAt(truth, rev))})
				break
			}
		}
	}

	// Real time: everything visible before an operation started must be visible to it.
	realtime(a, r, truthIdx, missing)

	r.Counts["acked"] = countOutcome(a, history.OK)
	r.Counts["recovered"] = recovered
	kinds := []string{"lost", "duplicate", "inconsistent-versions", "split-batch", "failed-visible", "vanished",
		"unexpected", "divergent-read", "stale-read", "realtime-inversion", "condition-violated"}
	if r.Verdict == Valid && len(a.Missing) > 0 {
		r.unknown()
	}
	r.Summary = fmt.Sprintf("acked %d, lost %d (prefix %d, middle %d, postfix %d), recovered %d; ",
		r.Counts["acked"], r.Counts["lost"], r.Counts["lost-prefix"], r.Counts["lost-middle"], r.Counts["lost-postfix"], recovered)
	var bad []string
	for _, k := range kinds[1:] {
		if r.Counts[k] > 0 {
			bad = append(bad, fmt.Sprintf("%s %d", k, r.Counts[k]))
		}
	}
	if len(bad) == 0 {
		r.Summary += "no other anomaly"
	} else {
		r.Summary += joinComma(bad)
	}
	r.Millis = time.Since(start).Milliseconds()
	return r
}

// realtime finds stale reads and real-time inversions per stream with one sweep: marks are
// (time an operation returned, stream length it made or saw visible); an operation invoked after
// a mark must see (read) or land after (append) that length.
func realtime(a *Analysis, r *Result, truthIdx map[uint64][]Place, missing map[string]bool) {
	type mark struct {
		t      int64
		length int64
		op     int
	}
	type probe struct {
		t     int64 // call
		first int64 // append: first revision in truth; read: length seen
		read  bool
		op    int
		stale string
	}
	marks := map[string][]mark{}
	probes := map[string][]probe{}
	for _, w := range a.Writes {
		if missing[w.Stream] || w.Outcome == history.Fail {
			continue
		}
		places := truthIdx[w.IDs[0]]
		lastPlaces := truthIdx[w.IDs[len(w.IDs)-1]]
		if len(places) != 1 || len(lastPlaces) != 1 || places[0].Stream != w.Stream {
			continue
		}
		if w.Outcome == history.OK {
			marks[w.Stream] = append(marks[w.Stream], mark{w.Return, lastPlaces[0].Revision + 1, w.FirstOp()})
		}
		probes[w.Stream] = append(probes[w.Stream], probe{t: w.Call, first: places[0].Revision, op: w.FirstOp()})
	}
	for _, rd := range a.Reads {
		if missing[rd.Stream()] {
			continue
		}
		l := readLen(rd)
		if rd.F() != history.Head && !rd.Out().End {
			continue
		}
		marks[rd.Stream()] = append(marks[rd.Stream()], mark{rd.Return, l, rd.Inv.Index})
		probes[rd.Stream()] = append(probes[rd.Stream()], probe{t: rd.Call, first: l, read: true, op: rd.Inv.Index,
			stale: rd.Out().ServedBy})
	}
	for s, ms := range marks {
		ps := probes[s]
		sort.Slice(ms, func(i, j int) bool { return ms[i].t < ms[j].t })
		sort.Slice(ps, func(i, j int) bool { return ps[i].t < ps[j].t })
		best := mark{length: 0, op: -1}
		j := 0
		for _, p := range ps {
			for j < len(ms) && ms[j].t < p.t {
				if ms[j].length > best.length {
					best = ms[j]
				}
				j++
			}
			if p.read && p.first < best.length {
				r.add(Anomaly{Kind: "stale-read", Stream: s, Ops: []int{p.op, best.op}, Time: p.t,
					Detail: fmt.Sprintf("read op %d (served by %s, %s) saw length %d, but op %d had made length %d visible before it started",
						p.op, p.stale, faultNote(a, p.t), p.first, best.op, best.length)})
			}
			if !p.read && p.first < best.length {
				r.add(Anomaly{Kind: "realtime-inversion", Stream: s, Ops: []int{p.op, best.op}, Time: p.t,
					Detail: fmt.Sprintf("append op %d was invoked after op %d made length %d visible, yet landed at revision %d",
						p.op, best.op, best.length, p.first)})
			}
		}
	}
}

func faultNote(a *Analysis, t int64) string {
	f := a.faultsAt(t)
	if len(f) == 0 {
		return "no fault active"
	}
	return fmt.Sprintf("during %v", f)
}

func truthAt(truth []uint64, rev int) string {
	if rev >= len(truth) {
		return "nothing"
	}
	return history.IDString(truth[rev])
}

func idStrings(ids []uint64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = history.IDString(id)
	}
	return out
}

func attemptOps(w *Write) []int {
	out := make([]int, len(w.Attempts))
	for i, at := range w.Attempts {
		out[i] = at.Inv.Index
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func countOutcome(a *Analysis, t history.Type) int {
	n := 0
	for _, w := range a.Writes {
		if w.Outcome == t {
			n++
		}
	}
	return n
}
