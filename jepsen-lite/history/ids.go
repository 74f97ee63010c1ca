package history

import (
	"encoding/hex"
	"fmt"
)

// Event ids. Every event a run appends has a unique 48-bit id: the writing worker's slot in the
// high 16 bits and that worker's counter in the low 32 (slot+1, so no id is 0). Ids travel as
// UUID text that also carries a per-run nonce, so an event from any other source (a previous
// run, a bug inventing events) is recognised as foreign. Per-worker counters make every anomaly
// attributable: a lost id names its writer and its place in that writer's sequence (lost prefix,
// middle, postfix).

// ForeignID stands for an event id that this run did not write.
const ForeignID uint64 = 0

// MakeID returns the id of a worker slot's n-th event.
func MakeID(slot int, n uint32) uint64 { return uint64(slot+1)<<32 | uint64(n) }

// IDWriter returns the worker slot that wrote id.
func IDWriter(id uint64) int { return int(id>>32) - 1 }

// IDSeq returns id's place in its writer's sequence.
func IDSeq(id uint64) uint32 { return uint32(id) }

// FormatID returns id as a version-4-shaped UUID carrying nonce.
func FormatID(nonce uint32, id uint64) string {
	var b [16]byte
	b[0], b[1], b[2], b[3] = byte(nonce>>24), byte(nonce>>16), byte(nonce>>8), byte(nonce)
	b[4], b[5] = 'j', 'l'
	b[6] = 0x40
	b[8] = 0x80
	for i := 0; i < 6; i++ {
		b[15-i] = byte(id >> (8 * i))
	}
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

// ParseID returns the id carried by a UUID written by FormatID with the same nonce, or
// ForeignID for anything else.
func ParseID(nonce uint32, s string) uint64 {
	want := FormatID(nonce, 0)
	if len(s) != len(want) || s[:24] != want[:24] {
		return ForeignID
	}
	var b [6]byte
	if _, err := hex.Decode(b[:], []byte(s[24:])); err != nil {
		return ForeignID
	}
	var id uint64
	for _, x := range b {
		id = id<<8 | uint64(x)
	}
	return id
}

// IDString renders an id as writer:seq for reports ("3:17" is worker 3's 17th event).
func IDString(id uint64) string {
	if id == ForeignID {
		return "foreign"
	}
	return fmt.Sprintf("%d:%d", IDWriter(id), IDSeq(id))
}
