package iotcli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/iotcli"
)

func run(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := iotcli.Run(context.Background(), args, iotcli.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}, config.MapEnv(env))
	return out.String(), errOut.String(), code
}

// TestConfigFile: `iot config set` writes a 0600 file in its own 0700
// folder; the variable wins over the file and the flag over both.
func TestConfigFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "passerelle")
	env := map[string]string{"PASSERELLE_CONFIG_DIR": dir}
	for _, kv := range [][2]string{{"endpoint", "127.0.0.1:1"}, {"token", "secret"}, {"project", "from-file"}} {
		if _, errOut, code := run(t, env, "iot", "config", "set", kv[0], kv[1]); code != 0 {
			t.Fatalf("config set %s: exit %d %s", kv[0], code, errOut)
		}
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, "config.yaml"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
	if out, _, _ := run(t, env, "iot", "config", "get", "project"); out != "from-file\n" {
		t.Errorf("config get project = %q", out)
	}
	if out, _, _ := run(t, env, "iot", "config", "list"); strings.Contains(out, "secret") || !strings.Contains(out, "token = (set)") {
		t.Errorf("config list shows the token or not its presence:\n%s", out)
	}
	if _, errOut, code := run(t, env, "iot", "config", "set", "colour", "red"); code != 2 || !strings.Contains(errOut, "known settings: ca-file, endpoint, project, region, token, token-file, transport") {
		t.Errorf("unknown setting: exit %d %s", code, errOut)
	}
	if _, _, code := run(t, env, "iot", "config", "unset", "token"); code != 0 {
		t.Fatal("unset failed")
	}
	if out, _, _ := run(t, env, "iot", "config", "list"); strings.Contains(out, "token") {
		t.Errorf("token still set:\n%s", out)
	}
}

// TestMissingProject names the ways to set it.
func TestMissingProject(t *testing.T) {
	env := map[string]string{"PASSERELLE_CONFIG_DIR": t.TempDir(), "PASSERELLE_ENDPOINT": "127.0.0.1:1"}
	_, errOut, code := run(t, env, "iot", "devices", "list", "--region=us-central1", "--registry=r")
	if code != 1 || !strings.Contains(errOut, "ERROR: (passerelle.iot.devices.list) The required property [project] is not currently set.") {
		t.Errorf("exit %d: %s", code, errOut)
	}
	_, errOut, code = run(t, env, "iot", "devices", "list", "--region=us-central1", "--registry=r", "--project=123")
	if code != 1 || !strings.Contains(errOut, "project number is not accepted") {
		t.Errorf("project number: exit %d: %s", code, errOut)
	}
}

// TestCompletion prints scripts for bash, zsh and fish, and completes
// subcommands.
func TestCompletion(t *testing.T) {
	env := map[string]string{"PASSERELLE_CONFIG_DIR": t.TempDir()}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, errOut, code := run(t, env, "completion", sh)
		if code != 0 || !strings.Contains(out, "passerelle") || len(out) < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes, %s", sh, code, len(out), errOut)
		}
	}
	out, _, code := run(t, env, "__complete", "iot", "devices", "cre")
	if code != 0 || !strings.Contains(out, "create") || !strings.Contains(out, "credentials") {
		t.Errorf("__complete iot devices cre: exit %d\n%s", code, out)
	}
	out, _, _ = run(t, env, "__complete", "iot", "devices", "list", "--device-")
	if !strings.Contains(out, "--device-type") || !strings.Contains(out, "--device-ids") {
		t.Errorf("__complete of flags:\n%s", out)
	}
}

// TestBadEndpoint is a flag error.
func TestBadEndpoint(t *testing.T) {
	env := map[string]string{"PASSERELLE_CONFIG_DIR": t.TempDir(), "PASSERELLE_PROJECT": "p"}
	_, errOut, code := run(t, env, "iot", "registries", "list", "--region=r", "--endpoint=ftp://x")
	if code != 2 || !strings.Contains(errOut, "argument --endpoint: invalid endpoint [ftp://x]") {
		t.Errorf("exit %d: %s", code, errOut)
	}
	_, errOut, code = run(t, env, "iot", "registries", "list", "--region=r")
	if code != 1 || !strings.Contains(errOut, "no endpoint: give --endpoint") {
		t.Errorf("no endpoint: exit %d: %s", code, errOut)
	}
}
