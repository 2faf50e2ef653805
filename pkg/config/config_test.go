package config_test

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/config"
)

func parse(t *testing.T, args []string, env map[string]string) (config.Manager, error) {
	t.Helper()
	var m config.Manager
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	m.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return m, err
	}
	err := config.ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return m, err
}

func TestEnvName(t *testing.T) {
	if got := config.EnvName("database-url"); got != "PASSERELLE_DATABASE_URL" {
		t.Errorf("EnvName = %q", got)
	}
}

func TestFlagsOverEnvironmentOverDefaults(t *testing.T) {
	m, err := parse(t, []string{"--listen", "127.0.0.1:9999"}, map[string]string{
		"PASSERELLE_LISTEN":           "127.0.0.1:1",
		"PASSERELLE_DATABASE_URL":     "postgres://x/y",
		"PASSERELLE_INSECURE_NO_AUTH": "true",
		"PASSERELLE_LOG_LEVEL":        "debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Listen != "127.0.0.1:9999" || m.DatabaseURL != "postgres://x/y" || !m.InsecureNoAuth || m.LogLevel != slog.LevelDebug {
		t.Errorf("got %+v", m)
	}
	if !m.IsPostgres() {
		t.Error("IsPostgres false for postgres://")
	}
	m, err = parse(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Listen != config.DefaultListen || m.DataDir != config.DefaultDataDir || m.Database() != filepath.Join(config.DefaultDataDir, "passerelle.db") || m.LogLevel != slog.LevelInfo {
		t.Errorf("defaults: %+v", m)
	}
}

func TestBadEnvironmentValueNamesTheVariable(t *testing.T) {
	_, err := parse(t, nil, map[string]string{"PASSERELLE_LOG_LEVEL": "loud"})
	if err == nil || !strings.Contains(err.Error(), "PASSERELLE_LOG_LEVEL") {
		t.Errorf("err = %v", err)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // "" = valid
	}{
		{"generated token", nil, ""},
		{"no data dir", []string{"--data-dir", ""}, "--data-dir"},
		{"tokens", []string{"--tokens-file", tokens}, ""},
		{"insecure", []string{"--insecure-no-auth"}, ""},
		{"both", []string{"--insecure-no-auth", "--tokens-file", tokens}, "contradict"},
		{"missing tokens file", []string{"--tokens-file", filepath.Join(dir, "nope")}, "--tokens-file"},
		{"half TLS", []string{"--insecure-no-auth", "--tls-cert", tokens}, "both or neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parse(t, tc.args, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = m.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPrepareDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	m := config.Manager{DatabaseURL: filepath.Join(dir, "p.db")}
	if err := m.PrepareDataDir(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir: %v %v", fi, err)
	}
}
