package segment

import (
	"os"
	"syscall"
)

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE: start writeback of dirty pages in the
// range without waiting for it to finish.
const syncFileRangeWrite = 0x2

// startWriteback asks the kernel to begin writing [off, off+n) of f to disk without waiting.
// It is a hint that makes the fsync at roll (and Sync) short; durability still comes only
// from fsync.
func startWriteback(f *os.File, off, n int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SyncFileRange(int(fd), off, n, syncFileRangeWrite)
	}); err != nil {
		return err
	}
	return serr
}
