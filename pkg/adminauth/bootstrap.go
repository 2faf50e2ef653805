package adminauth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File names Bootstrap uses in a data folder.
const (
	AdminTokenFile = "admin.token" // the plaintext admin token, mode 0600
	TokensFileName = "tokens"      // the hashed tokens file, mode 0600
)

// Bootstrapped says what Bootstrap found or made.
type Bootstrapped struct {
	Tokens         *Tokens
	TokensFile     string // path of the hashed tokens file
	AdminTokenFile string // path of the plaintext admin token
	Created        bool   // true on first start, when the token was just made
}

// Bootstrap keeps the admin API closed by default: it loads dir/tokens, or,
// on first start, makes an admin token, writes it to dir/admin.token and its
// hash to dir/tokens (both mode 0600, dir created 0700), and loads that.
func Bootstrap(dir string) (Bootstrapped, error) {
	b := Bootstrapped{
		TokensFile:     filepath.Join(dir, TokensFileName),
		AdminTokenFile: filepath.Join(dir, AdminTokenFile),
	}
	t, err := LoadTokensFile(b.TokensFile)
	if err == nil {
		b.Tokens = t
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return b, fmt.Errorf("create the data folder %s: %w", dir, err)
	}
	token, err := NewToken()
	if err != nil {
		return b, err
	}
	var line strings.Builder
	line.WriteString("# Passerelle admin tokens: <name> <role> sha256:<hash of the token>.\n")
	line.WriteString("# Roles: viewer, deviceController, provisioner, editor, admin.\n")
	if err := WriteTokenLine(&line, "admin", RoleAdmin, token); err != nil {
		return b, err
	}
	// The token first: a tokens file without its token would lock the
	// user out on the next start.
	if err := writeNew(b.AdminTokenFile, token+"\n"); err != nil {
		return b, err
	}
	if err := writeNew(b.TokensFile, line.String()); err != nil {
		return b, err
	}
	if b.Tokens, err = LoadTokensFile(b.TokensFile); err != nil {
		return b, err
	}
	b.Created = true
	return b, nil
}

// writeNew writes a new file with mode 0600 and syncs it.
func writeNew(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
