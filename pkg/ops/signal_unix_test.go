//go:build unix

package ops_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/ops"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The first signal ends the context; the second calls exit with 128+n and
// says so. Real signals, sent to this process (SIGUSR1, which the test
// binary does not otherwise use).
func TestSignalContext(t *testing.T) {
	var out lockedBuffer
	exited := make(chan int, 1)
	ctx, stop := ops.SignalContext(context.Background(), &out, "bridge", func(code int) { exited <- code }, syscall.SIGUSR1)
	defer stop()

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first signal did not end the context")
	}
	if s := out.String(); !strings.HasPrefix(s, "bridge: user defined signal 1: stopping gracefully") {
		t.Errorf("first line %q", s)
	}
	select {
	case code := <-exited:
		t.Fatalf("exit(%d) after one signal", code)
	default:
	}

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != 128+int(syscall.SIGUSR1) {
			t.Errorf("exit(%d), want %d", code, 128+int(syscall.SIGUSR1))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second signal did not call exit")
	}
	if s := out.String(); !strings.Contains(s, "bridge: user defined signal 1 again: stopping at once") {
		t.Errorf("output %q", s)
	}
}

func TestExitCode(t *testing.T) {
	if c := ops.ExitCode(syscall.SIGTERM); c != 143 {
		t.Errorf("SIGTERM: %d", c)
	}
	if c := ops.ExitCode(syscall.SIGINT); c != 130 {
		t.Errorf("SIGINT: %d", c)
	}
}
