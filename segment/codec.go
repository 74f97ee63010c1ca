package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
)

// Record frame layout (format version 1, little-endian; see DESIGN.md):
//
//	u32 length   number of body bytes that follow the CRC
//	u32 crc32c   Castagnoli CRC of the body
//	body:
//	  u8  flags      bit 0: last record of an Append batch; other bits must be zero
//	  u8  kind
//	  u64 index
//	  u64 position
//	  u64 revision
//	  i64 timestamp
//	  [16]byte id
//	  uvarint len + stream
//	  uvarint len + type
//	  uvarint len + content type
//	  uvarint len + data
//	  uvarint len + metadata
//	  uvarint count, then count × (uvarint len + tag)
const (
	frameHeaderSize = 8  // u32 length + u32 crc32c
	fixedBodySize   = 50 // flags, kind, index, position, revision, timestamp, id
	// minBodySize is the body of a record whose variable fields are all empty:
	// five one-byte zero lengths and a one-byte zero tag count.
	minBodySize = fixedBodySize + 6

	flagBatchEnd = 1 << 0
	knownFlags   = flagBatchEnd

	// Body offsets of the fixed fields.
	offFlags     = 0
	offKind      = 1
	offIndex     = 2
	offPosition  = 10
	offRevision  = 18
	offTimestamp = 26
	offID        = 34

	// maxEncodedBytes bounds what AppendEncoded produces, so that every encoded
	// record fits the u32 length field and an int on every platform.
	maxEncodedBytes = math.MaxInt32
)

// MinRecordBytes is the size of the smallest possible framed record (every variable
// field empty). Options.MaxRecordBytes may not be below it.
const MinRecordBytes = frameHeaderSize + minBodySize

// castagnoli is the CRC32C table. crc32.MakeTable returns a shared, read-only table for
// Castagnoli; it is never mutated after initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func fieldLen(n int) int { return uvarintLen(uint64(n)) + n }

// encodedSize returns the framed size of r.
func encodedSize(r *Record) int {
	n := frameHeaderSize + fixedBodySize
	n += fieldLen(len(r.Stream))
	n += fieldLen(len(r.Type))
	n += fieldLen(len(r.ContentType))
	n += fieldLen(len(r.Data))
	n += fieldLen(len(r.Metadata))
	n += uvarintLen(uint64(len(r.Tags)))
	for _, t := range r.Tags {
		n += fieldLen(len(t))
	}
	return n
}

// appendFrame appends r framed with the given flags; size must be encodedSize(r). The
// caller has checked the size against its limit.
func appendFrame(dst []byte, r *Record, flags byte, size int) []byte {
	start := len(dst)
	dst = slices.Grow(dst, size)[:start+size]
	b := dst[start:]
	body := b[frameHeaderSize:]
	body[offFlags] = flags
	body[offKind] = r.Kind
	binary.LittleEndian.PutUint64(body[offIndex:], r.Index)
	binary.LittleEndian.PutUint64(body[offPosition:], r.Position)
	binary.LittleEndian.PutUint64(body[offRevision:], r.Revision)
	binary.LittleEndian.PutUint64(body[offTimestamp:], uint64(r.Timestamp))
	copy(body[offID:offID+16], r.ID[:])
	p := fixedBodySize
	p = putField(body, p, r.Stream)
	p = putField(body, p, r.Type)
	p = putField(body, p, r.ContentType)
	p = putField(body, p, r.Data)
	p = putField(body, p, r.Metadata)
	p = putUvarint(body, p, uint64(len(r.Tags)))
	for _, t := range r.Tags {
		p = putField(body, p, t)
	}
	binary.LittleEndian.PutUint32(b, uint32(len(body)))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(body, castagnoli))
	return dst
}

func putUvarint(b []byte, p int, v uint64) int {
	if v < 0x80 {
		b[p] = byte(v)
		return p + 1
	}
	return p + binary.PutUvarint(b[p:], v)
}

func putField[T string | []byte](b []byte, p int, f T) int {
	p = putUvarint(b, p, uint64(len(f)))
	return p + copy(b[p:], f)
}

// AppendEncoded appends one framed record (u32 length, u32 CRC32C, body; layout in
// DESIGN.md) to dst and returns the extended slice. The record is marked as the end of a
// batch, so a concatenation of AppendEncoded outputs is a sequence of complete one-record
// batches. It fails with an error wrapping ErrTooLarge only if the record cannot be framed
// at all (over 2 GiB); callers enforce their own, smaller limit (Options.MaxRecordBytes).
// dst is not modified on error. nil and empty slices encode identically.
func AppendEncoded(dst []byte, r *Record) ([]byte, error) {
	size := encodedSize(r)
	if size > maxEncodedBytes {
		return dst, fmt.Errorf("%w: encoded record is %d bytes, format limit %d", ErrTooLarge, size, maxEncodedBytes)
	}
	return appendFrame(dst, r, flagBatchEnd, size), nil
}

// DecodeRecord decodes one framed record from the front of b and returns it with the
// number of bytes consumed. maxRecordBytes bounds the framed size (<= 0 means the default
// 16 MiB); a length field above it is treated as corruption, so a damaged length can
// never make the decoder allocate or wait for gigabytes. The returned record owns its
// memory (nothing aliases b); empty Data, Metadata and Tags decode as nil.
//
// Errors: a buffer too short for the record its header announces returns an error
// wrapping io.ErrUnexpectedEOF; any other defect (length out of range, CRC mismatch,
// malformed body, unknown flag bits, non-canonical varints, trailing bytes) returns a
// *CorruptionError (errors.Is(err, ErrCorrupt)) whose Offset is 0 and File is empty.
// DecodeRecord never panics, whatever b holds, and every record it accepts re-encodes to
// exactly the bytes it consumed (given the same batch-end flag).
func DecodeRecord(b []byte, maxRecordBytes int) (Record, int, error) {
	if maxRecordBytes <= 0 {
		maxRecordBytes = DefaultMaxRecordBytes
	}
	var r Record
	body, n, err := parseFrame(b, maxRecordBytes)
	if err != nil {
		return r, 0, err
	}
	d := decoder{}
	if _, reason := d.decode(body, &r); reason != "" {
		return Record{}, 0, &CorruptionError{Reason: reason}
	}
	return r, n, nil
}

// parseFrame checks the frame at the front of b (length bounds and CRC) and returns the
// body and the framed size. Errors are io.ErrUnexpectedEOF (wrapped) or *CorruptionError
// with a zero Offset and empty File for the caller to fill in.
func parseFrame(b []byte, maxRecordBytes int) ([]byte, int, error) {
	if len(b) < frameHeaderSize {
		return nil, 0, fmt.Errorf("segment: record header needs %d bytes, have %d: %w", frameHeaderSize, len(b), io.ErrUnexpectedEOF)
	}
	length := binary.LittleEndian.Uint32(b)
	if length < minBodySize {
		return nil, 0, &CorruptionError{Reason: fmt.Sprintf("record length %d below minimum %d", length, minBodySize)}
	}
	total := int64(frameHeaderSize) + int64(length)
	if total > int64(maxRecordBytes) {
		return nil, 0, &CorruptionError{Reason: fmt.Sprintf("record of %d bytes exceeds limit %d", total, maxRecordBytes)}
	}
	if int64(len(b)) < total {
		return nil, 0, fmt.Errorf("segment: record needs %d bytes, have %d: %w", total, len(b), io.ErrUnexpectedEOF)
	}
	body := b[frameHeaderSize:total]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[4:]); got != want {
		return nil, 0, &CorruptionError{Reason: fmt.Sprintf("checksum mismatch: stored %08x, computed %08x", want, got)}
	}
	return body, int(total), nil
}

// interner returns strings for byte slices, reusing earlier strings with the same bytes,
// so an iterator over records whose stream names, types and tags repeat does not
// allocate per record. It is bounded: when full it starts over.
type interner struct {
	m map[string]string
}

const (
	internMaxEntries = 4096
	internMaxLen     = 256
)

func (in *interner) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > internMaxLen {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok { // no allocation: compiler-optimised lookup
		return s
	}
	if in.m == nil {
		in.m = make(map[string]string, 64)
	} else if len(in.m) >= internMaxEntries {
		clear(in.m)
	}
	s := string(b)
	in.m[s] = s
	return s
}

// decoder decodes record bodies. The zero value allocates fresh strings and copies Data
// and Metadata out of the body.
type decoder struct {
	in      *interner // nil: plain string conversion
	alias   bool      // Data and Metadata alias the body (capacity-capped) instead of copying
	reuse   bool      // Tags reuse tagBuf across calls
	tagBuf  []string
	last    [numSlots]string // with in: previous string per field
	scratch Record           // target for validation-only decoding
}

type bodyReader struct {
	b   []byte
	off int
}

func (br *bodyReader) uvarint() (uint64, bool) {
	v, n := binary.Uvarint(br.b[br.off:])
	if n <= 0 || n != uvarintLen(v) { // truncated, overflowing or non-canonical
		return 0, false
	}
	br.off += n
	return v, true
}

func (br *bodyReader) field() ([]byte, bool) {
	l, ok := br.uvarint()
	if !ok || l > uint64(len(br.b)-br.off) {
		return nil, false
	}
	end := br.off + int(l)
	f := br.b[br.off:end:end]
	br.off = end
	return f, true
}

// String slots of decoder.last: the previous value of each string field.
const (
	slotStream = iota
	slotType
	slotContentType
	slotTag
	numSlots
)

func (d *decoder) str(b []byte, validate bool, slot int) string {
	switch {
	case validate || len(b) == 0:
		return ""
	case d.in != nil:
		// Consecutive records usually repeat a field's value: compare before hashing.
		if s := d.last[slot]; s == string(b) {
			return s
		}
		s := d.in.get(b)
		d.last[slot] = s
		return s
	default:
		return string(b)
	}
}

func (d *decoder) bytes(b []byte, validate bool) []byte {
	switch {
	case validate || len(b) == 0:
		return nil
	case d.alias:
		return b
	default:
		return append([]byte(nil), b...)
	}
}

// decode parses a CRC-checked body into r and returns the flags. With r == nil it only
// validates the structure and allocates nothing. A non-empty reason means the body is
// malformed; r is then partially filled and must not be used.
func (d *decoder) decode(body []byte, r *Record) (flags byte, reason string) {
	if len(body) < minBodySize {
		return 0, fmt.Sprintf("record body of %d bytes below minimum %d", len(body), minBodySize)
	}
	validate := r == nil
	if validate {
		r = &d.scratch
	}
	flags = body[offFlags]
	if flags&^knownFlags != 0 {
		return 0, fmt.Sprintf("unknown record flags %#02x", flags)
	}
	r.Kind = body[offKind]
	r.Index = binary.LittleEndian.Uint64(body[offIndex:])
	r.Position = binary.LittleEndian.Uint64(body[offPosition:])
	r.Revision = binary.LittleEndian.Uint64(body[offRevision:])
	r.Timestamp = int64(binary.LittleEndian.Uint64(body[offTimestamp:]))
	copy(r.ID[:], body[offID:offID+16])

	br := bodyReader{b: body, off: fixedBodySize}
	var fields [5][]byte
	for i := range fields {
		f, ok := br.field()
		if !ok {
			return 0, fmt.Sprintf("malformed length of variable field %d at body offset %d", i, br.off)
		}
		fields[i] = f
	}
	r.Stream = d.str(fields[0], validate, slotStream)
	r.Type = d.str(fields[1], validate, slotType)
	r.ContentType = d.str(fields[2], validate, slotContentType)
	r.Data = d.bytes(fields[3], validate)
	r.Metadata = d.bytes(fields[4], validate)

	count, ok := br.uvarint()
	if !ok || count > uint64(len(body)-br.off) { // every tag takes at least one byte
		return 0, fmt.Sprintf("malformed tag count at body offset %d", br.off)
	}
	var tags []string
	if count > 0 && !validate {
		if d.reuse {
			tags = d.tagBuf[:0]
		} else {
			tags = make([]string, 0, count)
		}
	}
	for i := uint64(0); i < count; i++ {
		t, ok := br.field()
		if !ok {
			return 0, fmt.Sprintf("malformed tag %d at body offset %d", i, br.off)
		}
		if !validate {
			tags = append(tags, d.str(t, false, slotTag))
		}
	}
	if d.reuse && tags != nil {
		d.tagBuf = tags
		tags = tags[:len(tags):len(tags)]
	}
	r.Tags = tags
	if br.off != len(body) {
		return 0, fmt.Sprintf("%d trailing bytes after record body", len(body)-br.off)
	}
	return flags, ""
}
