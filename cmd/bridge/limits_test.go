package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

func TestLimitDefaultsAgree(t *testing.T) {
	if config.DefaultMaxConnections != bridge.DefaultMaxConnections || config.DefaultMaxPendingPerAddress != bridge.DefaultMaxPendingPerAddress {
		t.Error("the flags' defaults are not the bridge's")
	}
}

// TestConnectionLimitFlags: the connection limits reach the bridge, from
// flags and from the environment, and bad ones are refused before
// anything opens.
func TestConnectionLimitFlags(t *testing.T) {
	env := config.MapEnv(map[string]string{"PASSERELLE_MAX_PENDING_PER_ADDRESS": "3"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out testutil.SyncBuffer
	go func() {
		done <- run(ctx, []string{"--mqtt-addr", "", "--mqtt-plain-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
			"--max-connections", "500", "--max-pending-connections", "20"}, &out, env)
	}()
	testutil.WaitFor(t, 20*time.Second, func() error {
		if !strings.Contains(out.String(), "serving MQTT") {
			return fmt.Errorf("not serving yet:\n%s", out.String())
		}
		return nil
	})
	if want := "max_connections=500 max_pending=20 max_pending_per_address=3"; !strings.Contains(out.String(), want) {
		t.Errorf("the bridge does not serve with %s:\n%s", want, out.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\n%s", code, out.String())
	}

	for _, flag := range []string{"--max-connections=0", "--max-pending-connections=-1", "--max-pending-per-address=-1"} {
		var out bytes.Buffer
		code := run(t.Context(), []string{"--check-config", "--mqtt-addr", "", "--mqtt-plain-addr", "127.0.0.1:1883", flag}, &out, noEnv)
		name := strings.SplitN(flag, "=", 2)[0]
		if code != 2 || !strings.Contains(out.String(), name) {
			t.Errorf("%s: exit %d, %q; want exit 2 naming %s", flag, code, out.String(), name)
		}
	}
}
