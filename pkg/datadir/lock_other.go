//go:build !unix

package datadir

import "os"

// tryLock does not lock on systems without flock: Passerelle's servers run
// on Linux and macOS, and there two starts on one folder are refused.
func tryLock(*os.File) (bool, error) { return true, nil }

func unlock(*os.File) error { return nil }
