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

	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

var noEnv = config.MapEnv(nil)

func TestCorruptTokensFileIsOneClearLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte("admin root sha256:00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code := run(t.Context(), []string{"--data-dir", dir, "--listen", "127.0.0.1:0"}, &out, noEnv)
	if code == 0 {
		t.Fatal("exit 0 with a corrupt tokens file")
	}
	if lines := strings.Count(strings.TrimSpace(out.String()), "\n") + 1; lines != 1 || !strings.Contains(out.String(), "tokens:1") {
		t.Errorf("output %q: want one line naming the file and line", out.String())
	}
}

func TestCheckConfigOpensNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	env := config.MapEnv(map[string]string{"PASSERELLE_DATABASE_URL": filepath.Join(dir, "p.db")})
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

// The binary's loop, closed by default: the first start makes an admin
// token in the data folder; calls without it are refused, calls with it
// served; the manager stops on cancel.
func TestServesUntilCanceled(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out testutil.SyncBuffer
	go func() {
		done <- run(ctx, []string{"--listen", addr, "--data-dir", dataDir}, &out, noEnv)
	}()
	url := "http://" + addr + "/v1/projects/p/locations/l/registries"
	get := func(token string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, err := get("")
		if err == nil {
			if code != http.StatusUnauthorized {
				t.Errorf("list registries without a token: %d, want 401", code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("manager never answered: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling for start-up
	}
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatalf("first start left no admin token: %v\n%s", err, out.String())
	}
	if code, err := get(strings.TrimSpace(string(token))); err != nil || code != http.StatusOK {
		t.Errorf("list registries with the admin token: %d %v, want 200", code, err)
	}
	if !strings.Contains(out.String(), "admin.token") {
		t.Errorf("the log does not say where the admin token is:\n%s", out.String())
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
		"--database-url", "postgres://postgres:hunter2pw@127.0.0.1:1/nothing?connect_timeout=2"}, &out, noEnv)
	if code != 1 || !strings.Contains(out.String(), "cannot open the database") || strings.Contains(out.String(), "hunter2pw") {
		t.Errorf("exit %d, output %q", code, out.String())
	}
}
