package checker

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/history"
)

func rec(id uint64, stream string, rev, pos uint64) history.Record {
	return history.Record{ID: id, Stream: stream, Revision: rev, Position: pos}
}

// appendAt adds an acknowledged append with global positions.
func (h *hist) appendAt(p int, call, ret int64, stream string, ids []uint64, version int64, pos0 uint64, logIndex uint64) {
	h.op(p, call, ret, history.Op{F: history.Append, Stream: stream, Expected: history.ExpectAny, Events: ids},
		&history.Op{Type: history.OK, Version: version, Positions: []uint64{pos0, pos0 + uint64(len(ids)) - 1}, LogIndex: logIndex})
}

func (h *hist) drain(p int, call, ret int64, node string, recs []history.Record, reference bool) {
	v := ""
	if reference {
		v = "reference"
	}
	h.op(p, call, ret, history.Op{F: history.Drain, Node: node, Value: v, Final: true},
		&history.Op{Type: history.OK, Records: recs, End: true, Final: true})
}

func (h *hist) page(p int, call, ret int64, from uint64, recs []history.Record) {
	h.op(p, call, ret, history.Op{F: history.ReadAll, From: from, Node: "n2"},
		&history.Op{Type: history.OK, Records: recs, ServedBy: "n2"})
}

// baseGlobal is a correct W2-style history: three appends on two streams, a tailer, drains.
func baseGlobal() *hist {
	var h hist
	h.appendAt(0, 0, 10, "x", []uint64{a1}, 1, 1, 5)
	h.appendAt(1, 20, 30, "y", []uint64{b1, b2}, 2, 2, 6)
	h.appendAt(0, 40, 50, "x", []uint64{a2}, 2, 4, 7)
	h.page(2, 5, 15, 1, []history.Record{rec(a1, "x", 0, 1)})
	h.page(2, 35, 45, 2, []history.Record{rec(b1, "y", 0, 2), rec(b2, "y", 1, 3)})
	return &h
}

var goodLog = []history.Record{rec(a1, "x", 0, 1), rec(b1, "y", 0, 2), rec(b2, "y", 1, 3), rec(a2, "x", 1, 4)}

func TestGlobalValid(t *testing.T) {
	h := baseGlobal()
	h.drain(3, 100, 110, "n1", goodLog, true)
	h.drain(3, 111, 120, "n2", goodLog, false)
	a := analyze(t, h)
	r := Global(a)
	wantVerdict(t, r, Valid)
	if r.Counts["unseen-at-end"] != 0 || r.Extra["unseen"] == nil {
		t.Fatalf("counts %v extra %v", r.Counts, r.Extra)
	}
	// Streams without a final read take their truth from the drain.
	wantVerdict(t, VersionOrder(a), Valid)
	wantVerdict(t, Linearizable(a, LinearOptions{}), Valid)
}

func drainOnly(t *testing.T, log []history.Record) *Result {
	t.Helper()
	h := baseGlobal()
	h.drain(3, 100, 110, "n1", log, true)
	return Global(analyze(t, h))
}

func TestGlobalGap(t *testing.T) {
	log := []history.Record{rec(a1, "x", 0, 1), rec(b1, "y", 0, 2), rec(b2, "y", 1, 3), rec(a2, "x", 1, 5)}
	wantAnomaly(t, drainOnly(t, log), "gap")
}

func TestGlobalDuplicatePosition(t *testing.T) {
	log := []history.Record{rec(a1, "x", 0, 1), rec(b1, "y", 0, 2), rec(b2, "y", 1, 2), rec(a2, "x", 1, 3)}
	wantAnomaly(t, drainOnly(t, log), "duplicate-position")
}

func TestGlobalDuplicateEvent(t *testing.T) {
	log := append(append([]history.Record(nil), goodLog...), rec(a2, "x", 2, 5))
	wantAnomaly(t, drainOnly(t, log), "duplicate")
}

func TestGlobalStreamOrder(t *testing.T) {
	log := []history.Record{rec(a1, "x", 0, 1), rec(b1, "y", 1, 2), rec(b2, "y", 0, 3), rec(a2, "x", 1, 4)}
	wantAnomaly(t, drainOnly(t, log), "stream-order")
}

// lost: an acknowledged append absent from $all (unseen at end > 0).
func TestGlobalLost(t *testing.T) {
	log := []history.Record{rec(a1, "x", 0, 1), rec(b1, "y", 0, 2), rec(b2, "y", 1, 3)}
	r := drainOnly(t, log)
	wantAnomaly(t, r, "lost")
	if r.Counts["unseen-at-end"] != 1 {
		t.Fatalf("unseen at end %d", r.Counts["unseen-at-end"])
	}
}

func TestGlobalWrongPosition(t *testing.T) {
	log := []history.Record{rec(b1, "y", 0, 1), rec(b2, "y", 1, 2), rec(a1, "x", 0, 3), rec(a2, "x", 1, 4)}
	wantAnomaly(t, drainOnly(t, log), "wrong-position")
}

// realtime-inversion: b was invoked after a2 was acknowledged at position 3, yet landed at 2.
func TestGlobalRealtimeInversion(t *testing.T) {
	var h hist
	h.appendAt(0, 0, 10, "x", []uint64{a1}, 1, 1, 5)
	h.appendAt(0, 20, 30, "x", []uint64{a2}, 2, 3, 7)
	h.appendOutcome(1, 40, 50, "y", history.ExpectAny, []uint64{b1}, history.Info, history.ReasonOutcomeUnknown)
	h.drain(3, 100, 110, "n1", []history.Record{rec(a1, "x", 0, 1), rec(b1, "y", 0, 2), rec(a2, "x", 1, 3)}, true)
	wantAnomaly(t, Global(analyze(t, &h)), "realtime-inversion")
}

func TestGlobalPollSkip(t *testing.T) {
	h := baseGlobal()
	h.page(4, 60, 70, 1, []history.Record{rec(a1, "x", 0, 1), rec(b2, "y", 1, 3)})
	h.drain(3, 100, 110, "n1", goodLog, true)
	wantAnomaly(t, Global(analyze(t, h)), "poll-skip")
}

func TestGlobalNonmonotonicPoll(t *testing.T) {
	h := baseGlobal()
	h.page(4, 60, 70, 3, []history.Record{rec(b1, "y", 0, 2)})
	h.drain(3, 100, 110, "n1", goodLog, true)
	wantAnomaly(t, Global(analyze(t, h)), "nonmonotonic-poll")
}

func TestGlobalDivergentPage(t *testing.T) {
	h := baseGlobal()
	h.page(4, 60, 70, 4, []history.Record{rec(id(5, 5), "z", 0, 4)})
	h.drain(3, 100, 110, "n1", goodLog, true)
	wantAnomaly(t, Global(analyze(t, h)), "divergent-page")
}

// stale-tail: a linearizable tail read behind an acknowledged position.
func TestGlobalStaleTail(t *testing.T) {
	h := baseGlobal()
	h.op(4, 60, 70, history.Op{F: history.Tail, Node: "n3"}, &history.Op{Type: history.OK, Version: 3, ServedBy: "n3"})
	h.drain(3, 100, 110, "n1", goodLog, true)
	wantAnomaly(t, Global(analyze(t, h)), "stale-tail")
}

func TestGlobalDrainDivergence(t *testing.T) {
	h := baseGlobal()
	h.drain(3, 100, 110, "n1", goodLog, true)
	h.drain(5, 100, 110, "n3", goodLog[:3], false)
	wantAnomaly(t, Global(analyze(t, h)), "drain-divergence")
}

func TestGlobalFinalReadMismatch(t *testing.T) {
	h := baseGlobal()
	h.final(4, 90, 95, "x", []uint64{a1})
	h.drain(3, 100, 110, "n1", goodLog, true)
	wantAnomaly(t, Global(analyze(t, h)), "final-read-mismatch")
}

// Follower reads.

func (h *hist) followerRead(p int, call, ret int64, stream, node string, minIdx, applied uint64, ids []uint64) {
	h.op(p, call, ret, history.Op{F: history.FollowerRead, Stream: stream, Node: node, MinLogIndex: minIdx},
		&history.Op{Type: history.OK, Events: ids, Version: int64(len(ids)), End: true, ServedBy: node, Applied: applied})
}

func followerBase() *hist {
	var h hist
	h.appendAt(0, 0, 10, "s", []uint64{a1}, 1, 1, 5)
	h.appendAt(0, 20, 30, "s", []uint64{a2}, 2, 2, 9)
	return &h
}

func TestFollowerValid(t *testing.T) {
	h := followerBase()
	h.followerRead(1, 40, 45, "s", "n2", 5, 6, []uint64{a1}) // stale but allowed: token 5 covers a1 only
	h.followerRead(1, 50, 55, "s", "n3", 9, 9, []uint64{a1, a2})
	h.final(2, 100, 110, "s", []uint64{a1, a2})
	r := Follower(analyze(t, h))
	wantVerdict(t, r, Valid)
	d := r.Extra["staleness_ms"].(map[string]map[string]float64)
	if d["n2"]["max"] <= 0 || d["n3"]["max"] != 0 {
		t.Fatalf("staleness %v", d)
	}
}

// phantom-read: a follower shows an event that never committed (follower-serves-uncommitted).
func TestFollowerPhantom(t *testing.T) {
	h := followerBase()
	h.appendOutcome(3, 32, 33, "s", 2, []uint64{b1}, history.Info, history.ReasonOutcomeUnknown)
	h.followerRead(1, 40, 45, "s", "n2", 0, 9, []uint64{a1, a2, b1})
	h.final(2, 100, 110, "s", []uint64{a1, a2})
	wantAnomaly(t, Follower(analyze(t, h)), "phantom-read")
}

// below-min-log-index and read-your-writes: follower-ignores-min-log-index.
func TestFollowerIgnoresMinLogIndex(t *testing.T) {
	h := followerBase()
	h.followerRead(1, 40, 45, "s", "n2", 9, 5, []uint64{a1})
	h.final(2, 100, 110, "s", []uint64{a1, a2})
	r := Follower(analyze(t, h))
	wantAnomaly(t, r, "below-min-log-index")
	wantAnomaly(t, r, "read-your-writes")
}

func TestFollowerAppliedButInvisible(t *testing.T) {
	h := followerBase()
	h.followerRead(1, 40, 45, "s", "n2", 0, 9, []uint64{a1})
	h.final(2, 100, 110, "s", []uint64{a1, a2})
	wantAnomaly(t, Follower(analyze(t, h)), "applied-but-invisible")
}

// Convergence, logs, errors, liveness.

func (h *hist) digest(p int, t int64, node, sum string, last int64) {
	h.op(p, t, t+1, history.Op{F: history.Digest, Node: node, Final: true},
		&history.Op{Type: history.OK, Digest: sum, Version: last, Final: true})
}

func TestConvergence(t *testing.T) {
	var h hist
	h.digest(1, 10, "n1", "aaaa", 10)
	h.digest(2, 10, "n2", "aaaa", 10)
	h.digest(3, 10, "n3", "aaaa", 10)
	wantVerdict(t, Convergence(analyze(t, &h)), Valid)

	var d hist
	d.digest(1, 10, "n1", "aaaa", 10)
	d.digest(2, 10, "n2", "bbbb", 10)
	wantAnomaly(t, Convergence(analyze(t, &d)), "divergent-replicas")

	var l hist
	l.digest(1, 10, "n1", "aaaa", 10)
	l.digest(2, 10, "n2", "cccc", 7)
	l.op(3, 10, 11, history.Op{F: history.Digest, Node: "n3"}, &history.Op{Type: history.Fail, Error: "transport:Unavailable"})
	r := Convergence(analyze(t, &l))
	wantVerdict(t, r, Unknown)
	if r.Counts["not-converged"] != 2 {
		t.Fatalf("counts %v", r.Counts)
	}
}

func TestLogScan(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "n1.log")
	bad := filepath.Join(dir, "n2.log")
	race := filepath.Join(dir, "n3.log")
	os.WriteFile(good, []byte(`{"level":"ERROR","msg":"failed to contact","error":"dial tcp: i/o timeout"}`+"\n"), 0o644)
	os.WriteFile(bad, []byte("ok\npanic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\n"), 0o644)
	os.WriteFile(race, []byte("==================\nWARNING: DATA RACE\nWrite at 0x00c000\n"), 0o644)
	wantVerdict(t, LogScan(map[string]string{"n1": good}), Valid)
	wantAnomaly(t, LogScan(map[string]string{"n1": good, "n2": bad}), "panic")
	wantAnomaly(t, LogScan(map[string]string{"n3": race}), "data race")
	wantVerdict(t, LogScan(nil), Skipped)
}

func TestErrorsContract(t *testing.T) {
	var h hist
	h.appendOutcome(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, history.Info, history.ReasonInternal)
	h.appendOutcome(1, 0, 10, "s", history.ExpectAny, []uint64{a2}, history.Info, history.ReasonOutcomeUnknown)
	h.appendOutcome(2, 0, 10, "s", history.ExpectAny, []uint64{a3}, history.Info, "transport:Unavailable")
	r := Errors(analyze(t, &h))
	an := wantAnomaly(t, r, "unexpected-error")
	if len(r.Anomalies) != 1 || an.Ops[0] != 0 {
		t.Fatalf("anomalies %+v", r.Anomalies)
	}
}

func TestLiveness(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, 1)
	h.nemesis(1, "kill-leader", 20, 30, "n1")
	h.appendOK(0, 35, 40, "s", history.ExpectAny, []uint64{a2}, 2)
	h.probe(1, 100, 1100)
	h.final(2, 1200, 1210, "s", []uint64{a1, a2})
	r := Liveness(analyze(t, &h), time.Second)
	wantVerdict(t, r, Valid)
	if rec := r.Extra["recovered_after_heal_s"].([]float64); len(rec) != 1 || rec[0] <= 0 {
		t.Fatalf("recovery %v", rec)
	}
	if r2 := Liveness(analyze(t, &h), time.Nanosecond*500); r2.Verdict != Invalid || r2.Safety {
		t.Fatalf("slow recovery: %s (safety %v)", r2.Verdict, r2.Safety)
	}
	// A liveness failure alone does not make the run invalid.
	if Combine([]*Result{Liveness(analyze(t, &h), time.Nanosecond*500)}) != Valid {
		t.Fatal("liveness must not decide safety")
	}
}

func TestLivenessNoWriteAfterHeal(t *testing.T) {
	var h hist
	h.appendOK(0, 0, 10, "s", history.ExpectAny, []uint64{a1}, 1)
	h.op(1, 100, 200, history.Op{F: history.Append, Stream: "probe", Expected: history.ExpectAny, Events: []uint64{b1}, Final: true},
		&history.Op{Type: history.Info, Error: "transport:DeadlineExceeded", Final: true})
	h.final(2, 300, 310, "s", []uint64{a1})
	wantAnomaly(t, Liveness(analyze(t, &h), time.Second), "no-write-after-heal")
}

// The JSONL round trip keeps every field a checker reads.
func TestHistoryRoundTrip(t *testing.T) {
	h := baseGlobal()
	h.drain(3, 100, 110, "n1", goodLog, true)
	h.nemesis(1, "halves", 3, 8, "n1", "n2")
	ops := h.ops()
	path := filepath.Join(t.TempDir(), "history.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := history.WriteOps(f, ops); err != nil {
		t.Fatal(err)
	}
	f.Close()
	back, err := history.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r1 := Global(analyze(t, &hist{recs: ops}))
	r2 := Global(analyze(t, &hist{recs: back}))
	if r1.Verdict != r2.Verdict || r1.Summary != r2.Summary {
		t.Fatalf("round trip changed the result: %s / %s", r1.Summary, r2.Summary)
	}
	_, wins, _ := history.Pair(back)
	if len(wins) != 1 || wins[0].Fault != "halves" || wins[0].Stop != 8 || len(wins[0].Targets) != 2 {
		t.Fatalf("windows %+v", wins)
	}
}

// An append whose outcome stayed unknown may commit after the final stream read and before the
// drain of $all (its client gave up, the server did not): that is not a mismatch. The same late
// events from an acknowledged append would be.
func TestGlobalFinalReadExtendedByUnknownAppend(t *testing.T) {
	var h hist
	h.appendAt(0, 0, 10, "x", []uint64{a1}, 1, 1, 5)
	h.appendOutcome(1, 20, 30, "x", history.ExpectAny, []uint64{a2}, history.Info, "DEADLINE_EXCEEDED")
	h.final(4, 90, 95, "x", []uint64{a1})
	h.drain(3, 100, 110, "n1", []history.Record{rec(a1, "x", 0, 1), rec(a2, "x", 1, 2)}, true)
	res := Global(analyze(t, &h))
	for _, an := range res.Anomalies {
		if an.Kind == "final-read-mismatch" {
			t.Fatalf("late commit of an unknown append reported: %+v", an)
		}
	}
}

// A node whose drain was served at a lower applied index may lack the last records, if an append
// of unknown outcome wrote them after the final probe; the same shortfall of an acknowledged
// append stays a divergence.
func TestGlobalDrainPrefixOfLateUnknownAppend(t *testing.T) {
	drainAt := func(h *hist, p int, node string, recs []history.Record, applied uint64, reference bool) {
		v := ""
		if reference {
			v = "reference"
		}
		h.op(p, 100, 110, history.Op{F: history.Drain, Node: node, Value: v, Final: true},
			&history.Op{Type: history.OK, Records: recs, End: true, Final: true, Applied: applied})
	}
	full := []history.Record{rec(a1, "x", 0, 1), rec(a2, "x", 1, 2)}
	for _, tt := range []struct {
		name    string
		late    history.Type
		anomaly bool
	}{
		{"unknown append landed late", history.Info, false},
		{"acknowledged append missing", history.OK, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h hist
			h.appendAt(0, 0, 10, "x", []uint64{a1}, 1, 1, 5)
			if tt.late == history.Info {
				h.appendOutcome(1, 20, 30, "x", history.ExpectAny, []uint64{a2}, history.Info, "DEADLINE_EXCEEDED")
			} else {
				h.appendAt(1, 20, 30, "x", []uint64{a2}, 2, 2, 6)
			}
			drainAt(&h, 3, "n1", full, 6, true)
			drainAt(&h, 4, "n2", full[:1], 5, false)
			found := false
			for _, an := range Global(analyze(t, &h)).Anomalies {
				found = found || an.Kind == "drain-divergence"
			}
			if found != tt.anomaly {
				t.Fatalf("drain-divergence reported: %v, want %v", found, tt.anomaly)
			}
		})
	}
}
