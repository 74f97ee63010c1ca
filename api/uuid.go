package api

import (
	"errors"

	"github.com/google/uuid"
)

// Event ids travel as canonical UUID text on the wire (8-4-4-4-12 hex digits, either case) and
// as 16 bytes in commands. Parsing is strict on purpose: the same id must always be written the
// same way, or a retry written differently would not be recognised by a human reading logs, and
// lenient forms (braces, urn:uuid:, no hyphens), which uuid.Parse also accepts, add nothing.
// github.com/google/uuid does the hex work; see DESIGN.md for why it was added.

var (
	errUUIDFormat = errors.New("not a UUID in canonical form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
	errUUIDNil    = errors.New("the nil UUID is not a valid event id")
)

// parseUUID parses canonical UUID text and rejects the nil UUID.
func parseUUID(s string) ([16]byte, error) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return [16]byte{}, errUUIDFormat
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return [16]byte{}, errUUIDFormat
	}
	if id == uuid.Nil {
		return id, errUUIDNil
	}
	return id, nil
}

// formatUUID returns the canonical lower-case text of id, or "" for the all-zero id (tombstone
// records carry no event id).
func formatUUID(id [16]byte) string {
	if id == uuid.Nil {
		return ""
	}
	return uuid.UUID(id).String()
}

// newUUID returns a random (version 4, RFC 9562) UUID.
func newUUID() [16]byte { return uuid.New() }
