package segment

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound is returned by Read for a position outside [FirstPosition, LastPosition].
	ErrNotFound = errors.New("segment: position not stored")
	// ErrCorrupt marks stored bytes that fail verification (CRC, framing, header, ordering).
	// It is always wrapped by a *CorruptionError that names the file and offset.
	ErrCorrupt = errors.New("segment: corrupt data")
	// ErrClosed is returned by every operation on a closed Log, and by iterators whose
	// Log was closed under them.
	ErrClosed = errors.New("segment: log closed")
	// ErrOutOfOrder is returned by Append when positions are not dense and contiguous with
	// the log, or when a raft index decreases. Nothing is written.
	ErrOutOfOrder = errors.New("segment: append out of order")
	// ErrTooLarge is returned by Append for a record whose encoding exceeds
	// Options.MaxRecordBytes (or a batch that cannot be indexed within one segment).
	// Nothing is written.
	ErrTooLarge = errors.New("segment: record too large")
	// ErrNotSealed is returned by Rewrite for the active segment or a base no segment starts at.
	ErrNotSealed = errors.New("segment: not a sealed segment")
	// ErrBadRewrite is returned by Rewrite when a replacement record changes its position or raft
	// index. Nothing is replaced.
	ErrBadRewrite = errors.New("segment: rewrite must keep position and index")
)

// CorruptionError reports stored bytes that failed verification. File is the segment file
// path (empty when DecodeRecord was given a caller's buffer); Offset is the byte offset in
// File of the record or header that is bad. errors.Is(err, ErrCorrupt) holds for it.
type CorruptionError struct {
	File   string
	Offset int64
	Reason string
}

// Error names the file and offset.
func (e *CorruptionError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("segment: corrupt data at offset %d: %s", e.Offset, e.Reason)
	}
	return fmt.Sprintf("segment: corrupt data in %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Unwrap returns ErrCorrupt.
func (e *CorruptionError) Unwrap() error { return ErrCorrupt }

// withLocation fills in File and Offset of a *CorruptionError produced by the codec
// (which knows neither) and returns any other error unchanged.
func withLocation(err error, file string, off int64) error {
	var ce *CorruptionError
	if errors.As(err, &ce) {
		return &CorruptionError{File: file, Offset: off + ce.Offset, Reason: ce.Reason}
	}
	return err
}
