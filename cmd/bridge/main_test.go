package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/golang-jwt/jwt/v5"

	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

var noEnv = config.MapEnv(nil)

func lineCount(s string) int { return strings.Count(strings.TrimSpace(s), "\n") + 1 }

// errorLines counts the lines of the binary's own errors (the log may
// have said something before).
func errorLines(s string) int {
	return strings.Count(s, "bridge: ") - strings.Count(s, "msg=\"bridge: ")
}

func TestMissingTLSFilesIsOneClearLine(t *testing.T) {
	var out bytes.Buffer
	code := run(t.Context(), []string{"--data-dir", t.TempDir()}, &out, noEnv)
	if code != 2 || lineCount(out.String()) != 1 || !strings.Contains(out.String(), "--tls-cert") || !strings.Contains(out.String(), "--mqtt-plain-addr") {
		t.Errorf("exit %d, output %q", code, out.String())
	}
}

func TestCheckConfigOpensNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	env := config.MapEnv(map[string]string{
		"PASSERELLE_MQTT_ADDR":       "",
		"PASSERELLE_MQTT_PLAIN_ADDR": "127.0.0.1:1883",
		"PASSERELLE_DATA_DIR":        dir,
	})
	if code := run(t.Context(), []string{"--check-config"}, &out, env); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("--check-config created %s", dir)
	}
	// Flags win over the environment.
	out.Reset()
	if code := run(t.Context(), []string{"--check-config", "--mqtt-addr", "127.0.0.1:8883"}, &out, env); code != 2 {
		t.Errorf("--mqtt-addr without TLS files: exit %d, %s", code, out.String())
	}
}

// --drain and --instance-id are checked before anything opens.
func TestClusterFlagsChecked(t *testing.T) {
	base := []string{"--check-config", "--mqtt-addr", "", "--mqtt-plain-addr", "127.0.0.1:1883", "--data-dir", t.TempDir()}
	for _, tc := range []struct {
		args []string
		want string // "" = accepted
	}{
		{[]string{"--drain", "30s", "--instance-id", "bridge-a.zone1"}, ""},
		{[]string{"--drain", "-5s"}, "--drain must not be negative"},
		{[]string{"--instance-id", "bridge a"}, "--instance-id: instance id \"bridge a\""},
	} {
		var out bytes.Buffer
		code := run(t.Context(), append(append([]string{}, base...), tc.args...), &out, noEnv)
		if tc.want == "" && code != 0 || tc.want != "" && (code != 2 || !strings.Contains(out.String(), tc.want)) {
			t.Errorf("%v: exit %d, output %q; want %q", tc.args, code, out.String(), tc.want)
		}
	}
}

// The telemetry stream's limits are checked before anything opens.
func TestStreamFlagsChecked(t *testing.T) {
	base := []string{"--check-config", "--mqtt-addr", "", "--mqtt-plain-addr", "127.0.0.1:1883", "--data-dir", t.TempDir()}
	for _, tc := range []struct {
		args []string
		want string // "" = accepted
	}{
		{[]string{"--stream-max-bytes", "10GiB", "--stream-max-age", "3d", "--stream-max-msgs", "5000000", "--stream-discard", "new"}, ""},
		{[]string{"--stream-max-bytes", "10 parsecs"}, "--stream-max-bytes"},
		{[]string{"--stream-discard", "never"}, "--stream-discard"},
	} {
		var out bytes.Buffer
		code := run(t.Context(), append(append([]string{}, base...), tc.args...), &out, noEnv)
		if tc.want == "" && code != 0 || tc.want != "" && (code != 2 || !strings.Contains(out.String(), tc.want)) {
			t.Errorf("%v: exit %d, output %q; want %q", tc.args, code, out.String(), tc.want)
		}
	}
}

func TestBusyPort(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var out bytes.Buffer
	code := run(t.Context(), []string{"--mqtt-addr", "", "--mqtt-plain-addr", lis.Addr().String(),
		"--data-dir", t.TempDir()}, &out, noEnv)
	if code != 1 || !strings.Contains(out.String(), "cannot listen") || lineCount(out.String()) != 1 {
		t.Errorf("exit %d, output %q", code, out.String())
	}
}

func TestBadDatabaseURL(t *testing.T) {
	var out bytes.Buffer
	code := run(t.Context(), []string{"--mqtt-addr", "", "--mqtt-plain-addr", "127.0.0.1:0",
		"--database-url", "postgres://postgres:hunter2pw@127.0.0.1:1/nothing?connect_timeout=2"}, &out, noEnv)
	if code != 1 || !strings.Contains(out.String(), "cannot open the database") || strings.Contains(out.String(), "hunter2pw") {
		t.Errorf("exit %d, output %q", code, out.String())
	}
}

func TestUnreachableNATS(t *testing.T) {
	var out bytes.Buffer
	code := run(t.Context(), []string{"--mqtt-addr", "", "--mqtt-plain-addr", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--nats-url", "nats://" + testutil.FreeAddr(t)}, &out, noEnv)
	if code != 1 || !strings.Contains(out.String(), "NATS") || errorLines(out.String()) != 1 {
		t.Errorf("exit %d, output %q", code, out.String())
	}
}

// The binary's loop: a device made in the same SQLite file connects over
// plain MQTT with its JWT and publishes an event, PUBACKed once the
// embedded stream holds it; the bridge stops on cancel.
func TestServesPlainMQTT(t *testing.T) {
	dataDir := t.TempDir()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, slogDiscard(), filepath.Join(dataDir, "passerelle.db"))
	if err != nil {
		t.Fatal(err)
	}
	reg := store.RegistryKey{Project: "p1", Location: "us-central1", ID: "reg1"}
	if err := st.CreateRegistry(ctx, &store.Registry{Key: reg,
		EventNotificationConfigs: []store.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/events"}}}); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	cred := store.Credential{Format: deviceauth.FormatES256PEM, Key: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}
	if _, err := st.CreateDevice(ctx, &store.Device{Registry: reg, ID: "dev-1", Credentials: []store.Credential{cred}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	st.Close()

	addr := testutil.FreeAddr(t)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan int, 1)
	var out testutil.SyncBuffer
	go func() {
		done <- run(rctx, []string{"--mqtt-addr", "", "--mqtt-plain-addr", addr, "--data-dir", dataDir}, &out, noEnv)
	}()

	token, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"aud": "p1", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).
		SetClientID("projects/p1/locations/us-central1/registries/reg1/devices/dev-1").
		SetUsername("unused").SetPassword(token).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	var c paho.Client
	deadline := time.Now().Add(15 * time.Second)
	for {
		c = paho.NewClient(opts)
		tok := c.Connect()
		tok.WaitTimeout(10 * time.Second)
		if tok.Error() == nil && c.IsConnected() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("device never connected: %v\n%s", tok.Error(), out.String())
		}
		time.Sleep(50 * time.Millisecond) // polling for start-up
	}
	tok := c.Publish("/devices/dev-1/events", 1, false, []byte("hello"))
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v\n%s", tok.Error(), out.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d\n%s", code, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("bridge did not stop after cancel")
	}
	// Graceful shutdown closed the device's connection.
	if c.IsConnectionOpen() {
		waitClosed := time.Now().Add(5 * time.Second)
		for c.IsConnectionOpen() && time.Now().Before(waitClosed) {
			time.Sleep(20 * time.Millisecond) // polling for paho to notice
		}
		if c.IsConnectionOpen() {
			t.Error("the device's connection is still open after shutdown")
		}
	}
	c.Disconnect(0)
}

// --mqtt-plain-addr (like --mqtt-addr) takes several addresses, comma
// separated: the bridge answers MQTT on each (here CONNACK 5 for a device
// that does not exist).
func TestServesSeveralAddresses(t *testing.T) {
	addrs := []string{testutil.FreeAddr(t), testutil.FreeAddr(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var out testutil.SyncBuffer
	go func() {
		done <- run(ctx, []string{"--mqtt-addr", "", "--mqtt-plain-addr", strings.Join(addrs, ","), "--data-dir", t.TempDir()}, &out, noEnv)
	}()
	for _, addr := range addrs {
		testutil.WaitFor(t, 15*time.Second, func() error {
			c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).
				SetClientID("projects/p1/locations/us-central1/registries/reg1/devices/nobody").
				SetUsername("unused").SetPassword("not-a-jwt").SetProtocolVersion(4).
				SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
			tok := c.Connect()
			tok.WaitTimeout(10 * time.Second)
			if err := tok.Error(); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
				return fmt.Errorf("%s: %v, want CONNACK 5\n%s", addr, err, out.String())
			}
			return nil
		})
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
