package adminauth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
)

func TestBootstrap(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := adminauth.Bootstrap(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created {
		t.Fatal("first start did not create a token")
	}
	for _, p := range []string{first.AdminTokenFile, first.TokensFile} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	raw, err := os.ReadFile(first.AdminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(raw))
	hashed, err := os.ReadFile(first.TokensFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(hashed), token) {
		t.Fatal("the tokens file holds the plaintext token")
	}
	second, err := adminauth.Bootstrap(dir)
	if err != nil {
		t.Fatal(err)
	}
	if second.Created {
		t.Fatal("second start made a new token")
	}
	name, role, ok := second.Tokens.Authenticate(token)
	if !ok || name != "admin" || role != adminauth.RoleAdmin {
		t.Fatalf("Authenticate(admin token) = %q %v %v", name, role, ok)
	}
}

func TestBootstrapCorruptTokensFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, adminauth.TokensFileName), []byte("admin admin sha256:zz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := adminauth.Bootstrap(dir); err == nil || !strings.Contains(err.Error(), "tokens:1") {
		t.Fatalf("Bootstrap on a corrupt file = %v, want an error naming the file and line", err)
	}
}
