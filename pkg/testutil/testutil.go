// Package testutil holds the small helpers the service tests share: a
// logger that writes into the test's log, polling until a condition holds,
// and a must for test setup. Only tests import it.
package testutil

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// Logger logs into tb's log at debug level under go test -v, and nowhere
// otherwise.
func Logger(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) { w.tb.Log(string(p)); return len(p), nil }

// WaitFor polls f until it returns nil, failing tb with f's last error
// after timeout.
func WaitFor(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Must returns v, or panics with err: for test setup only.
func Must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
