//go:build !unix

package bridge

// openFileLimit: no RLIMIT_NOFILE to read here.
func openFileLimit() (uint64, bool) { return 0, false }
