package client

import "github.com/google/uuid"

// NewEventID returns a random (version 4, RFC 9562) UUID in canonical lower-case text form, the
// form the client fills in for events without an id. Use it to choose ids yourself, for instance
// to retry an append from another process.
func NewEventID() string { return uuid.NewString() }
