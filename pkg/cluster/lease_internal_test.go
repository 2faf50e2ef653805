package cluster

import (
	"regexp"
	"testing"
)

// kvKey is what NATS accepts as a key-value key, and no '.' (a subject
// token separator): escaped keys never hold one.
var kvKey = regexp.MustCompile(`^[-/_=a-zA-Z0-9]+$`)

func TestEscapeKey(t *testing.T) {
	for name, want := range map[string]string{
		"projects/p1/locations/us-central1/registries/r1/devices/gw-1": "projects/p1/locations/us-central1/registries/r1/devices/gw-1",
		"a.b":       "a=2Eb",
		"gw~1+x%2":  "gw=7E1=2Bx=252",
		"host=a":    "host=3Da",
		"é":         "=C3=A9",
		"host-1_x/": "host-1_x/",
	} {
		if got := escapeKey(name); got != want {
			t.Errorf("escapeKey(%q) = %q, want %q", name, got, want)
		}
		if back, ok := unescapeKey(escapeKey(name)); !ok || back != name {
			t.Errorf("unescapeKey(escapeKey(%q)) = %q, %v", name, back, ok)
		}
	}
	for _, bad := range []string{"a=", "a=4", "a=zz", "=4g"} {
		if _, ok := unescapeKey(bad); ok {
			t.Errorf("unescapeKey(%q) ok", bad)
		}
	}
}

// FuzzEscapeKey: every name maps to a valid key, and back.
func FuzzEscapeKey(f *testing.F) {
	for _, s := range []string{"projects/p/locations/l/registries/r/devices/d", "a.b", "..", "=", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if name == "" {
			return
		}
		k := escapeKey(name)
		if !kvKey.MatchString(k) {
			t.Fatalf("escapeKey(%q) = %q: not a key", name, k)
		}
		if back, ok := unescapeKey(k); !ok || back != name {
			t.Fatalf("round trip of %q: %q, %v", name, back, ok)
		}
	})
}
