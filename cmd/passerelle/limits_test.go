package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/config"
)

// TestServeConnectionLimitFlags: passerelle serve hands its connection
// limit flags (and their environment variables) to the bridge, and
// refuses bad ones before it opens anything.
func TestServeConnectionLimitFlags(t *testing.T) {
	env := config.MapEnv(map[string]string{"PASSERELLE_MAX_PENDING_PER_ADDRESS": "3"})
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--ops-addr", "", "--data-dir", t.TempDir(), "--admin-addr", freeAddr(t), "--mqtt-addr", freeAddr(t),
			"--hub-addr", "", "--max-connections", "500", "--max-pending-connections", "20"}, &out, env)
	}()
	waitFor(t, &out, "Passerelle is ready")
	waitFor(t, &out, "serving MQTT")
	// Stopping serve while the manager starts makes it exit 1 (the
	// manager's start-up read is cancelled): let it start.
	waitFor(t, &out, "manager serving")
	if want := "max_connections=500 max_pending=20 max_pending_per_address=3"; !strings.Contains(out.String(), want) {
		t.Errorf("the bridge does not serve with %s:\n%s", want, out.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop 20 s after its context ended")
	}

	for _, flag := range []string{"--max-connections=0", "--max-pending-connections=-1", "--max-pending-per-address=-1"} {
		var out bytes.Buffer
		code := run(t.Context(), []string{"serve", "--ops-addr", "", "--check-config", flag}, &out, noEnv)
		name := strings.SplitN(flag, "=", 2)[0]
		if code != 2 || !strings.Contains(out.String(), name) {
			t.Errorf("%s: exit %d, %q; want exit 2 naming %s", flag, code, out.String(), name)
		}
	}
}
