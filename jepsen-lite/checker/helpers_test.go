package checker

import (
	"sort"
	"testing"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

// hist builds hand-written histories. Times are in arbitrary units (ns); every operation is given
// its call and return time explicitly so concurrency is visible in the test.
type hist struct {
	recs []history.Op
}

// op adds an operation: inv is the invoke record (Type and Time are set here), comp the
// completion (nil: never completed).
func (h *hist) op(p int, call, ret int64, inv history.Op, comp *history.Op) {
	inv.Process, inv.Type, inv.Time = p, history.Invoke, call
	h.recs = append(h.recs, inv)
	if comp != nil {
		c := *comp
		c.Process, c.Time = p, ret
		if c.F == "" {
			c.F = inv.F
		}
		if c.Stream == "" {
			c.Stream = inv.Stream
		}
		if c.Node == "" {
			c.Node = inv.Node
		}
		h.recs = append(h.recs, c)
	}
}

func id(writer int, n uint32) uint64 { return history.MakeID(writer, n) }

// appendOK adds an acknowledged append of ids to stream at stream length version (after).
func (h *hist) appendOK(p int, call, ret int64, stream string, expected int64, ids []uint64, version int64) {
	h.op(p, call, ret, history.Op{F: history.Append, Stream: stream, Expected: expected, Events: ids},
		&history.Op{Type: history.OK, Version: version})
}

// appendOutcome adds an append completed with typ and reason (fail or info).
func (h *hist) appendOutcome(p int, call, ret int64, stream string, expected int64, ids []uint64, typ history.Type, reason string) {
	h.op(p, call, ret, history.Op{F: history.Append, Stream: stream, Expected: expected, Events: ids},
		&history.Op{Type: typ, Error: reason, Version: -1})
}

// read adds an ok linearizable read returning ids.
func (h *hist) read(p int, call, ret int64, stream string, ids []uint64) {
	h.op(p, call, ret, history.Op{F: history.Read, Stream: stream},
		&history.Op{Type: history.OK, Events: ids, Version: int64(len(ids)), End: true, ServedBy: "n1"})
}

// final adds the final read of a stream.
func (h *hist) final(p int, call, ret int64, stream string, ids []uint64) {
	h.op(p, call, ret, history.Op{F: history.FinalRead, Stream: stream, Final: true},
		&history.Op{Type: history.OK, Events: ids, Version: int64(len(ids)), End: true, ServedBy: "n1", Final: true})
}

// probe adds the liveness probe append of the final phase.
func (h *hist) probe(p int, call, ret int64) {
	pid := id(99, uint32(call))
	h.op(p, call, ret, history.Op{F: history.Append, Stream: "probe", Expected: history.ExpectAny, Events: []uint64{pid}, Final: true},
		&history.Op{Type: history.OK, Version: 1, Final: true})
	h.final(p, ret+1, ret+2, "probe", []uint64{pid})
}

func (h *hist) nemesis(id int, fault string, start, stop int64, targets ...string) {
	h.recs = append(h.recs,
		history.Op{Process: history.NemesisProcess, Type: history.Info, F: history.Nemesis, Fault: fault, Action: "start", FaultID: id, Targets: targets, Time: start},
		history.Op{Process: history.NemesisProcess, Type: history.Info, F: history.Nemesis, Fault: fault, Action: "stop", FaultID: id, Targets: targets, Time: stop})
}

// ops returns the records sorted by time with indexes assigned.
func (h *hist) ops() []history.Op {
	out := append([]history.Op(nil), h.recs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time < out[j].Time })
	for i := range out {
		out[i].Index = i
	}
	return out
}

func analyze(t *testing.T, h *hist) *Analysis {
	t.Helper()
	a, err := Analyze(h.ops())
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Problems) > 0 {
		t.Fatalf("history problems: %v", a.Problems)
	}
	return a
}

func linear(t *testing.T, h *hist) *Result {
	t.Helper()
	return Linearizable(analyze(t, h), LinearOptions{Timeout: 10 * time.Second})
}

// wantVerdict fails unless r has verdict v.
func wantVerdict(t *testing.T, r *Result, v Verdict) {
	t.Helper()
	if r.Verdict != v {
		t.Fatalf("%s: verdict %s, want %s\nsummary: %s\nanomalies: %+v", r.Name, r.Verdict, v, r.Summary, r.Anomalies)
	}
}

// wantAnomaly fails unless r is Invalid with at least one anomaly of kind.
func wantAnomaly(t *testing.T, r *Result, kind string) Anomaly {
	t.Helper()
	wantVerdict(t, r, Invalid)
	for _, a := range r.Anomalies {
		if a.Kind == kind {
			return a
		}
	}
	t.Fatalf("%s: no %q anomaly; got %+v", r.Name, kind, r.Anomalies)
	return Anomaly{}
}

// wantNoAnomaly fails if r has an anomaly of kind.
func wantNoAnomaly(t *testing.T, r *Result, kind string) {
	t.Helper()
	if r.Counts[kind] > 0 {
		t.Fatalf("%s: unexpected %q anomaly: %+v", r.Name, kind, r.Anomalies)
	}
}
