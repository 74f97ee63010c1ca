package fsm

// Watermark is a consistent snapshot of the applied-and-readable watermark, for readers that
// follow the log as it grows (subscriptions).
type Watermark struct {
	// AppliedIndex is the raft index up to which every entry is applied and readable.
	AppliedIndex uint64
	// LastPosition is the global position of the last readable record, 0 if none. Every record
	// at or below it can be read (ReadAll, ReadStream) as long as the FSM is open.
	LastPosition uint64
	// Changed is closed as soon as the watermark moves past this snapshot (a batch was applied,
	// or a snapshot was restored) and when the FSM closes. It is never closed before the new
	// state is readable, so a reader that finds nothing new at LastPosition and then waits on
	// Changed misses no record: there is no window between the check and the wait.
	Changed <-chan struct{}
}

// Watch returns the current watermark together with the channel that announces its next move.
// It fails with ErrClosed once the FSM is closed. Watch takes the read lock only for the
// snapshot; callers read and send (for instance over gRPC, possibly blocking on a slow peer)
// without holding anything, so a slow reader never delays ApplyBatch or other readers.
func (f *FSM) Watch() (Watermark, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return Watermark{}, ErrClosed
	}
	return Watermark{AppliedIndex: f.applied, LastPosition: f.visible, Changed: f.appliedCh}, nil
}
