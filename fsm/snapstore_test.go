package fsm

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

func mustStore(t *testing.T, retain int) *SnapshotStore {
	t.Helper()
	s, err := NewSnapshotStore(t.TempDir(), retain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// persistTo takes a snapshot of f into store, as raft would.
func persistTo(t *testing.T, f *FSM, store *SnapshotStore, term uint64) *raft.SnapshotMeta {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink, err := store.Create(raft.SnapshotVersionMax, f.AppliedIndex(), term, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil { // raft closes the sink again after Persist
		t.Fatalf("second close: %v", err)
	}
	metas, err := store.List()
	if err != nil || len(metas) == 0 || metas[0].ID != sink.ID() {
		t.Fatalf("list after persist: %v %v", metas, err)
	}
	return metas[0]
}

func openAll(t *testing.T, store *SnapshotStore, id string) (*raft.SnapshotMeta, []byte) {
	t.Helper()
	meta, rc, err := store.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != meta.Size {
		t.Fatalf("snapshot %s: stream of %d bytes, meta says %d (InstallSnapshot needs them equal)", id, len(b), meta.Size)
	}
	return meta, b
}

// A local snapshot is a small manifest plus links, whatever the data size; Open turns it into a
// stream that restores an identical FSM, both directly and after travelling to a follower's
// store (InstallSnapshot).
func TestManifestSnapshotRoundTrip(t *testing.T) {
	small := func(c *Config) { c.Segment.MaxSegmentBytes = 16 << 10 }
	src := mustOpen(t, t.TempDir(), small)
	applyInBatches(src, randomEntries(t, 21, 600), 1)
	store := mustStore(t, 2)
	meta := persistTo(t, src, store, 1)

	dir := filepath.Join(store.dir, meta.ID)
	data, err := os.ReadFile(filepath.Join(dir, snapDataFile))
	if err != nil {
		t.Fatal(err)
	}
	links, _ := os.ReadDir(filepath.Join(dir, snapFilesDir))
	if !isManifest(data) || len(data) > 4096 || len(links) < 2 {
		t.Fatalf("local snapshot: %d bytes of data (manifest %v), %d linked files", len(data), isManifest(data), len(links))
	}

	// Later appends do not leak into the snapshot.
	want := observe(t, src)
	mustOK(t, apply1(t, src, 10_000, 1<<40, appendReq(part("later", any_(), ev(1<<40)))))

	_, stream := openAll(t, store, meta.ID)
	dst := mustOpen(t, t.TempDir(), small)
	applyInBatches(dst, randomEntries(t, 22, 40), 1)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(stream))); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, observe(t, dst)); diff != "" {
		t.Fatalf("restored state differs (-snapshot +restored):\n%s", diff)
	}

	// InstallSnapshot: the stream is copied into a follower's store and opened from there.
	follower := mustStore(t, 2)
	sink, err := follower.Create(raft.SnapshotVersionMax, meta.Index, meta.Term, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(sink, bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	fmeta, fstream := openAll(t, follower, sink.ID())
	if !bytes.Equal(fstream, stream) || fmeta.Index != meta.Index {
		t.Fatal("the follower's copy differs from the leader's stream")
	}
}

func TestSnapshotStoreRetentionAndCancel(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	store := mustStore(t, 2)
	var ids []string
	for term := uint64(1); term <= 3; term++ {
		mustOK(t, apply1(t, f, term, int64(term), appendReq(part("s", any_(), ev(term)))))
		ids = append(ids, persistTo(t, f, store, term).ID)
	}
	metas, _ := store.List()
	if len(metas) != 2 || metas[0].ID != ids[2] || metas[1].ID != ids[1] {
		t.Fatalf("retained %v, want the newest two of %v", metas, ids)
	}
	if _, _, err := store.Open(ids[0]); err == nil {
		t.Fatal("a reaped snapshot opened")
	}
	sink, err := store.Create(raft.SnapshotVersionMax, 9, 9, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink.Write([]byte("partial"))
	if err := sink.Cancel(); err != nil {
		t.Fatal(err)
	}
	if metas, _ := store.List(); len(metas) != 2 {
		t.Fatalf("a cancelled snapshot is listed: %v", metas)
	}
	entries, _ := os.ReadDir(store.dir)
	if len(entries) != 2 {
		t.Fatalf("store dir holds %d entries after cancel, want 2", len(entries))
	}
}

// A damaged stream never replaces the state: every file is checked before the switch.
func TestCorruptFilesStreamKeepsOldState(t *testing.T) {
	src := mustOpen(t, t.TempDir(), func(c *Config) { c.Segment.MaxSegmentBytes = 16 << 10 })
	applyInBatches(src, randomEntries(t, 23, 300), 1)
	store := mustStore(t, 1)
	_, stream := openAll(t, store, persistTo(t, src, store, 1).ID)

	dst := mustOpen(t, t.TempDir())
	applyInBatches(dst, randomEntries(t, 24, 50), 1)
	before := observe(t, dst)
	for _, at := range []int{40, len(stream) / 3, len(stream) / 2, len(stream) - 30} {
		bad := bytes.Clone(stream)
		bad[at] ^= 0x10
		if err := dst.Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
			t.Fatalf("restore of a stream damaged at byte %d succeeded", at)
		}
		if diff := cmp.Diff(before, observe(t, dst)); diff != "" {
			t.Fatalf("state changed after a failed restore (-before +after):\n%s", diff)
		}
	}
	if err := dst.Restore(io.NopCloser(bytes.NewReader(stream[:len(stream)/2]))); err == nil {
		t.Fatal("restore of a truncated stream succeeded")
	}
}
