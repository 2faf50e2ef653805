// Package adminauth holds Passerelle's admin tokens and roles, its stand-in
// for Cloud IoT's IAM roles (compat-spec section 9). Admin clients send
// "Authorization: Bearer <token>"; the server keeps only SHA-256 hashes of
// the tokens, in a tokens file, each with a name and a role.
package adminauth

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// Role is an admin role. Each role includes every role before it.
type Role int

// The roles, weakest first. The zero Role is no role at all.
const (
	RoleViewer           Role = iota + 1 // get and list
	RoleDeviceController                 // + modify config, send command
	RoleProvisioner                      // + create/update/delete devices, bind
	RoleEditor                           // + create/update/delete registries
	RoleAdmin                            // everything, including SetIamPolicy
)

var roleNames = [...]string{
	RoleViewer:           "viewer",
	RoleDeviceController: "deviceController",
	RoleProvisioner:      "provisioner",
	RoleEditor:           "editor",
	RoleAdmin:            "admin",
}

// ErrUnknownRole is wrapped by ParseRole's error.
var ErrUnknownRole = errors.New("unknown role")

// ParseRole parses a role name: viewer, deviceController, provisioner, editor
// or admin (exactly so spelled).
func ParseRole(s string) (Role, error) {
	for r := RoleViewer; r <= RoleAdmin; r++ {
		if roleNames[r] == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("%w %q: want viewer, deviceController, provisioner, editor or admin", ErrUnknownRole, s)
}

// String returns the role's name as ParseRole accepts it.
func (r Role) String() string {
	if r.valid() {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

func (r Role) valid() bool { return r >= RoleViewer && r <= RoleAdmin }

// Includes reports whether a caller with role r may do what other allows.
// An invalid role includes nothing and is included by nothing.
func (r Role) Includes(other Role) bool {
	return r.valid() && other.valid() && r >= other
}

// TokenPrefix starts every token NewToken makes, so that a leaked token is
// recognisable by secret scanners.
const TokenPrefix = "psl_"

// NewToken returns a new random admin token: TokenPrefix then 32 random
// bytes in unpadded base64url.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate admin token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

const hashPrefix = "sha256:"

// HashToken returns the form a token is stored in: "sha256:<hex>".
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// Redact returns a form of a token fit for logs and messages: its prefix
// only.
func Redact(token string) string {
	if strings.HasPrefix(token, TokenPrefix) {
		return TokenPrefix + "[redacted]"
	}
	return "[redacted]"
}

func parseHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	hexPart, ok := strings.CutPrefix(s, hashPrefix)
	// The message never repeats s: a user who pasted a token where its hash
	// belongs must not see it echoed into logs.
	if !ok || len(hexPart) != 2*sha256.Size {
		return h, errors.New(`token hash must be "sha256:" and 64 hex digits (store the hash, never the token itself)`)
	}
	if _, err := hex.Decode(h[:], []byte(hexPart)); err != nil {
		return h, errors.New(`token hash must be "sha256:" and 64 hex digits`)
	}
	return h, nil
}

const maxNameLen = 128

func checkName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("token name must have 1 to %d characters", maxNameLen)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._@:+-", c)
		if !ok {
			return fmt.Errorf("token name %q: use letters, digits and . _ @ : + - only", name)
		}
	}
	return nil
}

type entry struct {
	name string
	role Role
	hash [sha256.Size]byte
}

// Tokens is a set of named admin tokens, stored as hashes. It is safe for
// concurrent use; Add is meant for start-up (for example the generated admin
// token) but may be called at any time.
type Tokens struct {
	mu      sync.RWMutex
	entries []entry
}

// NewTokens returns an empty set: it authenticates nobody until Add.
func NewTokens() *Tokens { return &Tokens{} }

// Add adds a token by its hash (as HashToken returns it). Names and hashes
// must be unique.
func (t *Tokens) Add(name string, role Role, hash string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if !role.valid() {
		return fmt.Errorf("token %q: invalid role %v", name, role)
	}
	h, err := parseHash(hash)
	if err != nil {
		return fmt.Errorf("token %q: %w", name, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.entries {
		if e.name == name {
			return fmt.Errorf("token name %q is used twice", name)
		}
		if e.hash == h {
			return fmt.Errorf("token %q has the same hash as token %q", name, e.name)
		}
	}
	t.entries = append(t.entries, entry{name: name, role: role, hash: h})
	return nil
}

// Len returns the number of tokens.
func (t *Tokens) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.entries)
}

// Authenticate returns the name and role of token. It hashes the token and
// compares the hash with every entry in constant time, with no early exit,
// so the time taken tells nothing about which entry (if any) matched.
func (t *Tokens) Authenticate(token string) (name string, role Role, ok bool) {
	if token == "" {
		return "", 0, false
	}
	sum := sha256.Sum256([]byte(token))
	t.mu.RLock()
	defer t.mu.RUnlock()
	match := -1
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(sum[:], t.entries[i].hash[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return "", 0, false
	}
	e := t.entries[match]
	return e.name, e.role, true
}

// LogValue lists the token names and roles, never the hashes.
func (t *Tokens) LogValue() slog.Value {
	t.mu.RLock()
	defer t.mu.RUnlock()
	attrs := make([]slog.Attr, 0, len(t.entries))
	for _, e := range t.entries {
		attrs = append(attrs, slog.String(e.name, e.role.String()))
	}
	return slog.GroupValue(attrs...)
}

// LoadTokensFile reads a tokens file (see ParseTokens).
func LoadTokensFile(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("admin tokens: %w", err)
	}
	defer f.Close()
	return ParseTokens(f, path)
}

// ParseTokens reads tokens, one per line: "<name> <role> sha256:<hex>".
// Blank lines and lines starting with # are ignored. Errors name source and
// the line number, never the line's text (it could hold a pasted token).
func ParseTokens(r io.Reader, source string) (*Tokens, error) {
	t := NewTokens()
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s:%d: want \"<name> <role> sha256:<hex>\", found %d fields", source, line, len(fields))
		}
		role, err := ParseRole(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", source, line, err)
		}
		if err := t.Add(fields[0], role, fields[2]); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", source, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: after line %d: %w", source, line, err)
	}
	return t, nil
}

// WriteTokenLine writes the tokens-file line for token: its name, role and
// hash, never the token itself.
func WriteTokenLine(w io.Writer, name string, role Role, token string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if !role.valid() {
		return fmt.Errorf("token %q: invalid role %v", name, role)
	}
	if token == "" {
		return fmt.Errorf("token %q: empty token", name)
	}
	_, err := fmt.Fprintf(w, "%s %s %s\n", name, role, HashToken(token))
	return err
}
