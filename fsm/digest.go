package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/cairndb/cairn/segment"
)

// Digest returns a SHA-256 over every record up to position upTo (0 or beyond the last visible
// position means all of them), and the last position it covered. Two nodes that applied the same
// log agree on it: it hashes a canonical encoding of each record's replicated fields, not the
// segment bytes (whose batch framing differs between nodes). Events a compaction made gone are
// hashed in their redacted form, whether or not this node has rewritten their segment yet, so a
// node that reclaimed space and one that has not agree. Used to check replica convergence; compare
// nodes that applied the same entries (a compaction changes the digest of earlier positions).
func (f *FSM) Digest(upTo uint64) (last uint64, digest string, err error) {
	f.mu.RLock()
	visible, seg := f.visible, f.seg
	sb := f.idx.scavengedSet()
	f.mu.RUnlock()
	if upTo == 0 || upTo > visible {
		upTo = visible
	}
	h := sha256.New()
	if upTo > 0 {
		it := seg.Scan(Start, Forward)
		defer it.Close()
		var buf []byte
		var red segment.Record
		for it.Next() {
			r := it.Record()
			if r.Position > upTo {
				break
			}
			if len(sb) > 0 {
				red = *r
				if redactIfScavenged(&red, sb) {
					r = &red
				}
			}
			buf = canonical(buf[:0], r)
			h.Write(buf)
			last = r.Position
		}
		if err := it.Err(); err != nil {
			return 0, "", fmt.Errorf("fsm digest: %w", err)
		}
	}
	return last, hex.EncodeToString(h.Sum(nil)), nil
}

func canonical(b []byte, r *segment.Record) []byte {
	le := binary.LittleEndian
	b = le.AppendUint64(b, r.Position)
	b = le.AppendUint64(b, r.Index)
	b = le.AppendUint64(b, r.Revision)
	b = le.AppendUint64(b, uint64(r.Timestamp))
	b = append(b, r.Kind)
	b = append(b, r.ID[:]...)
	str := func(s []byte) {
		b = le.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	str([]byte(r.Stream))
	str([]byte(r.Type))
	str([]byte(r.ContentType))
	str(r.Data)
	str(r.Metadata)
	b = le.AppendUint32(b, uint32(len(r.Tags)))
	for _, t := range r.Tags {
		str([]byte(t))
	}
	return b
}
