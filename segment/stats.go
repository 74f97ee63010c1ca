package segment

// Stats describes the files of a log.
type Stats struct {
	// Segments is the number of segment files, the active one included.
	Segments int
	// Bytes is the bytes in use across them (up to the end of the last complete batch).
	Bytes int64
}

// Stats returns the log's file count and size. Safe concurrently with Append.
func (l *Log) Stats() Stats {
	l.mu.RLock()
	defer l.mu.RUnlock()
	s := Stats{Segments: len(l.segs)}
	for _, seg := range l.segs {
		s.Bytes += seg.size
	}
	return s
}
