package main

import (
	"bufio"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// buildBinary builds this command into a temporary folder and returns
// the binary's path.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "passerelle")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startServeBinary runs `bin serve ARGS` as a process (the listeners with
// a fixed default port off unless ARGS set them), waits for the end of its
// banner, and kills it (by its PID) when the test ends. It returns the
// process and the banner.
func startServeBinary(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, offDefaultPorts(args)...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var log testutil.SyncBuffer
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			_, _ = log.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), "stop with Ctrl-C") { // the banner's last line
				close(ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("passerelle serve was not ready after 30 s:\n%s", log.String())
	}
	return cmd, log.String()
}
