package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// SnapshotStore is a raft.SnapshotStore for Cairn's manifest snapshots (see snapfiles.go).
//
// A snapshot is a directory <term>-<index>-<ms>/ holding meta.json (raft's SnapshotMeta), data
// (what the FSM's Persist wrote through the sink) and files/ (hard links to segment files).
// Locally taken snapshots hold a small manifest in data; Open turns it into a self-contained
// stream of exactly meta.Size bytes for InstallSnapshot or a boot restore. A snapshot received
// from the leader holds that stream itself in data, and Open returns it as is. A sink is written
// under a .tmp name and renamed into place only when complete, so List never sees a partial one.
//
// Why not raft.FileSnapshotStore: its Persist stream is the only thing it keeps, so a snapshot
// would have to copy every event (O(data) on the leader at every snapshot).
type SnapshotStore struct {
	dir    string
	retain int
	log    *slog.Logger
	mu     sync.RWMutex // Create/Open/List take it shared; reaping takes it exclusive
}

const (
	snapMetaFile = "meta.json"
	snapDataFile = "data"
	snapFilesDir = "files"
	snapTmpExt   = ".tmp"
)

// NewSnapshotStore opens (creating it) a store in dir that keeps the newest retain snapshots
// (at least 1), and removes partial snapshots left by a crash.
func NewSnapshotStore(dir string, retain int, log *slog.Logger) (*SnapshotStore, error) {
	if retain < 1 {
		retain = 1
	}
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("fsm snapshots: create %s: %w", dir, err)
	}
	s := &SnapshotStore{dir: dir, retain: retain, log: log.With("component", "snapshots")}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("fsm snapshots: list %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasSuffix(e.Name(), snapTmpExt) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				s.log.Warn("removing a partial snapshot failed", "dir", e.Name(), "error", err)
			}
		}
	}
	return s, nil
}

// Create implements raft.SnapshotStore.
func (s *SnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version < raft.SnapshotVersionMin || version > raft.SnapshotVersionMax {
		return nil, fmt.Errorf("fsm snapshots: unsupported snapshot version %d", version)
	}
	id := fmt.Sprintf("%d-%d-%d", term, index, time.Now().UnixMilli())
	tmp := filepath.Join(s.dir, id+snapTmpExt)
	if err := os.MkdirAll(filepath.Join(tmp, snapFilesDir), 0o755); err != nil {
		return nil, fmt.Errorf("fsm snapshots: create %s: %w", tmp, err)
	}
	fh, err := os.Create(filepath.Join(tmp, snapDataFile))
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("fsm snapshots: create data: %w", err)
	}
	return &snapSink{store: s, tmp: tmp, data: fh, meta: raft.SnapshotMeta{
		Version: version, ID: id, Index: index, Term: term,
		Configuration: configuration, ConfigurationIndex: configurationIndex,
	}}, nil
}

// List implements raft.SnapshotStore: complete snapshots, newest first.
func (s *SnapshotStore) List() ([]*raft.SnapshotMeta, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.list()
}

func (s *SnapshotStore) list() ([]*raft.SnapshotMeta, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("fsm snapshots: list: %w", err)
	}
	var out []*raft.SnapshotMeta
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), snapTmpExt) {
			continue
		}
		m, err := readSnapMeta(filepath.Join(s.dir, e.Name()))
		if err != nil {
			s.log.Warn("ignoring an unreadable snapshot", "dir", e.Name(), "error", err)
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Term != out[j].Term {
			return out[i].Term > out[j].Term
		}
		if out[i].Index != out[j].Index {
			return out[i].Index > out[j].Index
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

func readSnapMeta(dir string) (*raft.SnapshotMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, snapMetaFile))
	if err != nil {
		return nil, err
	}
	var m raft.SnapshotMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", snapMetaFile, err)
	}
	return &m, nil
}

// Open implements raft.SnapshotStore. For a manifest snapshot the reader produces the full
// format-2 stream from the linked files, exactly meta.Size bytes long.
func (s *SnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	if err := checkFileName(id); err != nil {
		return nil, nil, fmt.Errorf("fsm snapshots: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	dir := filepath.Join(s.dir, id)
	meta, err := readSnapMeta(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("fsm snapshots: open %s: %w", id, err)
	}
	fh, err := os.Open(filepath.Join(dir, snapDataFile))
	if err != nil {
		return nil, nil, fmt.Errorf("fsm snapshots: open %s: %w", id, err)
	}
	head := make([]byte, 8)
	n, _ := io.ReadFull(fh, head)
	if !isManifest(head[:n]) {
		if _, err := fh.Seek(0, io.SeekStart); err != nil {
			fh.Close()
			return nil, nil, err
		}
		return meta, fh, nil // a received stream: already self-contained
	}
	raw, err := io.ReadAll(io.MultiReader(bytes.NewReader(head[:n]), fh))
	fh.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("fsm snapshots: read manifest of %s: %w", id, err)
	}
	m, err := decodeManifest(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("fsm snapshots: %s: %w", id, err)
	}
	// The files are opened by the writer goroutine; links keep them alive even if the store
	// reaps this snapshot meanwhile, as long as each is opened before that — hence open them all
	// now, under the lock.
	files := make([]*os.File, len(m.files))
	for i, f := range m.files {
		if files[i], err = os.Open(filepath.Join(dir, snapFilesDir, f.name)); err != nil {
			for _, o := range files[:i] {
				o.Close()
			}
			return nil, nil, fmt.Errorf("fsm snapshots: %s: %w", id, err)
		}
	}
	pr, pw := io.Pipe()
	go func() {
		err := writeStreamFrom(pw, m, files)
		for _, o := range files {
			o.Close()
		}
		pw.CloseWithError(err)
	}()
	return meta, pr, nil
}

// reap removes all but the newest retain snapshots. Callers hold mu exclusively.
func (s *SnapshotStore) reap() {
	metas, err := s.list()
	if err != nil {
		s.log.Warn("listing snapshots to reap failed", "error", err)
		return
	}
	for _, m := range metas[min(len(metas), s.retain):] {
		if err := os.RemoveAll(filepath.Join(s.dir, m.ID)); err != nil {
			s.log.Warn("removing an old snapshot failed", "id", m.ID, "error", err)
			continue
		}
		s.log.Info("removed old snapshot", "id", m.ID, "index", m.Index)
	}
}

// snapSink is a snapshot being written.
type snapSink struct {
	store *SnapshotStore
	tmp   string
	data  *os.File
	meta  raft.SnapshotMeta
	done  bool
}

// Write implements io.Writer.
func (k *snapSink) Write(p []byte) (int, error) { return k.data.Write(p) }

// ID implements raft.SnapshotSink.
func (k *snapSink) ID() string { return k.meta.ID }

// Dir is where Persist may hard-link files that belong to this snapshot.
func (k *snapSink) Dir() string { return filepath.Join(k.tmp, snapFilesDir) }

// Cancel implements raft.SnapshotSink: the partial snapshot is removed.
func (k *snapSink) Cancel() error {
	if k.done {
		return nil
	}
	k.done = true
	k.data.Close()
	return os.RemoveAll(k.tmp)
}

// Close implements raft.SnapshotSink: it makes the snapshot durable and visible (fsync the data,
// the links' directory and meta.json, then rename into place), then reaps old snapshots. Like
// raft's own sinks it is idempotent: the FSM's Persist closes the sink, and raft closes it again.
func (k *snapSink) Close() error {
	if k.done {
		return nil
	}
	k.done = true
	err := k.finish()
	if err != nil {
		_ = os.RemoveAll(k.tmp)
		k.store.log.Error("snapshot not saved", "id", k.meta.ID, "error", err)
		return err
	}
	k.store.mu.Lock()
	defer k.store.mu.Unlock()
	final := filepath.Join(k.store.dir, k.meta.ID)
	if err := os.Rename(k.tmp, final); err != nil {
		_ = os.RemoveAll(k.tmp)
		return fmt.Errorf("fsm snapshots: install %s: %w", k.meta.ID, err)
	}
	if err := syncDir(k.store.dir); err != nil {
		return err
	}
	k.store.log.Info("snapshot saved", "id", k.meta.ID, "index", k.meta.Index, "stream_bytes", k.meta.Size)
	k.store.reap()
	return nil
}

func (k *snapSink) finish() error {
	if err := k.data.Sync(); err != nil {
		k.data.Close()
		return fmt.Errorf("fsm snapshots: sync data: %w", err)
	}
	if err := k.data.Close(); err != nil {
		return fmt.Errorf("fsm snapshots: close data: %w", err)
	}
	raw, err := os.ReadFile(filepath.Join(k.tmp, snapDataFile))
	if err != nil {
		return fmt.Errorf("fsm snapshots: read back data: %w", err)
	}
	if isManifest(raw) {
		m, err := decodeManifest(raw)
		if err != nil {
			return err
		}
		k.meta.Size = streamSize(m)
	} else {
		k.meta.Size = int64(len(raw))
	}
	if err := syncDir(k.Dir()); err != nil {
		return err
	}
	b, err := json.Marshal(k.meta)
	if err != nil {
		return fmt.Errorf("fsm snapshots: encode meta: %w", err)
	}
	if err := writeFileSync(filepath.Join(k.tmp, snapMetaFile), b); err != nil {
		return fmt.Errorf("fsm snapshots: write meta: %w", err)
	}
	return syncDir(k.tmp)
}

var _ raft.SnapshotStore = (*SnapshotStore)(nil)
