package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
)

// Event ids travel as canonical UUID text on the wire (8-4-4-4-12 hex digits, either case) and
// as 16 bytes in commands. Parsing is strict on purpose: the same id must always be written the
// same way, or a retry written differently would not be recognised by a human reading logs, and
// lenient forms (braces, urn:uuid:, no hyphens) add nothing.

var (
	errUUIDFormat = errors.New("not a UUID in canonical form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
	errUUIDNil    = errors.New("the nil UUID is not a valid event id")
)

// parseUUID parses canonical UUID text and rejects the nil UUID.
func parseUUID(s string) ([16]byte, error) {
	var id [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, errUUIDFormat
	}
	var hexDigits [32]byte
	n := 0
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue
		}
		hexDigits[n] = s[i]
		n++
	}
	if _, err := hex.Decode(id[:], hexDigits[:]); err != nil {
		return [16]byte{}, errUUIDFormat
	}
	if id == ([16]byte{}) {
		return id, errUUIDNil
	}
	return id, nil
}

// formatUUID returns the canonical lower-case text of id, or "" for the all-zero id (tombstone
// records carry no event id).
func formatUUID(id [16]byte) string {
	if id == ([16]byte{}) {
		return ""
	}
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], id[10:16])
	return string(b[:])
}

// newUUID returns a random (version 4, RFC 9562) UUID. crypto/rand.Read does not fail.
func newUUID() [16]byte {
	var id [16]byte
	_, _ = rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // variant 10
	return id
}
