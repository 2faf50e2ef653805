package testutil

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// childArgsEnv carries a child's command-line arguments (JSON) from
// StartMain to ChildMain. PASSERELLE_TEST_* variables are no setting of
// any command.
const childArgsEnv = "PASSERELLE_TEST_CHILD_ARGS"

// ChildMain runs main as the command when this test binary was started by
// StartMain, then exits; otherwise it returns at once. Call it first in
// TestMain of a command's package, so that a test can run the real
// binary (its signals, its exit code) as a separate process.
func ChildMain(main func()) {
	raw, ok := os.LookupEnv(childArgsEnv)
	if !ok {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		panic(err)
	}
	os.Args = append([]string{os.Args[0]}, args...)
	main()
	os.Exit(0)
}

// Child is a command run by StartMain.
type Child struct {
	Cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

// StartMain starts this test binary again as the command (ChildMain in
// its TestMain), with args, and kills it when the test ends if it is
// still running.
func StartMain(tb testing.TB, args ...string) *Child {
	tb.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		tb.Fatal(err)
	}
	c := &Child{stderr: &syncBuffer{}, done: make(chan struct{})}
	c.Cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.Cmd.Env = append(os.Environ(), childArgsEnv+"="+string(raw))
	c.Cmd.Stdout = c.stderr
	c.Cmd.Stderr = c.stderr
	if err := c.Cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		c.err = c.Cmd.Wait()
		close(c.done)
	}()
	tb.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = c.Cmd.Process.Kill()
			<-c.done
		}
		if tb.Failed() {
			tb.Logf("output of %v:\n%s", args, c.Output())
		}
	})
	return c
}

// Output is what the command wrote so far (stdout and stderr).
func (c *Child) Output() string { return c.stderr.String() }

// WaitOutput waits until the output holds s.
func (c *Child) WaitOutput(tb testing.TB, timeout time.Duration, s string) {
	tb.Helper()
	WaitFor(tb, timeout, func() error {
		if strings.Contains(c.Output(), s) {
			return nil
		}
		select {
		case <-c.done:
			return &exitedError{s}
		default:
		}
		return &missingError{s}
	})
}

// Wait waits for the command to exit (at most timeout) and returns its
// exit code.
func (c *Child) Wait(tb testing.TB, timeout time.Duration) int {
	tb.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		tb.Fatalf("the command did not exit within %s", timeout)
	}
	return c.Cmd.ProcessState.ExitCode()
}

type missingError struct{ s string }

func (e *missingError) Error() string { return "the output does not hold " + e.s + " yet" }

type exitedError struct{ s string }

func (e *exitedError) Error() string { return "the command exited without writing " + e.s }

// syncBuffer is a bytes.Buffer safe for a process's writes and a test's
// reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
