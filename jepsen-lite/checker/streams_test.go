package checker

import (
	"testing"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

var (
	a1, a2, a3 = id(0, 1), id(0, 2), id(0, 3)
	b1, b2     = id(1, 1), id(1, 2)
)

// A correct history: sequential appends with expected revisions, a conflict, reads, an unknown
// append that landed (recovered) and one that did not (dropped).
func TestValidHistory(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", 0, []uint64{a1}, 1)
	h.appendOutcome(1, 5, 12, "s", 0, []uint64{b1}, history.Fail, history.ReasonWrongExpectedRevision)
	h.read(2, 20, 25, "s", []uint64{a1})
	h.appendOK(0, 30, 40, "s", 1, []uint64{a2, a3}, 3)
	h.appendOutcome(3, 41, 50, "s", history.ExpectAny, []uint64{b2}, history.Info, history.ReasonOutcomeUnknown) // landed
	h.appendOutcome(4, 42, 51, "s", 3, []uint64{id(2, 1)}, history.Info, "transport:Unavailable")                // did not
	h.read(2, 60, 70, "s", []uint64{a1, a2, a3, b2})
	h.final(5, 100, 110, "s", []uint64{a1, a2, a3, b2})
	h.probe(6, 95, 99)
	rep, err := Check(h.ops(), Options{Linear: LinearOptions{Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Verdict == Invalid || r.Verdict == Unknown {
			t.Errorf("%s: %s: %s %+v", r.Name, r.Verdict, r.Summary, r.Anomalies)
		}
	}
	if rep.Verdict != Valid {
		t.Fatalf("verdict %s", rep.Verdict)
	}
	lin := rep.Get("linearizable")
	if lin.Counts["recovered"] != 1 || lin.Counts["dropped"] != 1 || lin.Counts["acked"] != 3 {
		t.Fatalf("resolution counts %v", lin.Counts)
	}
}

// lost: an acknowledged append missing from the final stream; per writer it is a lost middle
// (the writer's earlier and later events survived).
func TestLostMiddle(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, 1)
	h.appendOK(0, 20, 30, "s", history.ExpectAny, []uint64{a2}, 2)
	h.appendOK(0, 40, 50, "s", history.ExpectAny, []uint64{a3}, 2) // claims 2 as well: the server lost a2
	h.final(1, 100, 110, "s", []uint64{a1, a3})
	a := analyze(t, &h)
	r := VersionOrder(a)
	an := wantAnomaly(t, r, "lost")
	if r.Counts["lost-middle"] != 1 || an.IDs[0] != "0:2" {
		t.Fatalf("want one lost middle 0:2, got %v %+v", r.Counts, an)
	}
	wantVerdict(t, Linearizable(a, LinearOptions{}), Invalid)
}

func TestLostPostfix(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, 1)
	h.appendOK(0, 20, 30, "s", history.ExpectAny, []uint64{a2}, 2)
	h.final(1, 100, 110, "s", []uint64{a1})
	r := VersionOrder(analyze(t, &h))
	wantAnomaly(t, r, "lost")
	if r.Counts["lost-postfix"] != 1 {
		t.Fatalf("counts %v", r.Counts)
	}
}

// duplicate: a retried append written twice (duplicate-on-retry).
func TestDuplicateOnRetry(t *testing.T) {
	var h hist
	h.appendOutcome(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, history.Info, history.ReasonOutcomeUnknown)
	h.op(1, 11, 20, history.Op{F: history.Append, Stream: "s", Expected: history.ExpectAny, Events: []uint64{a1}, Attempt: 1},
		&history.Op{Type: history.OK, Version: 2})
	h.final(2, 100, 110, "s", []uint64{a1, a1})
	a := analyze(t, &h)
	wantAnomaly(t, VersionOrder(a), "duplicate")
	wantVerdict(t, Linearizable(a, LinearOptions{}), Invalid)
}

// A retry answered with the original result is fine.
func TestIdempotentRetryValid(t *testing.T) {
	var h hist
	h.appendOutcome(0, 0, 10, "s", 0, []uint64{a1}, history.Info, history.ReasonOutcomeUnknown)
	h.op(1, 11, 20, history.Op{F: history.Append, Stream: "s", Expected: 0, Events: []uint64{a1}, Attempt: 1},
		&history.Op{Type: history.OK, Version: 1, Idempotent: true})
	h.final(2, 100, 110, "s", []uint64{a1})
	a := analyze(t, &h)
	wantVerdict(t, VersionOrder(a), Valid)
	wantVerdict(t, Linearizable(a, LinearOptions{}), Valid)
}

// inconsistent-versions: one revision seen holding two different events.
func TestInconsistentVersions(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, 1)
	h.appendOK(1, 0, 10, "s", history.ExpectAny, []uint64{b1}, 1)
	h.final(2, 100, 110, "s", []uint64{a1, b1})
	a := analyze(t, &h)
	wantAnomaly(t, VersionOrder(a), "inconsistent-versions")
	wantVerdict(t, Linearizable(a, LinearOptions{}), Invalid)
}

// Two acknowledged appends with the same expected revision (version-check-on-leader): not
// linearizable.
func TestTwoWinnersSameExpected(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", 0, []uint64{a1}, 1)
	h.appendOK(1, 0, 10, "s", 0, []uint64{b1}, 2)
	h.final(2, 100, 110, "s", []uint64{a1, b1})
	wantAnomaly(t, linear(t, &h), "not-linearizable")
}

// A conflict reported although the expected revision matched.
func TestUntruthfulConflict(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", 0, []uint64{a1}, 1)
	h.op(1, 20, 30, history.Op{F: history.Append, Stream: "s", Expected: 1, Events: []uint64{b1}},
		&history.Op{Type: history.Fail, Error: history.ReasonWrongExpectedRevision, Version: 1})
	h.final(2, 100, 110, "s", []uint64{a1})
	wantAnomaly(t, linear(t, &h), "not-linearizable")
}

// failed-visible: an append reported as a definite failure (leadership-lost-reported-as-failure)
// is in the final stream.
func TestFailedVisible(t *testing.T) {
	var h hist
	h.appendOutcome(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, history.Fail, history.ReasonNoLeader)
	h.final(1, 100, 110, "s", []uint64{a1})
	a := analyze(t, &h)
	wantAnomaly(t, VersionOrder(a), "failed-visible")
	wantVerdict(t, Linearizable(a, LinearOptions{}), Invalid)
}

// stale-read: a linearizable read that misses an append acknowledged before it started
// (stale-leader-read).
func TestStaleRead(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, 1)
	h.appendOK(0, 20, 30, "s", history.ExpectAny, []uint64{a2}, 2)
	h.read(1, 40, 50, "s", []uint64{a1})
	h.final(2, 100, 110, "s", []uint64{a1, a2})
	h.nemesis(1, "pause-leader", 35, 60, "n1")
	a := analyze(t, &h)
	an := wantAnomaly(t, VersionOrder(a), "stale-read")
	if an.Ops[1] == 0 {
		t.Fatalf("anomaly should name the append that was visible: %+v", an)
	}
	wantVerdict(t, Linearizable(a, LinearOptions{}), Invalid)
}

// A read concurrent with an append may or may not see it.
func TestConcurrentReadValid(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 50, "s", history.ExpectAny, []uint64{a1}, 1)
	h.read(1, 10, 20, "s", nil)
	h.read(2, 30, 40, "s", []uint64{a1})
	h.final(3, 100, 110, "s", []uint64{a1})
	a := analyze(t, &h)
	wantVerdict(t, VersionOrder(a), Valid)
	wantVerdict(t, Linearizable(a, LinearOptions{}), Valid)
}

// Monotonic reads across real time: once a read saw an event, a later read must see it.
func TestStaleAfterRead(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 100, "s", history.ExpectAny, []uint64{a1}, 1)
	h.read(1, 10, 20, "s", []uint64{a1})
	h.read(2, 30, 40, "s", nil)
	h.final(3, 200, 210, "s", []uint64{a1})
	wantAnomaly(t, VersionOrder(analyze(t, &h)), "stale-read")
	wantVerdict(t, linear(t, &h), Invalid)
}

// realtime-inversion: an append invoked after another was acknowledged lands before it.
func TestRealtimeInversion(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, 1)
	h.appendOutcome(1, 20, 30, "s", history.ExpectAny, []uint64{b1}, history.Info, "transport:DeadlineExceeded")
	h.final(2, 100, 110, "s", []uint64{b1, a1})
	a := analyze(t, &h)
	r := VersionOrder(a)
	wantAnomaly(t, r, "realtime-inversion")
	wantVerdict(t, Linearizable(a, LinearOptions{}), Invalid)
}

// split-batch: only part of an append's batch is stored (atomicity).
func TestSplitBatch(t *testing.T) {
	var h hist
	h.appendOutcome(0, 0, 10, "s", history.ExpectAny, []uint64{a1, a2}, history.Info, history.ReasonOutcomeUnknown)
	h.final(1, 100, 110, "s", []uint64{a1})
	a := analyze(t, &h)
	wantAnomaly(t, VersionOrder(a), "split-batch")
	wantVerdict(t, Linearizable(a, LinearOptions{}), Invalid)
}

// unexpected: an event nobody appended.
func TestUnexpected(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, 1)
	h.final(1, 100, 110, "s", []uint64{a1, id(7, 7)})
	a := analyze(t, &h)
	wantAnomaly(t, VersionOrder(a), "unexpected")
	wantVerdict(t, Linearizable(a, LinearOptions{}), Invalid)
}

// vanished: an append of unknown outcome seen by a linearizable read, then gone.
func TestVanished(t *testing.T) {
	var h hist
	h.appendOutcome(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, history.Info, history.ReasonOutcomeUnknown)
	h.read(1, 20, 30, "s", []uint64{a1})
	h.final(2, 100, 110, "s", nil)
	a := analyze(t, &h)
	wantAnomaly(t, VersionOrder(a), "vanished")
	wantVerdict(t, Linearizable(a, LinearOptions{}), Invalid)
}

// An append of unknown outcome may become visible late (after its client gave up): valid. Once
// read, it may not disappear (TestVanished).
func TestIndefiniteAppearsLate(t *testing.T) {
	var h hist
	h.appendOutcome(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, history.Info, history.ReasonOutcomeUnknown)
	h.read(1, 20, 30, "s", nil)
	h.read(2, 40, 50, "s", []uint64{a1})
	h.final(3, 100, 110, "s", []uint64{a1})
	a := analyze(t, &h)
	wantVerdict(t, VersionOrder(a), Valid)
	wantVerdict(t, Linearizable(a, LinearOptions{}), Valid)
}

// divergent-read: a linearizable read that is not a prefix of the final stream.
func TestDivergentRead(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, 1)
	h.appendOutcome(1, 0, 10, "s", 1, []uint64{b1}, history.Info, history.ReasonOutcomeUnknown)
	h.appendOK(0, 20, 30, "s", 1, []uint64{a2}, 2)
	h.read(2, 15, 16, "s", []uint64{a1, b1})
	h.final(3, 100, 110, "s", []uint64{a1, a2})
	a := analyze(t, &h)
	wantAnomaly(t, VersionOrder(a), "divergent-read")
	wantVerdict(t, Linearizable(a, LinearOptions{}), Invalid)
}

// Head reads take part in the model.
func TestStaleHead(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, 1)
	h.op(1, 20, 30, history.Op{F: history.Head, Stream: "s"}, &history.Op{Type: history.OK, Version: 0})
	h.final(2, 100, 110, "s", []uint64{a1})
	a := analyze(t, &h)
	wantAnomaly(t, VersionOrder(a), "stale-read")
	wantVerdict(t, Linearizable(a, LinearOptions{}), Invalid)
}

// Porcupine's Unknown (out of time) is not a pass.
func TestLinearUnknownIsNotPass(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, 1)
	h.final(1, 100, 110, "s", []uint64{a1})
	r := Linearizable(analyze(t, &h), LinearOptions{Budget: time.Nanosecond})
	wantVerdict(t, r, Unknown)
	if Combine([]*Result{r}) != Unknown {
		t.Fatal("an Unknown linearizability result must make the run Unknown")
	}
}

// Without a final read the truth is missing: unknown, never valid.
func TestMissingFinalReadIsUnknown(t *testing.T) {
	var h hist
	h.appendOutcome(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, history.Info, history.ReasonOutcomeUnknown)
	a := analyze(t, &h)
	wantVerdict(t, Linearizable(a, LinearOptions{}), Unknown)
	wantVerdict(t, VersionOrder(a), Unknown)
}

// The failing stream is visualised, with fault windows.
func TestVisualization(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s/1", history.ExpectAny, []uint64{a1}, 1)
	h.read(1, 20, 30, "s/1", nil)
	h.final(2, 100, 110, "s/1", []uint64{a1})
	h.nemesis(1, "isolate-leader", 15, 40, "n1")
	dir := t.TempDir()
	r := Linearizable(analyze(t, &h), LinearOptions{VizDir: dir})
	wantVerdict(t, r, Invalid)
	viz, _ := r.Extra["viz"].([]string)
	if len(viz) != 1 || viz[0] != "linear/s_1.html" {
		t.Fatalf("viz %v (%v)", viz, r.Extra["viz_error"])
	}
}

func TestModelStep(t *testing.T) {
	s := State{}
	ok, s1 := Step(s, Input{Kind: OpAppend, Expected: 0, IDs: []uint64{1, 2}}, Output{Outcome: Ok, Version: 2})
	if !ok || s1.Version != 2 || s1.LastID != 2 || s1.Hash != Fold(0, []uint64{1, 2}) {
		t.Fatalf("append: %v %+v", ok, s1)
	}
	if Fold(Fold(0, []uint64{1}), []uint64{2}) != Fold(0, []uint64{1, 2}) {
		t.Fatal("Fold is not a chain")
	}
	if ok, _ := Step(s1, Input{Kind: OpAppend, Expected: 0, IDs: []uint64{3}}, Output{Outcome: Conflict, Version: 2}); !ok {
		t.Fatal("truthful conflict refused")
	}
	if ok, _ := Step(s1, Input{Kind: OpAppend, Expected: 0, IDs: []uint64{3}}, Output{Outcome: Conflict, Version: 5}); ok {
		t.Fatal("conflict with a wrong current length accepted")
	}
	if ok, s2 := Step(s1, Input{Kind: OpAppend, Expected: 0, IDs: []uint64{3}}, Output{Outcome: Indefinite}); !ok || s2 != s1 {
		t.Fatal("indefinite append with a mismatched condition must be a no-op")
	}
	if ok, _ := Step(s1, Input{Kind: OpRead}, Output{Version: 2, Hash: s1.Hash}); !ok {
		t.Fatal("read refused")
	}
	if ok, _ := Step(s1, Input{Kind: OpHead}, Output{Version: 2, LastID: 1}); ok {
		t.Fatal("head with a wrong last id accepted")
	}
}

func TestPairRejectsOverlap(t *testing.T) {
	ops := []history.Op{
		{Index: 0, Process: 1, Type: history.Invoke, F: history.Read, Stream: "s"},
		{Index: 1, Process: 1, Type: history.Invoke, F: history.Read, Stream: "s"},
	}
	if _, _, err := history.Pair(ops); err == nil {
		t.Fatal("overlapping ops of one process accepted")
	}
}

// condition-violated: the second winner of an expected revision is named by the version-order
// checker too.
func TestConditionViolated(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", 0, []uint64{a1}, 1)
	h.appendOK(1, 0, 10, "s", 0, []uint64{b1}, 2)
	h.final(2, 100, 110, "s", []uint64{a1, b1})
	wantAnomaly(t, VersionOrder(analyze(t, &h)), "condition-violated")
}
