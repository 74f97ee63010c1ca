package fsm

// hiddenBefore returns the first revision of s that is visible at Unix-ns time now: every
// revision below it is hidden from reads. Hidden revisions are always a prefix of the stream,
// which is what lets compaction record them as one number (scavengedBefore).
//
// On this branch the only thing that hides events is a tombstone, which hides all of them. Stream
// metadata (max_count, max_age, truncate_before) and soft delete extend this function; compaction
// calls it and needs nothing else.
func (st *index) hiddenBefore(s *streamState, now int64) uint64 {
	_ = now
	if s.tombstonedAt != 0 {
		return uint64(len(s.positions))
	}
	return 0
}
