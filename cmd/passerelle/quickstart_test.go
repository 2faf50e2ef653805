package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// TestGcloudQuickstartScript runs testdata/iot/quickstart.sh, the gcloud
// iot lines of Cloud IoT Core's documentation with `gcloud iot` replaced
// by `passerelle iot`, with a built passerelle binary on PATH against
// `passerelle serve` run from the same binary.
func TestGcloudQuickstartScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	binDir := t.TempDir()
	bin := filepath.Join(binDir, "passerelle")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	adminAddr := testutil.FreeAddr(t)
	serve := exec.Command(bin, "serve", "--ops-addr", "", "--data-dir", dataDir, "--admin-addr", adminAddr,
		"--mqtt-addr", "", "--mqtt-plain-addr", testutil.FreeAddr(t), "--hub-addr", testutil.FreeAddr(t))
	stderr, err := serve.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	var log testutil.SyncBuffer
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), "Passerelle is ready") {
				close(ready)
				break
			}
		}
		_, _ = io.Copy(&log, stderr)
	}()
	t.Cleanup(func() {
		_ = serve.Process.Signal(syscall.SIGTERM)
		_ = serve.Wait()
	})
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("passerelle serve was not ready after 30 s:\n%s", log.String())
	}

	keys, err := filepath.Abs(filepath.Join("testdata", "iot"))
	if err != nil {
		t.Fatal(err)
	}
	script := exec.Command("bash", filepath.Join(keys, "quickstart.sh"))
	script.Env = append(os.Environ(),
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"PASSERELLE_ENDPOINT="+adminAddr,
		"PASSERELLE_TOKEN_FILE="+filepath.Join(dataDir, "admin.token"),
		"PASSERELLE_CONFIG_DIR="+t.TempDir(),
		"PROJECT_ID=my-project", "REGION=us-central1", "KEYS="+keys)
	out, err := script.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "quickstart: OK") {
		t.Fatalf("quickstart.sh: %v\n%s", err, out)
	}
}
