package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/segment"
)

// Snapshot stream format, version 1 (all integers little-endian):
//
//	header:  magic "CAIRNSNP" | u32 format version (1) | u64 applied raft index
//	         | u64 first position | u64 last position
//	records: for each position first..last: u32 n | n bytes of segment.AppendEncoded
//	trailer: magic "CAIRNEND" | u64 record count | u32 CRC32C of every byte before the trailer
//
// This is a full copy of the events, which is correct for any state but costs O(data) per
// snapshot. The cluster-operations work replaces it with a manifest of sealed segments plus links
// (DESIGN §8); the header's format version lets Restore tell the two apart.
const (
	snapshotMagic   = "CAIRNSNP"
	snapshotTrailer = "CAIRNEND"
	snapshotVersion = 1
	restoreBatch    = 256
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot implements raft.FSM. It runs on the apply goroutine and only captures the applied
// index and the position range; the copy happens in Persist, concurrently with later applies,
// which never change records at or below the captured last position.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, ErrClosed
	}
	return &fsmSnapshot{seg: f.seg, applied: f.applied, first: f.seg.FirstPosition(), last: f.visible, f: f}, nil
}

type fsmSnapshot struct {
	f           *FSM
	seg         *segment.Log
	applied     uint64
	first, last uint64
}

// Persist writes the snapshot stream. It first makes every segment record durable: raft compacts
// its log only after Persist succeeds, and the segment files are written without per-batch fsync
// because the raft log holds the entries (DESIGN §8).
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	var err error
	if ls, ok := sink.(linkSink); ok {
		err = s.persistManifest(sink, ls.Dir())
	} else {
		err = s.persist(sink)
	}
	if s.f.cfg.OnSnapshot != nil {
		s.f.cfg.OnSnapshot(snapshotLen(s.first, s.last), time.Since(start), err)
	}
	if err != nil {
		s.f.log.Error("snapshot persist failed", "applied_index", s.applied, "error", err)
		_ = sink.Cancel()
		return err
	}
	s.f.log.Info("snapshot persisted", "applied_index", s.applied, "records", snapshotLen(s.first, s.last),
		"duration", time.Since(start))
	// Every record up to s.applied is now fsynced: remember that, so a restart knows its data
	// covers the snapshot even when the entries just before the snapshot wrote no records.
	if err := writeApplied(s.seg.Dir(), s.applied); err != nil {
		s.f.log.Warn("recording the snapshot's applied index failed", "error", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) persist(w io.Writer) error {
	if err := s.seg.Sync(); err != nil {
		return fmt.Errorf("fsm snapshot: sync segments: %w", err)
	}
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<20)
	hdr := make([]byte, 0, 36)
	hdr = append(hdr, snapshotMagic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, snapshotVersion)
	hdr = binary.LittleEndian.AppendUint64(hdr, s.applied)
	hdr = binary.LittleEndian.AppendUint64(hdr, s.first)
	hdr = binary.LittleEndian.AppendUint64(hdr, s.last)
	if _, err := bw.Write(hdr); err != nil {
		return fmt.Errorf("fsm snapshot: write header: %w", err)
	}
	var count uint64
	if s.last > 0 {
		it := s.seg.Scan(s.first, segment.Forward)
		var buf []byte
		for it.Next() && it.Record().Position <= s.last {
			var err error
			buf, err = segment.AppendEncoded(binary.LittleEndian.AppendUint32(buf[:0], 0), it.Record())
			if err != nil {
				it.Close()
				return fmt.Errorf("fsm snapshot: encode position %d: %w", it.Record().Position, err)
			}
			binary.LittleEndian.PutUint32(buf, uint32(len(buf)-4))
			if _, err := bw.Write(buf); err != nil {
				it.Close()
				return fmt.Errorf("fsm snapshot: write: %w", err)
			}
			count++
		}
		if err := it.Err(); err != nil {
			it.Close()
			return fmt.Errorf("fsm snapshot: scan: %w", err)
		}
		it.Close()
		if want := s.last - s.first + 1; count != want {
			return fmt.Errorf("fsm snapshot: copied %d records, want %d", count, want)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("fsm snapshot: flush: %w", err)
	}
	tr := append([]byte(snapshotTrailer), make([]byte, 12)...)
	binary.LittleEndian.PutUint64(tr[8:], count)
	binary.LittleEndian.PutUint32(tr[16:], crc.Sum32())
	if _, err := w.Write(tr); err != nil {
		return fmt.Errorf("fsm snapshot: write trailer: %w", err)
	}
	return nil
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it replaces all state with the snapshot's. The new state is built
// in a fresh generation directory, fsynced, and made live by atomically rewriting CURRENT, so a
// crash at any point leaves either the old state or the new one, never a mix. Only then are the
// in-memory indexes swapped and the old generation deleted.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.mu.RLock()
	gen := f.gen + 1
	f.mu.RUnlock()
	dir := genDir(f.cfg.Dir, gen)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("fsm restore: clear %s: %w", dir, err)
	}
	seg, idx, applied, err := f.buildFromSnapshot(rc, dir)
	if err != nil {
		if seg != nil {
			_ = seg.Close()
		}
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			f.log.Warn("removing failed restore generation", "dir", dir, "error", rmErr)
		}
		f.log.Error("snapshot restore failed; previous state kept", "error", err)
		return err
	}
	if err := writeCurrent(f.cfg.Dir, gen); err != nil {
		_ = seg.Close()
		_ = os.RemoveAll(dir)
		return err
	}

	f.mu.Lock()
	old, oldGen := f.seg, f.gen
	f.install(seg, gen, idx)
	f.applied = max(applied, idx.lastIndex)
	if !f.closed {
		close(f.appliedCh)
		f.appliedCh = make(chan struct{})
	}
	f.mu.Unlock()

	if err := old.Close(); err != nil {
		f.log.Warn("closing replaced generation", "generation", oldGen, "error", err)
	}
	if err := os.RemoveAll(genDir(f.cfg.Dir, oldGen)); err != nil {
		f.log.Warn("removing replaced generation", "generation", oldGen, "error", err)
	}
	f.reclaim.request() // the snapshot's files may predate its compactions' reclaim
	f.log.Info("restored snapshot", "generation", gen, "applied_index", f.applied,
		"last_position", idx.lastPos, "streams", len(idx.streams))
	return nil
}

func (f *FSM) buildFromSnapshot(rc io.Reader, dir string) (*segment.Log, *index, uint64, error) {
	crc := crc32.New(castagnoli)
	br := bufio.NewReaderSize(rc, 1<<20)
	hdr := make([]byte, 36)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return nil, nil, 0, fmt.Errorf("fsm restore: read header: %w", err)
	}
	crc.Write(hdr)
	if string(hdr[:8]) != snapshotMagic {
		return nil, nil, 0, fmt.Errorf("fsm restore: %w: not a Cairn snapshot", ErrInvalidCommand)
	}
	applied := binary.LittleEndian.Uint64(hdr[12:])
	first, last := binary.LittleEndian.Uint64(hdr[20:]), binary.LittleEndian.Uint64(hdr[28:])
	switch v := binary.LittleEndian.Uint32(hdr[8:]); v {
	case snapshotVersion:
	case snapshotFilesVersion:
		return f.buildFromFiles(br, crc, dir, applied, first, last)
	default:
		return nil, nil, 0, fmt.Errorf("fsm restore: snapshot format version %d, this node reads %d and %d",
			v, snapshotVersion, snapshotFilesVersion)
	}

	seg, err := segment.Open(dir, f.cfg.Segment)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("fsm restore: open new generation: %w", err)
	}
	idx := newIndex(f.cfg.Dedupe)
	var (
		count uint64
		batch []segment.Record
		lenb  [4]byte
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := seg.Append(batch); err != nil {
			return fmt.Errorf("fsm restore: append: %w", err)
		}
		batch = batch[:0]
		return nil
	}
	for want := snapshotLen(first, last); count < want; count++ {
		rec, err := readFramed(br, crc, lenb[:], f.cfg.Segment.MaxRecordBytes)
		if err != nil {
			return seg, nil, 0, fmt.Errorf("fsm restore: record %d of %d: %w", count+1, want, err)
		}
		if rec.Position != first+count {
			return seg, nil, 0, fmt.Errorf("fsm restore: record %d has position %d, want %d", count+1, rec.Position, first+count)
		}
		idx.add(&rec)
		if batch = append(batch, rec); len(batch) >= restoreBatch {
			if err := flush(); err != nil {
				return seg, nil, 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return seg, nil, 0, err
	}
	sum := crc.Sum32()
	tr := make([]byte, 20)
	if _, err := io.ReadFull(br, tr); err != nil {
		return seg, nil, 0, fmt.Errorf("fsm restore: read trailer: %w", err)
	}
	if string(tr[:8]) != snapshotTrailer || binary.LittleEndian.Uint64(tr[8:]) != count {
		return seg, nil, 0, errors.New("fsm restore: bad trailer: snapshot truncated or corrupt")
	}
	if got := binary.LittleEndian.Uint32(tr[16:]); got != sum {
		return seg, nil, 0, fmt.Errorf("fsm restore: checksum %08x, computed %08x", got, sum)
	}
	if err := seg.Sync(); err != nil {
		return seg, nil, 0, fmt.Errorf("fsm restore: sync: %w", err)
	}
	if err := writeApplied(dir, applied); err != nil {
		return seg, nil, 0, fmt.Errorf("fsm restore: %w", err)
	}
	return seg, idx, applied, nil
}

func snapshotLen(first, last uint64) uint64 {
	if last == 0 {
		return 0
	}
	return last - first + 1
}

func readFramed(br *bufio.Reader, crc hash.Hash32, lenb []byte, maxRecord int) (segment.Record, error) {
	if _, err := io.ReadFull(br, lenb); err != nil {
		return segment.Record{}, err
	}
	crc.Write(lenb)
	n := binary.LittleEndian.Uint32(lenb)
	if int64(n) > int64(maxRecord)+64 {
		return segment.Record{}, fmt.Errorf("frame of %d bytes exceeds the record limit", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(br, buf); err != nil {
		return segment.Record{}, err
	}
	crc.Write(buf)
	rec, used, err := segment.DecodeRecord(buf, maxRecord)
	if err != nil {
		return segment.Record{}, err
	}
	if used != int(n) {
		return segment.Record{}, fmt.Errorf("frame of %d bytes holds a record of %d", n, used)
	}
	return rec, nil
}
