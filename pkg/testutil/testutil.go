// Package testutil holds the small helpers the tests of every package
// share: a logger that writes into the test's log, polling until a
// condition holds, a must for test setup, a free address, a buffer that a
// server writes while the test reads it, and a server run for the length
// of a test. Only tests import it.
package testutil

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
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

// FreeAddr returns a TCP address on 127.0.0.1 that nothing listens on (for
// a moment), for a server under test that takes an address rather than a
// listener.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return "127.0.0.1:" + strconv.Itoa(FreePort(tb))
}

// Ports handed out by FreePort come from below the kernel's ephemeral
// range (32768-60999 on Linux): a port the kernel gives a listener on :0
// is one it may give the next outgoing connection, so a server started a
// moment later can find it taken by a client socket of another test.
const (
	freePortLow  = 20000
	freePortHigh = 32767
)

var (
	handedMu sync.Mutex
	handed   = map[int]bool{} // ports this process has handed out
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on (for
// a moment), never the same twice in one process.
func FreePort(tb testing.TB) int {
	tb.Helper()
	handedMu.Lock()
	defer handedMu.Unlock()
	for range 1000 {
		p := freePortLow + rand.IntN(freePortHigh-freePortLow+1)
		if handed[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		handed[p] = true
		return p
	}
	tb.Fatalf("no free TCP port on 127.0.0.1 between %d and %d after 1000 tries", freePortLow, freePortHigh)
	return 0
}

// SyncBuffer is a bytes.Buffer that a server (its logger, a command's
// stderr) may write while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveStopTimeout bounds how long Serve's stop waits for the server.
const serveStopTimeout = 20 * time.Second

// Serve runs serve in a goroutine until stop is called or the test ends:
// then it cancels serve's context and waits for serve to return, failing
// tb when it returns an error or has not returned after 20 s. stop may be
// called more than once.
func Serve(tb testing.TB, serve func(ctx context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("serve: %v", err)
				}
			case <-time.After(serveStopTimeout):
				tb.Errorf("a server did not stop %s after its context ended", serveStopTimeout)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}
