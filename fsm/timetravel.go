package fsm

// PositionAtTime returns the first readable position whose commit timestamp is at or after ts
// (Unix nanoseconds), or one past the last readable position when every record is older. Commit
// timestamps never decrease along the log (the FSM clamps them), so this is a binary search:
// O(log n) record reads, no scan and no separate time index.
func (f *FSM) PositionAtTime(ts int64) uint64 {
	f.mu.RLock()
	seg, visible := f.seg, f.visible
	f.mu.RUnlock()
	lo, hi := seg.FirstPosition(), visible+1 // invariant: answer in [lo, hi]
	if visible == 0 || lo == 0 {
		return visible + 1
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		r, err := seg.Read(mid)
		if err != nil {
			// A read failure here (a concurrent restore) ends the search conservatively: the
			// caller starts earlier, never later, and reads the records it needs.
			f.log.Warn("binary search by time: read failed", "position", mid, "error", err)
			return lo
		}
		if r.Timestamp >= ts {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}
