package progress

import (
	"strings"
	"testing"
	"time"
)

func TestPlainLines(t *testing.T) {
	var out strings.Builder
	now := time.Unix(1000, 0)
	b := New(&out, "devices", 100, false)
	b.now = func() time.Time { return now }
	b.start = now
	now = now.Add(10 * time.Second)
	b.Add(50, 2)
	now = now.Add(10 * time.Second)
	b.Add(50, 0)
	b.Finish()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines = %q", lines)
	}
	if lines[0] != "50/100 devices  5/s  2 failed  10s left" {
		t.Errorf("first line = %q", lines[0])
	}
	if lines[2] != "100/100 devices  5/s  2 failed  done in 20s" {
		t.Errorf("last line = %q", lines[2])
	}
}

func TestTerminalRedrawsInPlace(t *testing.T) {
	var out strings.Builder
	b := New(&out, "devices", 4, true)
	b.Add(2, 0)
	b.Finish()
	if !strings.HasPrefix(out.String(), "\r\x1b[K[") || !strings.HasSuffix(out.String(), "\n") || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("terminal output = %q", out.String())
	}
}
