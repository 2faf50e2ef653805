//go:build !linux

package bridge

import "time"

// parker is Linux's (park_linux.go); elsewhere every connection keeps
// its goroutine while idle.
type parker struct{}

func newParker(func(*trackedConn), func(int64)) (*parker, error) { return nil, nil }

func (*parker) park(*trackedConn, time.Time) bool { return false }
func (*parker) unpark(*trackedConn)               {}
func (*parker) close()                            {}
