package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// --nats-url (here through its environment variable) makes the manager
// announce config changes on that NATS server, where a bridge listens.
func TestAnnouncesOnNATS(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := bus.Open(t.Context(), logger, bus.Options{DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() }) // after the manager's end
	got := make(chan bus.Announcement, 16)
	stopSub, err := b.SubscribeAnnouncements(func(a bus.Announcement) { got <- a })
	if err != nil {
		t.Fatal(err)
	}
	defer stopSub()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	env := config.MapEnv(map[string]string{"PASSERELLE_NATS_URL": b.Server().ClientURL()})
	out := runManager(t, env, "--insecure-no-auth", "--listen", addr, "--database-url", filepath.Join(t.TempDir(), "p.db"))

	base := "http://" + addr + "/v1/projects/p/locations/l/registries"
	post := func(url, body string) (int, error) {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(resp.Body)
			t.Logf("POST %s: %s", url, msg)
		}
		return resp.StatusCode, nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, err := post(base, `{"id":"reg"}`)
		if err == nil {
			if code != http.StatusOK {
				t.Fatalf("create registry: %d", code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("manager never answered: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling for start-up
	}
	if code, err := post(base+"/reg/devices", `{"id":"dev"}`); err != nil || code != http.StatusOK {
		t.Fatalf("create device: %d %v", code, err)
	}
	if code, err := post(base+"/reg/devices/dev:modifyCloudToDeviceConfig", `{"binaryData":"aGk="}`); err != nil || code != http.StatusOK {
		t.Fatalf("modify config: %d %v", code, err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case a := <-got:
			if a.Kind == bus.ConfigChanged && a.DeviceID == "dev" {
				return
			}
		case <-timeout:
			t.Fatalf("no configChanged announcement on the bus\n%s", out.String())
		}
	}
}

func TestUnreachableNATS(t *testing.T) {
	// Port 1 (tcpmux): a free port closed again could be taken by another
	// test's NATS server before the manager dials it.
	natsAddr := "127.0.0.1:1"
	var out testutil.SyncBuffer
	code := run(t.Context(), []string{"--insecure-no-auth", "--listen", "127.0.0.1:0",
		"--database-url", filepath.Join(t.TempDir(), "p.db"), "--nats-url", "nats://" + natsAddr}, &out, noEnv)
	if code != 1 || !strings.Contains(out.String(), "--nats-url") {
		t.Errorf("exit %d, output %q", code, out.String())
	}
}

// --pubsub-addr serves the Pub/Sub API on the bus's stream: a registry's
// topic exists as soon as the registry names it (REST, as REST users call
// it).
func TestServesPubSub(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := bus.Open(t.Context(), logger, bus.Options{DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() }) // after the manager's end
	addr, psAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	runManager(t, config.MapEnv(nil), "--insecure-no-auth", "--listen", addr, "--nats-url", b.Server().ClientURL(),
		"--pubsub-addr", psAddr, "--database-url", filepath.Join(t.TempDir(), "p.db"))
	testutil.WaitFor(t, 10*time.Second, func() error {
		resp, err := http.Post("http://"+addr+"/v1/projects/p/locations/l/registries", "application/json",
			strings.NewReader(`{"id":"reg","eventNotificationConfigs":[{"pubsubTopicName":"projects/p/topics/events"}]}`))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	testutil.WaitFor(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + psAddr + "/v1/projects/p/topics/events")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"projects/p/topics/events"`) {
			return fmt.Errorf("GET the registry's topic: %d %s", resp.StatusCode, body)
		}
		return nil
	})
}

// runManager runs the manager with args until the test ends, and fails the
// test unless it then exits 0 within 15 s.
func runManager(t *testing.T, env config.Env, args ...string) *testutil.SyncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	out := &testutil.SyncBuffer{}
	go func() { done <- run(ctx, args, out, env) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit %d\n%s", code, out.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("manager did not stop after cancel")
		}
	})
	return out
}
