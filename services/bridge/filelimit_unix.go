//go:build unix

package bridge

import "syscall"

// openFileLimit returns the process's open-file limit (the soft
// RLIMIT_NOFILE, which the Go runtime raises to the hard one at start),
// and false when there is none to respect.
func openFileLimit() (uint64, bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur >= 1<<62 {
		return 0, false
	}
	return uint64(r.Cur), true
}
