package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm/fsmpb"
)

func compactReq() *fsmpb.Request {
	return &fsmpb.Request{Kind: &fsmpb.Request_Compact{Compact: &fsmpb.CompactRequest{}}}
}

func bigEv(n uint64) *fsmpb.Event {
	e := ev(n)
	e.Data = bytes.Repeat([]byte{byte(n)}, 300)
	return e
}

// smallSegments makes sealed segments appear after a few dozen events.
func smallSegments(c *Config) { c.Segment.MaxSegmentBytes = 8 << 10 }

// compactWorkload: streams s0..s(n-1) get perStream events each (two per entry, interleaved so
// every segment mixes streams), every even stream is tombstoned, a compaction is applied, then
// odd streams get more events. It returns the entries and the appends that were made, for
// retries.
func compactWorkload(t testing.TB, streams, perStream int) ([]*raft.Log, []*fsmpb.Request) {
	logs, reqs, _ := compactWorkloadAt(t, streams, perStream)
	return logs, reqs
}

// compactWorkloadAt is compactWorkload that also returns the slice index of the compaction entry.
func compactWorkloadAt(t testing.TB, streams, perStream int) ([]*raft.Log, []*fsmpb.Request, int) {
	var (
		logs []*raft.Log
		reqs []*fsmpb.Request
		idx  uint64
		n    uint64
	)
	add := func(r ...*fsmpb.Request) {
		idx++
		logs = append(logs, entry(t, idx, int64(idx)*1000, r...))
	}
	for round := 0; round < perStream/2; round++ {
		for s := 0; s < streams; s++ {
			req := appendReq(part(fmt.Sprintf("s%d", s), any_(), bigEv(n+1), bigEv(n+2)))
			n += 2
			reqs = append(reqs, req)
			add(req)
		}
	}
	for s := 0; s < streams; s += 2 {
		add(tombstoneReq(fmt.Sprintf("s%d", s), any_()))
	}
	compactAt := len(logs)
	add(compactReq())
	for s := 1; s < streams; s += 2 {
		n++
		add(appendReq(part(fmt.Sprintf("s%d", s), any_(), bigEv(n))))
	}
	return logs, reqs, compactAt
}

func waitReclaimed(t testing.TB, f *FSM) ReclaimStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := f.WaitReclaimed(ctx, f.AppliedIndex())
	if err != nil {
		t.Fatalf("WaitReclaimed: %v", err)
	}
	return st
}

// reclaimNow runs a full pass after everything applied so far, so replicas that applied the same
// entries in the same batches end with the same sealed segments rewritten.
func reclaimNow(t testing.TB, f *FSM) ReclaimStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := f.ReclaimNow(ctx)
	if err != nil {
		t.Fatalf("ReclaimNow: %v", err)
	}
	return st
}

func digestOf(t testing.TB, f *FSM) string {
	t.Helper()
	_, d, err := f.Digest(0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCompactionReplicasAgreeBeforeAndAfterReclaim feeds two FSMs the same log. A reclaims at
// once; B's reclaim is held inside its first segment rewrite. Reads, stream state, dedupe window
// and digest agree while B has not reclaimed; B's appends go on meanwhile; after B reclaims, its
// segment files are byte-identical to A's.
func TestCompactionReplicasAgreeBeforeAndAfterReclaim(t *testing.T) {
	logs, _ := compactWorkload(t, 10, 20)
	more := []*raft.Log{entry(t, uint64(len(logs)+1), int64(len(logs)+1)*1000,
		appendReq(part("s1", any_(), bigEv(10_000))))}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := mustOpen(t, dirA, smallSegments)
	entered, release := make(chan uint64, 1), make(chan struct{})
	b := mustOpen(t, dirB, smallSegments, func(c *Config) {
		c.reclaimHook = func(base uint64) {
			select {
			case entered <- base:
			default:
			}
			<-release
		}
	})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	applyInBatches(a, logs, 11)
	sizeBefore := a.Storage().Bytes
	stA := waitReclaimed(t, a)
	if c := stA.Covering; c.SegmentsRewritten == 0 || c.BytesReclaimed() <= 0 || c.RecordsRedacted == 0 {
		t.Fatalf("A reclaimed nothing: %+v", stA.Covering)
	}
	stA = reclaimNow(t, a) // also whatever passes requested by rolls did
	if got := a.Storage().Bytes; got != sizeBefore-stA.Total.BytesReclaimed() || got >= sizeBefore*3/4 {
		t.Fatalf("A's storage %d bytes after reclaim, before %d, reclaimed %d", got, sizeBefore, stA.Total.BytesReclaimed())
	}
	applyInBatches(b, logs, 11)
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("B's reclaim never started")
	}
	// B is inside a rewrite: its reads and digest already treat the compacted events as gone.
	if diff := cmp.Diff(observe(t, a), observe(t, b)); diff != "" {
		t.Fatalf("state differs (-reclaimed +not yet):\n%s", diff)
	}
	if da, db := digestOf(t, a), digestOf(t, b); da != db {
		t.Fatalf("digests differ: reclaimed %s, not yet %s", da, db)
	}
	// Appends are not blocked by the rewrite in progress.
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		applyInBatches(b, more, 1)
	}()
	select {
	case <-applied:
	case <-time.After(30 * time.Second):
		t.Fatal("an append blocked behind a segment rewrite")
	}
	applyInBatches(a, more, 1)
	close(release)
	released = true
	reclaimNow(t, a)
	reclaimNow(t, b)
	if diff := cmp.Diff(observe(t, a), observe(t, b)); diff != "" {
		t.Fatalf("state differs after both reclaimed (-a +b):\n%s", diff)
	}
	if da, db := digestOf(t, a), digestOf(t, b); da != db {
		t.Fatalf("digests differ after both reclaimed: %s vs %s", da, db)
	}
	a.Close()
	b.Close()
	if diff := cmp.Diff(dirBytes(t, dirA), dirBytes(t, dirB)); diff != "" {
		t.Fatalf("segment bytes differ after both reclaimed:\n%s", diff)
	}
}

// TestCompactionReadsAndRetries checks what a compaction changes for readers: live streams read
// the same, tombstoned streams still report it, $all keeps every position with the compacted
// events redacted and the marker in place, and a retry of a compacted append is still answered
// with its original result.
func TestCompactionReadsAndRetries(t *testing.T) {
	logs, reqs, compactAt := compactWorkloadAt(t, 6, 8)
	// g stops before the compaction: the reference for reads and for the retry's result.
	g := mustOpen(t, t.TempDir(), smallSegments)
	applyInBatches(g, logs[:compactAt], 1)
	retryBefore := apply1(t, g, uint64(compactAt+1), 0, reqs[0])
	if !retryBefore.Idempotent {
		t.Fatalf("retry before compaction not recognised: %+v", retryBefore)
	}
	allBefore, err := g.ReadAll(Start, Forward, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	liveBefore, err := g.ReadStream("s1", Start, Forward, 100)
	if err != nil {
		t.Fatal(err)
	}

	f := mustOpen(t, t.TempDir(), smallSegments)
	applyInBatches(f, logs, 1)
	waitReclaimed(t, f)
	liveAfter, err := f.ReadStream("s1", Start, Forward, len(liveBefore))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(liveBefore, liveAfter); diff != "" {
		t.Fatalf("live stream reads differ (-before +after):\n%s", diff)
	}
	if _, err := f.ReadStream("s0", Start, Forward, 100); !errors.Is(err, ErrStreamTombstoned) {
		t.Fatalf("tombstoned stream after compaction: %v, want ErrStreamTombstoned", err)
	}
	allAfter, err := f.ReadAll(Start, Forward, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	redacted := 0
	for i, want := range allBefore {
		got := allAfter[i]
		if want.Kind == KindEvent && f.Stream(want.Stream).Tombstoned {
			want = redact(&want)
			redacted++
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("$all position %d (-want +got):\n%s", i+1, diff)
		}
	}
	if redacted == 0 {
		t.Fatal("nothing was compacted")
	}
	marker := allAfter[len(allBefore)]
	if marker.Kind != KindCompaction || marker.Stream != CompactionStream || !SystemRecord(marker.Kind) {
		t.Fatalf("record after the pre-compaction log: %+v, want the compaction marker", marker)
	}
	retryAfter := apply1(t, f, uint64(len(logs)+1), 0, reqs[0])
	if diff := cmp.Diff(retryBefore, retryAfter, cmp.Comparer(errEqual)); diff != "" {
		t.Fatalf("retry of a compacted append answered differently (-before +after):\n%s", diff)
	}
	if f.LastPosition() != allAfter[len(allAfter)-1].Position {
		t.Fatal("the retry wrote something")
	}
}

// TestCompactionSurvivesRestartMidReclaim closes an FSM while its reclaim is interrupted after
// one segment and reopens it: the rebuilt state, reads and digest equal a fully reclaimed
// replica's before and after the reopened node finishes.
func TestCompactionSurvivesRestartMidReclaim(t *testing.T) {
	logs, _ := compactWorkload(t, 10, 20)
	a := mustOpen(t, t.TempDir(), smallSegments)
	applyInBatches(a, logs, 3)
	waitReclaimed(t, a)

	dirB := t.TempDir()
	entered, release := make(chan uint64, 1), make(chan struct{})
	b := mustOpen(t, dirB, smallSegments, func(c *Config) {
		c.reclaimHook = func(base uint64) {
			select {
			case entered <- base:
			default:
			}
			<-release
		}
	})
	applyInBatches(b, logs, 3)
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }() // Close waits for the segment in progress, then stops
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if st := b.ReclaimStatus(); st.Total.SegmentsRewritten != 1 || !errors.Is(st.LastError, errReclaimStopped) {
		t.Fatalf("interrupted pass: %+v, want one segment rewritten and a stop", st)
	}
	re := mustOpen(t, dirB, smallSegments)
	if diff := cmp.Diff(observe(t, a), observe(t, re)); diff != "" {
		t.Fatalf("reopened state differs (-reclaimed +reopened):\n%s", diff)
	}
	if da, db := digestOf(t, a), digestOf(t, re); da != db {
		t.Fatalf("digest differs after reopen: %s vs %s", da, db)
	}
	st := waitReclaimed(t, re) // Open asked for a pass: it finishes the job
	if st.Total.SegmentsRewritten == 0 {
		t.Fatalf("reopened node did not resume reclaim: %+v", st)
	}
	reclaimNow(t, a)
	reclaimNow(t, re)
	if ga, gb := a.Storage().Bytes, re.Storage().Bytes; ga != gb {
		t.Fatalf("storage after both reclaimed: %d vs %d bytes", ga, gb)
	}
	if da, db := digestOf(t, a), digestOf(t, re); da != db {
		t.Fatalf("digest differs after resumed reclaim: %s vs %s", da, db)
	}
}

// TestCompactionSnapshotRestore: a snapshot taken after the compaction was applied but before
// the reclaim, and one taken after, both restore to the reclaimed state, and the restored node
// reclaims what its snapshot still held.
func TestCompactionSnapshotRestore(t *testing.T) {
	logs, _ := compactWorkload(t, 10, 20)
	entered, release := make(chan uint64, 1), make(chan struct{})
	src := mustOpen(t, t.TempDir(), smallSegments, func(c *Config) {
		c.reclaimHook = func(base uint64) {
			select {
			case entered <- base:
			default:
			}
			<-release
		}
	})
	applyInBatches(src, logs, 1)
	<-entered
	early := mustSnapshot(t, src) // format 1: a copy of every record, none redacted yet
	close(release)
	waitReclaimed(t, src)
	late := mustSnapshot(t, src)
	if len(late) >= len(early) {
		t.Fatalf("snapshot after reclaim is %d bytes, before %d: want smaller", len(late), len(early))
	}
	for name, data := range map[string][]byte{"before reclaim": early, "after reclaim": late} {
		t.Run(name, func(t *testing.T) {
			dst := mustOpen(t, t.TempDir(), smallSegments)
			if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				t.Fatal(err)
			}
			waitReclaimed(t, dst)
			if diff := cmp.Diff(observe(t, src), observe(t, dst)); diff != "" {
				t.Fatalf("restored state differs (-src +dst):\n%s", diff)
			}
			if ds, dd := digestOf(t, src), digestOf(t, dst); ds != dd {
				t.Fatalf("digest differs: %s vs %s", ds, dd)
			}
		})
	}
}

// TestReclaimAfterRollAndSkipsReclaimedSegments: events still in the active segment when a
// compaction was applied are reclaimed once their segment is sealed, without another compaction,
// and a pass does not read segments it already reclaimed.
func TestReclaimAfterRollAndSkipsReclaimedSegments(t *testing.T) {
	logs, _ := compactWorkload(t, 10, 20)
	f := mustOpen(t, t.TempDir(), smallSegments)
	applyInBatches(f, logs, 1)
	first := waitReclaimed(t, f)
	sealed := len(f.seg.SealedBases())
	if first.Last.SegmentsScanned != sealed {
		t.Fatalf("first pass scanned %d segments, %d are sealed", first.Last.SegmentsScanned, sealed)
	}
	tombstoned := func(stream string) bool { return f.Stream(stream).Tombstoned }
	// Compacted events in the active segment are stored whole until it is sealed.
	lastBase := lastSegmentBase(t, f)
	whole := countWhole(t, f, lastBase, tombstoned)
	if whole == 0 {
		t.Fatal("fixture: the active segment holds no compacted events")
	}
	// Append until that segment is sealed; the roll alone must start a pass.
	before := f.ReclaimStatus().Completed
	next := uint64(len(logs))
	for n := uint64(0); lastSegmentBase(t, f) == lastBase; n++ {
		next++
		applyInBatches(f, []*raft.Log{entry(t, next, int64(next)*1000, appendReq(part("s1", any_(), bigEv(20_000+n))))}, 1)
		if n > 1000 {
			t.Fatal("the active segment never rolled")
		}
	}
	// Passes requested by earlier rolls may still be queued: wait for the one that found work.
	st := waitPasses(t, f, before+1)
	for n := st.Completed + 1; st.Last.RecordsRedacted == 0; n++ {
		st = waitPasses(t, f, n)
	}
	if got := countWhole(t, f, lastBase, tombstoned); got != 0 {
		t.Fatalf("%d compacted events still whole in the newly sealed segment after the roll-triggered pass %+v", got, st.Last)
	}
	if st.Last.SegmentsScanned != 1 || st.Last.RecordsRedacted != whole {
		t.Fatalf("roll-triggered pass %+v: want exactly the newly sealed segment read and its %d events redacted", st.Last, whole)
	}
}

// segmentBases returns the first position of every segment file, the active one last.
func segmentBases(t *testing.T, f *FSM) []uint64 {
	t.Helper()
	refs, err := f.seg.Files(f.seg.LastPosition())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]uint64, len(refs))
	for i, r := range refs {
		if _, err := fmt.Sscanf(r.Name, "%d.seg", &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func lastSegmentBase(t *testing.T, f *FSM) uint64 {
	b := segmentBases(t, f)
	return b[len(b)-1]
}

// countWhole counts events of tombstoned streams stored whole (not redacted) in the segment that
// starts at base, reading the raw records.
func countWhole(t *testing.T, f *FSM, base uint64, tombstoned func(string) bool) int {
	t.Helper()
	end := f.seg.LastPosition() + 1
	for _, b := range segmentBases(t, f) {
		if b > base {
			end = b
			break
		}
	}
	it := f.seg.Scan(base, Forward)
	defer it.Close()
	n := 0
	for it.Next() && it.Record().Position < end {
		if r := it.Record(); r.Kind == KindEvent && tombstoned(r.Stream) {
			n++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitPasses waits until at least n reclaim passes completed.
func waitPasses(t *testing.T, f *FSM, n uint64) ReclaimStatus {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		r := f.reclaim
		r.mu.Lock()
		st, ch := r.status, r.changed
		r.mu.Unlock()
		if st.Completed >= n {
			return st
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("only %d reclaim passes completed, want %d", st.Completed, n)
		}
	}
}
