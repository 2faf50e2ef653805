package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// TestServeConnectionLimitFlags: passerelle serve hands its connection
// limit flags (and their environment variables) to the bridge, and
// refuses bad ones before it opens anything.
func TestServeConnectionLimitFlags(t *testing.T) {
	env := config.MapEnv(map[string]string{"PASSERELLE_MAX_PENDING_PER_ADDRESS": "3"})
	s := startServe(t, env, "serve", "--data-dir", t.TempDir(), "--admin-addr", testutil.FreeAddr(t), "--mqtt-addr", testutil.FreeAddr(t),
		"--pubsub-addr", "", "--hub-addr", "", "--max-connections", "500", "--max-pending-connections", "20")
	waitFor(t, &s.out, "serving MQTT")
	if want := "max_connections=500 max_pending=20 max_pending_per_address=3"; !strings.Contains(s.out.String(), want) {
		t.Errorf("the bridge does not serve with %s:\n%s", want, s.out.String())
	}
	s.stop(t)

	for _, flag := range []string{"--max-connections=0", "--max-pending-connections=-1", "--max-pending-per-address=-1"} {
		var out bytes.Buffer
		code := run(t.Context(), []string{"serve", "--ops-addr", "", "--http-bridge-addr", "", "--check-config", flag}, &out, noEnv)
		name := strings.SplitN(flag, "=", 2)[0]
		if code != 2 || !strings.Contains(out.String(), name) {
			t.Errorf("%s: exit %d, %q; want exit 2 naming %s", flag, code, out.String(), name)
		}
	}
}
