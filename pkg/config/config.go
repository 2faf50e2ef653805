// Package config loads the settings of Passerelle's binaries into typed
// structs: command-line flags first, then PASSERELLE_* environment
// variables for flags not given, then the defaults.
package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "PASSERELLE_"

// EnvName is the environment variable that sets flag name:
// "database-url" -> PASSERELLE_DATABASE_URL.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
}

// Manager is the configuration of the manager service (cmd/manager, and
// the manager inside cmd/passerelle).
type Manager struct {
	// Listen is the TCP address serving gRPC and REST.
	Listen string
	// DataDir holds the SQLite database (unless DatabaseURL names another
	// place) and, without TokensFile, the generated admin token.
	DataDir string
	// DatabaseURL is a SQLite file path or a postgres:// URL; empty means
	// DataDir/passerelle.db.
	DatabaseURL string
	// TokensFile holds the admin tokens; empty means DataDir/tokens, made
	// with an admin token in DataDir/admin.token on first start.
	TokensFile string
	// TLSCert and TLSKey are PEM files; both or neither.
	TLSCert, TLSKey string
	// InsecureNoAuth turns admin authentication off.
	InsecureNoAuth bool
	// LogLevel is the least level logged.
	LogLevel slog.Level
	// CheckConfig asks to validate the configuration and exit.
	CheckConfig bool
}

// Defaults of Manager.
const (
	DefaultListen  = "127.0.0.1:8080"
	DefaultDataDir = "./passerelle-data"
)

// AddFlags declares the manager's flags on fs, writing into m.
func (m *Manager) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&m.Listen, "listen", DefaultListen, "address serving the admin API (gRPC and REST on one port)")
	fs.StringVar(&m.DataDir, "data-dir", DefaultDataDir, "folder of the SQLite database and the generated admin token")
	fs.StringVar(&m.DatabaseURL, "database-url", "", "SQLite file path, or postgres://user@host/db URL (default <data-dir>/passerelle.db)")
	fs.StringVar(&m.TokensFile, "tokens-file", "", "file of hashed admin tokens (default <data-dir>/tokens, made with <data-dir>/admin.token on first start)")
	fs.StringVar(&m.TLSCert, "tls-cert", "", "PEM certificate chain for TLS (with --tls-key)")
	fs.StringVar(&m.TLSKey, "tls-key", "", "PEM private key for TLS (with --tls-cert)")
	fs.BoolVar(&m.InsecureNoAuth, "insecure-no-auth", false, "serve the admin API without authentication (local experiments only)")
	fs.TextVar(&m.LogLevel, "log-level", slog.LevelInfo, "least level logged: debug, info, warn or error")
	fs.BoolVar(&m.CheckConfig, "check-config", false, "validate the configuration, open nothing, and exit")
}

// Validate checks what can be checked without opening anything. Its
// errors say what to do.
func (m *Manager) Validate() error {
	var errs []error
	if m.Listen == "" {
		errs = append(errs, errors.New("--listen is empty: give an address such as "+DefaultListen))
	} else {
		errs = append(errs, CheckAddr("--listen", m.Listen))
	}
	if m.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is empty: give a folder, such as "+DefaultDataDir))
	}
	if (m.TLSCert == "") != (m.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: give both or neither"))
	}
	if m.TokensFile != "" && m.InsecureNoAuth {
		errs = append(errs, errors.New("--tokens-file and --insecure-no-auth contradict each other: give one"))
	}
	errs = append(errs, checkFlagFiles(flagFile{"--tokens-file", m.TokensFile}, flagFile{"--tls-cert", m.TLSCert}, flagFile{"--tls-key", m.TLSKey})...)
	return errors.Join(errs...)
}

// flagFile is a flag that names a file.
type flagFile struct{ flag, path string }

// checkFlagFiles reports, per flag, a file given that cannot be read
// (a path not given is not checked).
func checkFlagFiles(files ...flagFile) []error {
	var errs []error
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.flag, err))
		}
	}
	return errs
}

// Database returns the database to open: DatabaseURL, or the SQLite file
// in DataDir.
func (m *Manager) Database() string {
	if m.DatabaseURL != "" {
		return m.DatabaseURL
	}
	return filepath.Join(m.DataDir, "passerelle.db")
}

// IsPostgres reports whether the database is PostgreSQL.
func (m *Manager) IsPostgres() bool {
	db := m.Database()
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// PrepareDataDir creates the folder of a SQLite database (mode 0700: it
// holds device keys); it does nothing for PostgreSQL.
func (m *Manager) PrepareDataDir() error {
	if m.IsPostgres() {
		return nil
	}
	path := strings.TrimPrefix(strings.TrimPrefix(m.Database(), "sqlite:"), "file:")
	path, _, _ = strings.Cut(path, "?")
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create the data folder %s: %w", dir, err)
	}
	return nil
}
