package adminauth_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
)

func TestRoles(t *testing.T) {
	names := []string{"viewer", "deviceController", "provisioner", "editor", "admin"}
	var roles []adminauth.Role
	for _, n := range names {
		r, err := adminauth.ParseRole(n)
		if err != nil {
			t.Fatalf("ParseRole(%q): %v", n, err)
		}
		if r.String() != n {
			t.Errorf("ParseRole(%q).String() = %q", n, r)
		}
		roles = append(roles, r)
	}
	for i, r := range roles {
		for j, o := range roles {
			if got, want := r.Includes(o), i >= j; got != want {
				t.Errorf("%v.Includes(%v) = %v, want %v", r, o, got, want)
			}
		}
		if r.Includes(0) || adminauth.Role(0).Includes(r) {
			t.Errorf("the zero role is included by or includes %v", r)
		}
	}
	for _, bad := range []string{"", "Admin", "devicecontroller", "owner"} {
		if _, err := adminauth.ParseRole(bad); !errors.Is(err, adminauth.ErrUnknownRole) {
			t.Errorf("ParseRole(%q) error = %v, want ErrUnknownRole", bad, err)
		}
	}
	if s := adminauth.Role(42).String(); s != "Role(42)" {
		t.Errorf("Role(42).String() = %q", s)
	}
}

func TestNewTokenAndHash(t *testing.T) {
	a, err := adminauth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := adminauth.NewToken()
	if a == b {
		t.Fatal("two tokens are equal")
	}
	raw, ok := strings.CutPrefix(a, "psl_")
	if !ok {
		t.Fatalf("token %q lacks the psl_ prefix", a)
	}
	if dec, err := base64.RawURLEncoding.DecodeString(raw); err != nil || len(dec) != 32 {
		t.Fatalf("token body: %d bytes, %v", len(dec), err)
	}
	// sha256("test"), the example of the tokens file format.
	if h := adminauth.HashToken("test"); h != "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" {
		t.Errorf("HashToken(test) = %s", h)
	}
	if r := adminauth.Redact(a); strings.Contains(r, raw) {
		t.Errorf("Redact leaks the token: %q", r)
	}
}

func TestParseTokensAndAuthenticate(t *testing.T) {
	admin, _ := adminauth.NewToken()
	viewer, _ := adminauth.NewToken()
	var file bytes.Buffer
	file.WriteString("# Passerelle admin tokens\n\n")
	if err := adminauth.WriteTokenLine(&file, "ci-admin", adminauth.RoleAdmin, admin); err != nil {
		t.Fatal(err)
	}
	file.WriteString("   \n")
	if err := adminauth.WriteTokenLine(&file, "dashboard", adminauth.RoleViewer, viewer); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(file.String(), admin) || strings.Contains(file.String(), viewer) {
		t.Fatal("WriteTokenLine wrote a plaintext token")
	}

	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, file.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := adminauth.LoadTokensFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if tokens.Len() != 2 {
		t.Fatalf("Len = %d, want 2", tokens.Len())
	}
	tests := []struct {
		token    string
		wantName string
		wantRole adminauth.Role
		wantOK   bool
	}{
		{admin, "ci-admin", adminauth.RoleAdmin, true},
		{viewer, "dashboard", adminauth.RoleViewer, true},
		{"psl_wrong", "", 0, false},
		{"", "", 0, false},
		{adminauth.HashToken(admin), "", 0, false}, // the hash is not a token
	}
	for _, tt := range tests {
		name, role, ok := tokens.Authenticate(tt.token)
		if name != tt.wantName || role != tt.wantRole || ok != tt.wantOK {
			t.Errorf("Authenticate(%s) = %q, %v, %v; want %q, %v, %v", adminauth.Redact(tt.token), name, role, ok, tt.wantName, tt.wantRole, tt.wantOK)
		}
	}

	// The start-up token is added to the loaded set.
	gen, _ := adminauth.NewToken()
	if err := tokens.Add("generated-admin", adminauth.RoleAdmin, adminauth.HashToken(gen)); err != nil {
		t.Fatal(err)
	}
	if name, _, ok := tokens.Authenticate(gen); !ok || name != "generated-admin" {
		t.Errorf("added token: %q, %v", name, ok)
	}

	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("loaded", "tokens", tokens)
	if strings.Contains(logs.String(), "sha256") || !strings.Contains(logs.String(), "ci-admin=admin") {
		t.Errorf("log of tokens = %s", logs.String())
	}
}

func TestParseTokensErrors(t *testing.T) {
	h := adminauth.HashToken("x")
	pasted := "psl_SECRETSECRETSECRET"
	tests := []struct {
		name, text, wantErr string
	}{
		{"two fields", "a admin\n", "tokens.txt:1: want"},
		{"four fields", "\n# c\na admin " + h + " extra\n", "tokens.txt:3: want"},
		{"unknown role", "a owner " + h, "tokens.txt:1: unknown role \"owner\""},
		{"plaintext token", "a admin " + pasted, "store the hash, never the token"},
		{"short hash", "a admin sha256:abcd", "64 hex digits"},
		{"non-hex hash", "a admin sha256:" + strings.Repeat("z", 64), "64 hex digits"},
		{"bad name", "a/b admin " + h, "token name"},
		{"duplicate name", "a admin " + h + "\na viewer " + adminauth.HashToken("y"), "tokens.txt:2: token name \"a\" is used twice"},
		{"duplicate hash", "a admin " + h + "\nb viewer " + h, "tokens.txt:2: token \"b\" has the same hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := adminauth.ParseTokens(strings.NewReader(tt.text), "tokens.txt")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error echoes a token: %v", err)
			}
		})
	}
	if _, err := adminauth.LoadTokensFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestAuthenticateConcurrentWithAdd(t *testing.T) {
	tokens := adminauth.NewTokens()
	if err := tokens.Add("first", adminauth.RoleEditor, adminauth.HashToken("first-token")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 50 {
			if err := tokens.Add(fmt.Sprintf("t%d", i), adminauth.RoleViewer, adminauth.HashToken(fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if _, role, ok := tokens.Authenticate("first-token"); !ok || role != adminauth.RoleEditor {
					t.Error("first-token not authenticated")
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkAuthenticate(b *testing.B) {
	tokens := adminauth.NewTokens()
	var last string
	for i := range 20 {
		last, _ = adminauth.NewToken()
		if err := tokens.Add(fmt.Sprintf("t%d", i), adminauth.RoleViewer, adminauth.HashToken(last)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := tokens.Authenticate(last); !ok {
			b.Fatal("not authenticated")
		}
	}
}
