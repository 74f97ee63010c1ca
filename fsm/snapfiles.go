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
	"path/filepath"
	"strings"

	"github.com/cairndb/cairn/segment"
)

// Cheap snapshots (DESIGN §8: snapshot cost must not grow with the data on the node that takes
// it). Segment files are append-only and sealed ones immutable, so a snapshot is a manifest —
// each file's name and the length of its prefix that holds the snapshot's records — plus hard
// links to the files. Taking one costs an fsync and one link per file, whatever the data size.
// Full bytes move only when a follower needs them: the snapshot store's Open turns a manifest
// into a self-contained stream (format 2), which Restore writes back as segment files.
//
//	manifest:  magic "CAIRNMAN" | u32 version (1) | u64 applied | u64 first | u64 last | u32 n
//	           | n × (u16 name length | name | u64 prefix size) | u32 CRC32C of the bytes before
//	stream v2: magic "CAIRNSNP" | u32 version (2) | u64 applied | u64 first | u64 last | u32 n
//	           | n × (u16 name length | name | u64 size | size bytes | u32 CRC32C of those bytes)
//	           | magic "CAIRNEND" | u64 n | u32 CRC32C of every byte before the trailer
const (
	manifestMagic        = "CAIRNMAN"
	manifestVersion      = 1
	snapshotFilesVersion = 2
	// maxSnapshotFile bounds one file's size in a stream, against corrupt lengths.
	maxSnapshotFile = 1 << 34
)

// linkSink is a snapshot sink that can take hard links: the store in this package provides it.
type linkSink interface {
	// Dir is a directory inside the snapshot being written; files linked there belong to it.
	Dir() string
}

// manifestFile is one file of a manifest.
type manifestFile struct {
	name string
	size int64
}

// manifest is a decoded manifest.
type manifest struct {
	applied, first, last uint64
	files                []manifestFile
}

// persistManifest writes a manifest snapshot: fsync the segments (raft compacts its log only
// after Persist succeeds), hard-link the files into the snapshot, write the manifest.
func (s *fsmSnapshot) persistManifest(w io.Writer, dir string) error {
	if err := s.seg.Sync(); err != nil {
		return fmt.Errorf("fsm snapshot: sync segments: %w", err)
	}
	// LinkFiles lists and links under the segment log's rewrite lock: a physical reclaim
	// rewriting a file between the listing and the link would hand the snapshot a file whose
	// bytes no longer match the recorded prefix.
	refs, err := s.seg.LinkFiles(s.last, dir)
	if err != nil {
		return fmt.Errorf("fsm snapshot: link segment files: %w", err)
	}
	m := manifest{applied: s.applied, first: s.first, last: s.last}
	for _, r := range refs {
		m.files = append(m.files, manifestFile{name: r.Name, size: r.Size})
	}
	if _, err := w.Write(encodeManifest(m)); err != nil {
		return fmt.Errorf("fsm snapshot: write manifest: %w", err)
	}
	return nil
}

func encodeManifest(m manifest) []byte {
	le := binary.LittleEndian
	b := append([]byte(manifestMagic), make([]byte, 0, 64)...)
	b = le.AppendUint32(b, manifestVersion)
	b = le.AppendUint64(b, m.applied)
	b = le.AppendUint64(b, m.first)
	b = le.AppendUint64(b, m.last)
	b = le.AppendUint32(b, uint32(len(m.files)))
	for _, f := range m.files {
		b = le.AppendUint16(b, uint16(len(f.name)))
		b = append(b, f.name...)
		b = le.AppendUint64(b, uint64(f.size))
	}
	return le.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// isManifest reports whether b starts like a manifest.
func isManifest(b []byte) bool { return len(b) >= 8 && string(b[:8]) == manifestMagic }

func decodeManifest(b []byte) (manifest, error) {
	le := binary.LittleEndian
	bad := func(why string) (manifest, error) {
		return manifest{}, fmt.Errorf("fsm: snapshot manifest: %s", why)
	}
	if len(b) < 44 || !isManifest(b) {
		return bad("too short or wrong magic")
	}
	body, sum := b[:len(b)-4], le.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return bad("checksum mismatch")
	}
	if v := le.Uint32(body[8:]); v != manifestVersion {
		return bad(fmt.Sprintf("version %d, this node reads %d", v, manifestVersion))
	}
	m := manifest{applied: le.Uint64(body[12:]), first: le.Uint64(body[20:]), last: le.Uint64(body[28:])}
	n := le.Uint32(body[36:])
	rest := body[40:]
	for i := uint32(0); i < n; i++ {
		if len(rest) < 2 {
			return bad("truncated file entry")
		}
		l := int(le.Uint16(rest))
		if len(rest) < 2+l+8 {
			return bad("truncated file entry")
		}
		f := manifestFile{name: string(rest[2 : 2+l]), size: int64(le.Uint64(rest[2+l:]))}
		if err := checkFileName(f.name); err != nil {
			return bad(err.Error())
		}
		m.files = append(m.files, f)
		rest = rest[2+l+8:]
	}
	if len(rest) != 0 {
		return bad("trailing bytes")
	}
	return m, nil
}

// checkFileName refuses names that could escape the directory they are written to.
func checkFileName(name string) error {
	if name == "" || name != filepath.Base(name) || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return fmt.Errorf("bad file name %q", name)
	}
	return nil
}

// streamSize is the exact length of the format-2 stream for m (raft's InstallSnapshot needs it).
func streamSize(m manifest) int64 {
	n := int64(36 + 4 + 20)
	for _, f := range m.files {
		n += 2 + int64(len(f.name)) + 8 + f.size + 4
	}
	return n
}

// writeStreamFrom writes the format-2 stream of manifest m from its opened files, in order.
func writeStreamFrom(w io.Writer, m manifest, files []*os.File) error {
	le := binary.LittleEndian
	all := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, all), 1<<20)
	hdr := append([]byte(snapshotMagic), make([]byte, 0, 32)...)
	hdr = le.AppendUint32(hdr, snapshotFilesVersion)
	hdr = le.AppendUint64(hdr, m.applied)
	hdr = le.AppendUint64(hdr, m.first)
	hdr = le.AppendUint64(hdr, m.last)
	hdr = le.AppendUint32(hdr, uint32(len(m.files)))
	if _, err := bw.Write(hdr); err != nil {
		return err
	}
	for i, f := range m.files {
		var pre []byte
		pre = le.AppendUint16(pre, uint16(len(f.name)))
		pre = append(pre, f.name...)
		pre = le.AppendUint64(pre, uint64(f.size))
		if _, err := bw.Write(pre); err != nil {
			return err
		}
		sum := crc32.New(castagnoli)
		n, err := io.Copy(io.MultiWriter(bw, sum), io.LimitReader(files[i], f.size))
		if err != nil {
			return fmt.Errorf("fsm snapshot: read %s: %w", f.name, err)
		}
		if n != f.size {
			return fmt.Errorf("fsm snapshot: %s has %d bytes, the manifest says %d", f.name, n, f.size)
		}
		if _, err := bw.Write(le.AppendUint32(nil, sum.Sum32())); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	tr := append([]byte(snapshotTrailer), make([]byte, 12)...)
	le.PutUint64(tr[8:], uint64(len(m.files)))
	le.PutUint32(tr[16:], all.Sum32())
	_, err := w.Write(tr)
	return err
}

// buildFromFiles restores a format-2 stream (after its common header, already read into crc)
// into dir: it writes each file, checks its checksum, fsyncs, then opens the result as a segment
// log (which verifies every sealed file record by record) and rebuilds the indexes from it.
func (f *FSM) buildFromFiles(br *bufio.Reader, crc hash.Hash32, dir string, applied, first, last uint64) (*segment.Log, *index, uint64, error) {
	le := binary.LittleEndian
	fail := func(format string, args ...any) (*segment.Log, *index, uint64, error) {
		return nil, nil, 0, fmt.Errorf("fsm restore: "+format, args...)
	}
	tr := io.TeeReader(br, crc)
	var nb [4]byte
	if _, err := io.ReadFull(tr, nb[:]); err != nil {
		return fail("read file count: %w", err)
	}
	n := le.Uint32(nb[:])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail("create %s: %w", dir, err)
	}
	for i := uint32(0); i < n; i++ {
		var lb [2]byte
		if _, err := io.ReadFull(tr, lb[:]); err != nil {
			return fail("file %d: %w", i, err)
		}
		name := make([]byte, le.Uint16(lb[:]))
		var sb [8]byte
		if _, err := io.ReadFull(tr, name); err != nil {
			return fail("file %d: %w", i, err)
		}
		if err := checkFileName(string(name)); err != nil {
			return fail("file %d: %w", i, err)
		}
		if _, err := io.ReadFull(tr, sb[:]); err != nil {
			return fail("file %s: %w", name, err)
		}
		size := le.Uint64(sb[:])
		if size > maxSnapshotFile {
			return fail("file %s: %d bytes is beyond any segment", name, size)
		}
		if err := copyFile(filepath.Join(dir, string(name)), tr, int64(size)); err != nil {
			return fail("file %s: %w", name, err)
		}
	}
	sum := crc.Sum32()
	trailer := make([]byte, 20)
	if _, err := io.ReadFull(br, trailer); err != nil {
		return fail("read trailer: %w", err)
	}
	if string(trailer[:8]) != snapshotTrailer || le.Uint64(trailer[8:]) != uint64(n) {
		return fail("bad trailer: snapshot truncated or corrupt")
	}
	if got := le.Uint32(trailer[16:]); got != sum {
		return fail("checksum %08x, computed %08x", got, sum)
	}
	if err := syncDir(dir); err != nil {
		return fail("%w", err)
	}
	seg, err := segment.Open(dir, f.cfg.Segment)
	if err != nil {
		return fail("open restored segments: %w", err)
	}
	if seg.LastPosition() != last || (last > 0 && seg.FirstPosition() != first) {
		_ = seg.Close()
		return fail("restored segments hold positions %d..%d, the snapshot says %d..%d",
			seg.FirstPosition(), seg.LastPosition(), first, last)
	}
	idx, err := rebuild(seg, f.cfg.Dedupe)
	if err != nil {
		return seg, nil, 0, fmt.Errorf("fsm restore: rebuild indexes: %w", err)
	}
	if err := writeApplied(dir, applied); err != nil {
		return seg, nil, 0, fmt.Errorf("fsm restore: %w", err)
	}
	return seg, idx, applied, nil
}

// copyFile writes exactly size bytes from r, followed by their CRC32C, to path, and fsyncs it.
func copyFile(path string, r io.Reader, size int64) error {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	sum := crc32.New(castagnoli)
	n, err := io.Copy(io.MultiWriter(fh, sum), io.LimitReader(r, size))
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		var cb [4]byte
		if _, err = io.ReadFull(r, cb[:]); err == nil && binary.LittleEndian.Uint32(cb[:]) != sum.Sum32() {
			err = errors.New("file checksum mismatch")
		}
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}
