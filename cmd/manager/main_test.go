package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func noEnv(string) (string, bool) { return "", false }

func TestNoTokensIsOneClearLine(t *testing.T) {
	var out bytes.Buffer
	code := run(t.Context(), nil, &out, noEnv)
	if code == 0 {
		t.Fatal("exit 0 without tokens or --insecure-no-auth")
	}
	if lines := strings.Count(strings.TrimSpace(out.String()), "\n") + 1; lines != 1 || !strings.Contains(out.String(), "--tokens-file") {
		t.Errorf("output %q: want one line naming --tokens-file", out.String())
	}
}

func TestCheckConfigOpensNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	env := func(k string) (string, bool) {
		if k == "PASSERELLE_DATABASE_URL" {
			return filepath.Join(dir, "p.db"), true
		}
		return "", false
	}
	if code := run(t.Context(), []string{"--insecure-no-auth", "--check-config"}, &out, env); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("--check-config created %s", dir)
	}
}

func TestBusyPort(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var out bytes.Buffer
	code := run(t.Context(), []string{"--insecure-no-auth", "--listen", lis.Addr().String(),
		"--database-url", filepath.Join(t.TempDir(), "p.db")}, &out, noEnv)
	if code != 1 || !strings.Contains(out.String(), "cannot listen") {
		t.Errorf("exit %d, output %q", code, out.String())
	}
}

// The binary's loop: serve, answer, stop on cancel.
func TestServesUntilCanceled(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out syncBuffer
	go func() {
		done <- run(ctx, []string{"--insecure-no-auth", "--listen", addr,
			"--database-url", filepath.Join(t.TempDir(), "data", "p.db")}, &out, noEnv)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v1/projects/p/locations/l/registries")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("list registries: %d", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("manager never answered: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling for start-up
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d\n%s", code, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("manager did not stop after cancel")
	}
}

func TestBadDatabaseURL(t *testing.T) {
	var out bytes.Buffer
	code := run(t.Context(), []string{"--insecure-no-auth", "--listen", "127.0.0.1:0",
		"--database-url", "postgres://postgres:secret@127.0.0.1:1/nothing?connect_timeout=2"}, &out, noEnv)
	if code != 1 || !strings.Contains(out.String(), "cannot open the database") || strings.Contains(out.String(), "secret") {
		t.Errorf("exit %d, output %q", code, out.String())
	}
}
