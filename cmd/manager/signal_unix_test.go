//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

func TestMain(m *testing.M) {
	testutil.ChildMain(main)
	os.Exit(m.Run())
}

// readyz returns /readyz's status code and body.
func readyz(opsAddr string) (int, map[string]any, error) {
	resp, err := http.Get("http://" + opsAddr + "/readyz")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("body %q: %v", raw, err)
	}
	return resp.StatusCode, body, nil
}

// The real binary: ready on --ops-addr; the first SIGTERM turns /readyz
// to 503 at once and starts the graceful stop, which waits for a request
// still sending its body; the second SIGTERM stops the process at once,
// saying so, with exit status 143.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	addr, opsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	child := testutil.StartMain(t, "--insecure-no-auth", "--listen", addr, "--ops-addr", opsAddr,
		"--database-url", filepath.Join(t.TempDir(), "p.db"))
	testutil.WaitFor(t, 20*time.Second, func() error {
		code, body, err := readyz(opsAddr)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/readyz %d %v", code, body)
		}
		return err
	})
	_, body, _ := readyz(opsAddr)
	if checks, _ := body["checks"].(map[string]any); checks["database"] != "ok" || checks["manager"] != "ok" {
		t.Errorf("/readyz checks %v, want database and manager ok", body)
	}

	// A REST request that sends half of its body, so the graceful stop
	// has something to wait for.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Expect: 100-continue makes the server say when its handler starts
	// reading the body: from then on the graceful stop waits for it.
	fmt.Fprintf(conn, "POST /v1/projects/p/locations/l/registries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("the server did not start reading the body: %q, %v", line, err)
	}
	fmt.Fprintf(conn, "{\"id\":")

	if err := child.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	child.WaitOutput(t, 10*time.Second, "manager: terminated: stopping gracefully")
	testutil.WaitFor(t, 10*time.Second, func() error {
		code, body, err := readyz(opsAddr)
		if err == nil && (code != http.StatusServiceUnavailable || body["status"] != "not ready") {
			err = fmt.Errorf("/readyz while stopping: %d %v", code, body)
		}
		return err
	})

	if err := child.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := child.Wait(t, 30*time.Second); code != 143 {
		t.Errorf("exit status %d after the second SIGTERM, want 143", code)
	}
	child.WaitOutput(t, time.Second, "manager: terminated again: stopping at once")
}
