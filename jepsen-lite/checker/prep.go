package checker

import (
	"fmt"
	"sort"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

// Write is one logical append: every attempt that carried the same event ids (the first try and
// its retries after unknown outcomes). Its outcome is OK if any attempt was acknowledged, Info if
// none was but some attempt's outcome is unknown, and Fail only if every attempt definitely failed.
type Write struct {
	Stream   string
	IDs      []uint64
	Expected int64
	Attempts []history.Operation
	Outcome  history.Type
	// Acked is the first acknowledged attempt (Outcome OK).
	Acked *history.Operation
	// Call is the first attempt's call; Return the acknowledged attempt's return, or Never.
	Call, Return int64
}

// Version is the stream length the acknowledgement reported (0 unless OK).
func (w *Write) Version() int64 {
	if w.Acked == nil {
		return 0
	}
	return w.Acked.Out().Version
}

// Positions returns the acknowledged first and last global positions (0, 0 if unknown).
func (w *Write) Positions() (uint64, uint64) {
	if w.Acked == nil || len(w.Acked.Out().Positions) != 2 {
		return 0, 0
	}
	p := w.Acked.Out().Positions
	return p[0], p[1]
}

// LogIndex is the acknowledged raft index (0 unless OK).
func (w *Write) LogIndex() uint64 {
	if w.Acked == nil {
		return 0
	}
	return w.Acked.Out().LogIndex
}

// FirstOp is the history index of the first attempt's invoke.
func (w *Write) FirstOp() int { return w.Attempts[0].Inv.Index }

// Place is where an event was seen: a stream revision.
type Place struct {
	Stream   string
	Revision int64
}

// Analysis is the shared view every checker starts from.
type Analysis struct {
	Ops        []history.Op
	Operations []history.Operation
	Windows    []history.Window
	// Writes in order of first call; ByID maps every attempted event id to its write.
	Writes []*Write
	ByID   map[uint64]*Write
	// Truth is each stream's final content (ids by revision) from the last ok final read, and
	// TruthOp that read. Streams appended to without an ok final read are in Missing.
	Truth   map[string][]uint64
	TruthOp map[string]history.Operation
	Missing []string
	// Reads are ok LINEARIZABLE whole-stream reads (Read and FinalRead) and heads, in call order.
	Reads []history.Operation
	// Drains are the ok final reads of the whole global log, by node; Log is the reference one
	// (the drain marked "reference", else the longest) and LogNode its node. Streams without a
	// final read take their truth from Log.
	Drains  map[string]history.Operation
	Log     []history.Record
	LogNode string
	// Problems are inconsistencies in the history itself (not anomalies of the system).
	Problems []string
}

// Analyze pairs the history and groups appends into logical writes.
func Analyze(ops []history.Op) (*Analysis, error) {
	operations, windows, err := history.Pair(ops)
	if err != nil {
		return nil, err
	}
	a := &Analysis{Ops: ops, Operations: operations, Windows: windows, ByID: map[uint64]*Write{},
		Truth: map[string][]uint64{}, TruthOp: map[string]history.Operation{}, Drains: map[string]history.Operation{}}
	byKey := map[uint64]*Write{}
	for _, o := range operations {
		switch o.F() {
		case history.Append:
			ids := o.Inv.Events
			if len(ids) == 0 {
				a.Problems = append(a.Problems, fmt.Sprintf("append op %d has no events", o.Inv.Index))
				continue
			}
			w, ok := byKey[ids[0]]
			if !ok {
				w = &Write{Stream: o.Stream(), IDs: ids, Expected: o.Inv.Expected, Call: o.Call, Return: history.Never}
				byKey[ids[0]] = w
				a.Writes = append(a.Writes, w)
				for _, id := range ids {
					if prev, dup := a.ByID[id]; dup && prev != w {
						a.Problems = append(a.Problems, fmt.Sprintf("event %s is in two different appends", history.IDString(id)))
					}
					a.ByID[id] = w
				}
			} else if !sameIDs(w.IDs, ids) || w.Stream != o.Stream() {
				a.Problems = append(a.Problems, fmt.Sprintf("retry op %d changed the events or stream of op %d", o.Inv.Index, w.FirstOp()))
			}
			w.Attempts = append(w.Attempts, o)
		case history.Read, history.Head:
			if o.Type == history.OK {
				a.Reads = append(a.Reads, o)
			}
		case history.FinalRead:
			if o.Type == history.OK && o.Out().End {
				a.Reads = append(a.Reads, o)
				a.Truth[o.Stream()] = o.Out().Events
				a.TruthOp[o.Stream()] = o
			}
		case history.Drain:
			if o.Type == history.OK && o.Out().End {
				a.Drains[o.Node()] = o
			}
		}
	}
	a.chooseLog()
	for _, w := range a.Writes {
		w.Outcome = history.Fail
		for i := range w.Attempts {
			at := &w.Attempts[i]
			switch at.Type {
			case history.OK:
				if w.Acked == nil {
					w.Acked = at
					w.Outcome = history.OK
					w.Return = at.Return
				}
			case history.Info:
				if w.Outcome == history.Fail {
					w.Outcome = history.Info
				}
			}
		}
	}
	seen := map[string]bool{}
	for _, w := range a.Writes {
		if _, ok := a.Truth[w.Stream]; !ok && !seen[w.Stream] && w.Outcome != history.Fail {
			seen[w.Stream] = true
			a.Missing = append(a.Missing, w.Stream)
		}
	}
	sort.Strings(a.Missing)
	return a, nil
}

// chooseLog picks the reference drain and derives the truth of streams without a final read.
func (a *Analysis) chooseLog() {
	nodes := make([]string, 0, len(a.Drains))
	for n := range a.Drains {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	best := ""
	for _, n := range nodes {
		d := a.Drains[n]
		if d.Inv.Value == "reference" {
			best = n
			break
		}
		if best == "" || len(d.Out().Records) > len(a.Drains[best].Out().Records) {
			best = n
		}
	}
	if best == "" {
		return
	}
	a.LogNode, a.Log = best, a.Drains[best].Out().Records
	derived := map[string][]uint64{}
	for _, r := range a.Log {
		if _, ok := a.Truth[r.Stream]; !ok {
			derived[r.Stream] = append(derived[r.Stream], r.ID)
		}
	}
	for s, ids := range derived {
		a.Truth[s] = ids
	}
	// Streams written but absent from the log are empty in the truth: their writes were lost.
	for _, w := range a.Writes {
		if _, ok := a.Truth[w.Stream]; !ok {
			a.Truth[w.Stream] = nil
		}
	}
}

func sameIDs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// truthIndex maps every id in the truth to its places (more than one is a duplicate).
func (a *Analysis) truthIndex() map[uint64][]Place {
	idx := map[uint64][]Place{}
	for s, ids := range a.Truth {
		for r, id := range ids {
			idx[id] = append(idx[id], Place{s, int64(r)})
		}
	}
	return idx
}

// readLen is a whole-stream read's length: From + returned events (Version for heads).
func readLen(o history.Operation) int64 {
	if o.F() == history.Head {
		return o.Out().Version
	}
	return int64(o.Inv.From) + int64(len(o.Out().Events))
}

// inWindow reports the faults active at time t.
func (a *Analysis) faultsAt(t int64) []string {
	var out []string
	for _, w := range a.Windows {
		if w.Start <= t && t <= w.Stop {
			out = append(out, w.Fault)
		}
	}
	return out
}
