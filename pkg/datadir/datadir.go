// Package datadir claims a folder for one process: it creates the folder,
// checks that it can be written, and holds an exclusive lock on it for as
// long as the process runs, so that a second Passerelle started on the same
// folder stops at once and names the process that holds it, instead of
// sharing its database and JetStream files behind its back.
//
// The lock is an advisory lock (flock) on a file inside the folder. The
// kernel drops it when the process ends, however it ends, so a crash leaves
// nothing that blocks the next start; the file's content (the holder's pid
// and command) is only there to name the holder in the error.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LockFile is the name of the lock file inside a claimed folder.
const LockFile = "passerelle.lock"

// ErrInUse is returned (wrapped in an *InUseError) by Claim when another
// process holds the folder.
var ErrInUse = errors.New("data folder in use")

// InUseError says which process holds a folder.
type InUseError struct {
	Dir string
	// Holder is what the holder wrote in the lock file: "pid 1234
	// (passerelle serve) since 2026-12-02T10:00:00Z", or empty when it
	// could not be read.
	Holder string
}

func (e *InUseError) Error() string {
	holder := e.Holder
	if holder == "" {
		holder = "another process"
	}
	return fmt.Sprintf("the data folder %s is in use by %s: stop that process, or give this one another data folder", e.Dir, holder)
}

// Unwrap makes errors.Is(err, ErrInUse) true.
func (e *InUseError) Unwrap() error { return ErrInUse }

// Dir is a claimed folder. Release it when the process no longer uses it.
type Dir struct {
	path string
	f    *os.File
}

// Path is the folder.
func (d *Dir) Path() string { return d.path }

// Release drops the lock. It is safe to call more than once.
func (d *Dir) Release() error {
	if d == nil || d.f == nil {
		return nil
	}
	err := unlock(d.f)
	if cerr := d.f.Close(); err == nil {
		err = cerr
	}
	d.f = nil
	return err
}

// Claim creates dir (mode 0700: it holds keys and tokens) if needed, checks
// that it can be written, and locks it for this process. what names the
// process in the lock file ("passerelle serve"), for the error a second
// claimant gets. A folder another process holds gives an *InUseError.
func Claim(dir, what string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot use the data folder %s: %w (choose another data folder)", dir, err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("cannot write in the data folder %s: %w (fix its permissions or choose another data folder)", dir, err)
		}
		return nil, fmt.Errorf("cannot use the data folder %s: %w", dir, err)
	}
	locked, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot lock the data folder %s: %w", dir, err)
	}
	if !locked {
		holder, _ := os.ReadFile(path)
		f.Close()
		return nil, &InUseError{Dir: dir, Holder: strings.TrimSpace(string(holder))}
	}
	// Ours now: say who we are, for the next claimant's error.
	note := fmt.Sprintf("pid %d (%s) since %s\n", os.Getpid(), what, time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(note), 0)
		if err != nil {
			_ = unlock(f)
			f.Close()
			return nil, fmt.Errorf("cannot write in the data folder %s: %w (is the disk full?)", dir, err)
		}
	}
	return &Dir{path: dir, f: f}, nil
}
