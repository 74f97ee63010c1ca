//go:build !jepsenbugs

package bugs

// Enabled reports whether the named bug is planted in this process. Without the jepsenbugs build
// tag it is always false, and callers' buggy branches compile away.
func Enabled(string) bool { return false }
