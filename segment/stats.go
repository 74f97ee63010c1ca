package segment

import "path/filepath"

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

// FileRef is one segment file as a snapshot sees it: the file, and how many of its bytes hold
// the records up to the snapshot's last position. Appends only ever add bytes after that prefix
// and a sealed file never changes, so the prefix is stable while the file exists (or a hard link
// to it does).
type FileRef struct {
	// Name is the file's name in the log directory (it encodes the first position).
	Name string
	// Path is the file's path.
	Path string
	// Size is the length of the prefix holding records up to the position asked for.
	Size int64
}

// Files returns the files that hold positions FirstPosition()..upTo, in order, each with the
// byte length covering only records at or below upTo. upTo must be the last position of a
// completed Append (as it is between applies), so each prefix ends on a batch boundary and a
// copy of these prefixes opens as a valid log. It returns ErrNotFound if upTo is not stored.
func (l *Log) Files(upTo uint64) ([]FileRef, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed.Load() {
		return nil, ErrClosed
	}
	if upTo == 0 {
		return nil, nil
	}
	last, i := l.find(upTo)
	if last == nil {
		return nil, ErrNotFound
	}
	var out []FileRef
	for _, s := range l.segs {
		size := s.size
		if s == last {
			_, size = s.bounds(i)
		}
		out = append(out, FileRef{Name: filepath.Base(s.path), Path: s.path, Size: size})
		if s == last {
			break
		}
	}
	return out, nil
}
