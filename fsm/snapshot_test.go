package fsm

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/fsm/fsmpb"
)

// randomEntries makes a reproducible mix of appends (new ids, retries, conflicts, wrong expected
// revisions, multi-stream), tombstones, configuration entries and garbage.
func randomEntries(t testing.TB, seed uint64, n int) []*raft.Log {
	rng := rand.New(rand.NewPCG(seed, seed))
	streams := []string{"a", "b", "c", "d", "e"}
	var (
		logs   []*raft.Log
		nextID uint64 = 1
		sent   []*fsmpb.Request
	)
	randExp := func() *fsmpb.ExpectedRevision {
		switch rng.IntN(4) {
		case 0:
			return any_()
		case 1:
			return noStream()
		case 2:
			return exists()
		default:
			return exact(uint64(rng.IntN(6)))
		}
	}
	for i := 1; i <= n; i++ {
		idx := uint64(i)
		ts := int64(1000 + i*10 - rng.IntN(50)) // sometimes earlier than the previous entry
		switch k := rng.IntN(20); {
		case k == 0:
			logs = append(logs, &raft.Log{Index: idx, Type: raft.LogConfiguration})
			continue
		case k == 1:
			logs = append(logs, &raft.Log{Index: idx, Type: raft.LogCommand, Data: []byte{byte(rng.IntN(256)), 0xff}})
			continue
		}
		var reqs []*fsmpb.Request
		for range 1 + rng.IntN(3) {
			switch k := rng.IntN(10); {
			case k == 0 && len(sent) > 0: // retry of an earlier request
				reqs = append(reqs, sent[rng.IntN(len(sent))])
			case k == 1:
				reqs = append(reqs, tombstoneReq(streams[rng.IntN(len(streams))]+"-t", randExp()))
			case k == 2 && rng.IntN(2) == 0:
				md := &fsmpb.StreamMetadata{User: []*fsmpb.UserKey{{Key: "owner", Value: []byte{byte(i)}}}}
				if rng.IntN(2) == 0 {
					md.MaxCount = proto.Uint64(uint64(1 + rng.IntN(4)))
				}
				if rng.IntN(2) == 0 {
					md.TruncateBefore = proto.Uint64(uint64(rng.IntN(6)))
				}
				reqs = append(reqs, setMetaReq(streams[rng.IntN(len(streams))], randExp(), md))
			case k == 2:
				reqs = append(reqs, softDeleteReq(streams[rng.IntN(len(streams))], randExp()))
			default:
				var parts []*fsmpb.StreamAppend
				for _, s := range rng.Perm(len(streams))[:1+rng.IntN(2)] {
					var evs []*fsmpb.Event
					for range 1 + rng.IntN(3) {
						evs = append(evs, ev(nextID))
						nextID++
					}
					parts = append(parts, part(streams[s], randExp(), evs...))
				}
				req := appendReq(parts...)
				sent = append(sent, req)
				reqs = append(reqs, req)
			}
		}
		logs = append(logs, entry(t, idx, ts, reqs...))
	}
	return logs
}

// applyInBatches feeds logs through ApplyBatch in batches of random size up to 64.
func applyInBatches(f *FSM, logs []*raft.Log, seed uint64) []interface{} {
	rng := rand.New(rand.NewPCG(seed, 7))
	var out []interface{}
	for len(logs) > 0 {
		n := min(len(logs), 1+rng.IntN(64))
		out = append(out, f.ApplyBatch(logs[:n])...)
		logs = logs[n:]
	}
	return out
}

// dirBytes returns every file under dir by relative path.
func dirBytes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// state is everything observable about an FSM, for comparisons.
type state struct {
	Applied, Last uint64
	All           []RecordedEvent
	Streams       map[string]StreamInfo
	Dedupe        map[[16]byte]uint64
}

func observe(t *testing.T, f *FSM) state {
	t.Helper()
	all, err := f.ReadAll(Start, Forward, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	st := state{Applied: f.AppliedIndex(), Last: f.LastPosition(), All: all, Streams: map[string]StreamInfo{},
		Dedupe: map[[16]byte]uint64{}}
	for name := range f.idx.streamIDs {
		st.Streams[name] = f.Stream(name)
	}
	for k, v := range f.idx.dedupe.byID {
		st.Dedupe[k] = v
	}
	return st
}

func TestDeterminism(t *testing.T) {
	logs := randomEntries(t, 1, 400)
	dirA, dirB := t.TempDir(), t.TempDir()
	a, b := mustOpen(t, dirA), mustOpen(t, dirB)
	resA, resB := applyInBatches(a, logs, 3), applyInBatches(b, logs, 3)
	if diff := cmp.Diff(resA, resB, cmp.Comparer(errEqual)); diff != "" {
		t.Fatalf("results differ (-a +b):\n%s", diff)
	}
	if diff := cmp.Diff(observe(t, a), observe(t, b)); diff != "" {
		t.Fatalf("state differs (-a +b):\n%s", diff)
	}
	if a.LastPosition() < 200 {
		t.Fatalf("workload too weak: only %d records written", a.LastPosition())
	}
	a.Close()
	b.Close()
	if diff := cmp.Diff(dirBytes(t, dirA), dirBytes(t, dirB)); diff != "" {
		t.Fatalf("segment bytes differ:\n%s", diff)
	}
}

// ApplyBatch must decide exactly as one-by-one Apply. Segment bytes may differ in batch framing
// (each segment append is one crash-atomic unit), so this compares results, reads and indexes.
func TestApplyBatchEqualsApply(t *testing.T) {
	logs := randomEntries(t, 2, 400)
	batched, single := mustOpen(t, t.TempDir()), mustOpen(t, t.TempDir())
	resBatched := applyInBatches(batched, logs, 5)
	var resSingle []interface{}
	for _, l := range logs {
		resSingle = append(resSingle, single.Apply(l))
	}
	if diff := cmp.Diff(resSingle, resBatched, cmp.Comparer(errEqual)); diff != "" {
		t.Fatalf("results differ (-single +batched):\n%s", diff)
	}
	if diff := cmp.Diff(observe(t, single), observe(t, batched)); diff != "" {
		t.Fatalf("state differs (-single +batched):\n%s", diff)
	}
}

func errEqual(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func mustSnapshot(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

func TestSnapshotRestore(t *testing.T) {
	logs := randomEntries(t, 3, 300)
	src := mustOpen(t, t.TempDir())
	applyInBatches(src, logs[:200], 1)
	data := mustSnapshot(t, src)
	// Entries applied after the snapshot was persisted must not leak into it.
	applyInBatches(src, logs[200:], 1)

	dst := mustOpen(t, t.TempDir())
	applyInBatches(dst, randomEntries(t, 99, 50), 1) // state that Restore must discard
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if dst.AppliedIndex() != 200 {
		t.Fatalf("applied after restore %d, want 200", dst.AppliedIndex())
	}
	applyInBatches(dst, logs[200:], 1)
	if diff := cmp.Diff(observe(t, src), observe(t, dst)); diff != "" {
		t.Fatalf("restored FSM differs (-src +dst):\n%s", diff)
	}
	// The restored state is what a restart finds.
	dir := dst.cfg.Dir
	dst.Close()
	again := mustOpen(t, dir)
	if diff := cmp.Diff(observe(t, src).All, observe(t, again).All); diff != "" {
		t.Fatalf("reopened FSM differs (-src +reopened):\n%s", diff)
	}
	if n := len(dirBytes(t, dir)); n == 0 {
		t.Fatal("no files in the data dir")
	}
}

func TestSnapshotOfEmptyFSM(t *testing.T) {
	data := mustSnapshot(t, mustOpen(t, t.TempDir()))
	dst := mustOpen(t, t.TempDir())
	applyInBatches(dst, randomEntries(t, 4, 20), 1)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if dst.LastPosition() != 0 || len(dst.idx.streamIDs) != 0 {
		t.Fatalf("restore of an empty snapshot left %d records, %d streams", dst.LastPosition(), len(dst.idx.streamIDs))
	}
}

// A restore that fails part-way (truncated or corrupt stream, as when the process dies while
// installing a snapshot) leaves the previous state fully intact, in memory and on disk.
func TestFailedRestoreKeepsOldState(t *testing.T) {
	src := mustOpen(t, t.TempDir())
	applyInBatches(src, randomEntries(t, 5, 100), 1)
	data := mustSnapshot(t, src)

	dir := t.TempDir()
	dst := mustOpen(t, dir)
	applyInBatches(dst, randomEntries(t, 6, 80), 1)
	before := observe(t, dst)

	corrupt := bytes.Clone(data)
	corrupt[len(corrupt)/2] ^= 0x40
	for name, stream := range map[string][]byte{
		"truncated":   data[:len(data)/2],
		"no trailer":  data[:len(data)-20],
		"bit flip":    corrupt,
		"not a snap":  []byte("hello, world, this is not a snapshot at all"),
		"wrong magic": append([]byte("XXXXXXXX"), data[8:]...),
	} {
		t.Run(name, func(t *testing.T) {
			if err := dst.Restore(io.NopCloser(bytes.NewReader(stream))); err == nil {
				t.Fatal("restore of a damaged snapshot succeeded")
			}
			if diff := cmp.Diff(before, observe(t, dst)); diff != "" {
				t.Fatalf("state changed (-before +after):\n%s", diff)
			}
		})
	}
	// Only the live generation is left on disk, and reopening finds the old state.
	gens, _ := filepath.Glob(filepath.Join(dir, "gen-*"))
	if len(gens) != 1 {
		t.Fatalf("generations on disk: %v", gens)
	}
	dst.Close()
	// After a restart the applied index is recovered from the data: the last record's index.
	// Entries after it wrote nothing, so raft replaying them changes nothing.
	before.Applied = before.All[len(before.All)-1].Index
	if diff := cmp.Diff(before, observe(t, mustOpen(t, dir))); diff != "" {
		t.Fatalf("reopened state changed (-before +after):\n%s", diff)
	}
}

// A crash after the new generation is built but before CURRENT flips leaves a stray directory:
// Open keeps the generation CURRENT names and removes the stray one.
func TestOpenRemovesUnfinishedGeneration(t *testing.T) {
	dir := t.TempDir()
	f := mustOpen(t, dir)
	applyInBatches(f, randomEntries(t, 7, 30), 1)
	before := observe(t, f)
	f.Close()
	stray := genDir(dir, 2)
	if err := os.MkdirAll(stray, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stray, "00000000000000000001.seg"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	f = mustOpen(t, dir)
	before.Applied = before.All[len(before.All)-1].Index // recovered from the data
	if diff := cmp.Diff(before, observe(t, f)); diff != "" {
		t.Fatalf("state changed (-before +after):\n%s", diff)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stray generation still there: %v", err)
	}
}

// After a snapshot, a restart recovers at least the snapshot's applied index even when the last
// entries before it wrote no records (elections add no-op and configuration entries), so the
// cluster can skip restoring a snapshot whose data the node already holds.
func TestSnapshotRecordsDurableAppliedIndex(t *testing.T) {
	dir := t.TempDir()
	f := mustOpen(t, dir)
	mustOK(t, apply1(t, f, 1, 1, appendReq(part("s", any_(), ev(1)))))
	f.Apply(&raft.Log{Index: 2, Type: raft.LogNoop})
	f.Apply(&raft.Log{Index: 3, Type: raft.LogConfiguration})
	mustSnapshot(t, f)
	f.Apply(&raft.Log{Index: 4, Type: raft.LogNoop}) // after the snapshot: not durable
	f.Close()
	if got := mustOpen(t, dir).AppliedIndex(); got != 3 {
		t.Fatalf("recovered applied index %d, want 3 (the snapshot's)", got)
	}
}

func TestDigestAgreesAcrossReplicasAndSeesDifferences(t *testing.T) {
	logs := randomEntries(t, 11, 200)
	a, b := mustOpen(t, t.TempDir()), mustOpen(t, t.TempDir())
	applyInBatches(a, logs, 1)
	applyInBatches(b, logs, 2) // other batch framing, same records
	la, da, err := a.Digest(0)
	if err != nil {
		t.Fatal(err)
	}
	lb, db, _ := b.Digest(0)
	if la != lb || da != db || la != a.LastPosition() {
		t.Fatalf("replicas disagree: %d %s vs %d %s", la, da, lb, db)
	}
	// A prefix digest differs from the full one, and matches the other replica's prefix.
	pa, dpa, _ := a.Digest(la / 2)
	_, dpb, _ := b.Digest(la / 2)
	if pa != la/2 || dpa != dpb || dpa == da {
		t.Fatalf("prefix digests: %d %s %s (full %s)", pa, dpa, dpb, da)
	}
	// One more event on one replica changes its digest.
	mustOK(t, apply1(t, b, 10_000, 1<<40, appendReq(part("extra", any_(), ev(1<<40)))))
	if _, db2, _ := b.Digest(0); db2 == db {
		t.Fatal("digest did not change after an append")
	}
}
