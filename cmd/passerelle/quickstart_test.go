package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
	bin := buildBinary(t)
	binDir := filepath.Dir(bin)
	dataDir := filepath.Join(t.TempDir(), "data")
	adminAddr := testutil.FreeAddr(t)
	startServeBinary(t, bin, "--data-dir", dataDir, "--admin-addr", adminAddr,
		"--mqtt-addr", "", "--mqtt-plain-addr", testutil.FreeAddr(t), "--hub-addr", testutil.FreeAddr(t))

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
