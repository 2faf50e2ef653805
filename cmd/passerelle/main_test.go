package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

var noEnv = config.MapEnv(nil)

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// TestServe starts passerelle serve on free ports in a fresh data folder,
// drives it as a new user would (admin API with the generated token, a
// device over MQTT with TLS trusting ca.pem), stops it, and starts it again
// on the same folder.
func TestServe(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	adminAddr, mqttAddr, hubAddr, opsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	args := []string{"serve", "--ops-addr", opsAddr, "--data-dir", dataDir, "--admin-addr", adminAddr, "--mqtt-addr", mqttAddr, "--pubsub-addr", "", "--hub-addr", hubAddr}

	first := startServe(t, noEnv, args...)
	out := &first.out
	ctx := t.Context()
	for _, f := range []string{"ca.pem", "bridge.pem", "admin.token", "tokens", "passerelle.db"} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			t.Errorf("data folder: %v", err)
		}
	}
	if !strings.Contains(out.String(), "admin.token") || !strings.Contains(out.String(), "ca.pem") {
		t.Errorf("the banner does not name the token and the CA:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "readiness:    http://"+opsAddr+"/readyz") {
		t.Errorf("the banner does not name the readiness address:\n%s", out.String())
	}
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + opsAddr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		if code, body := readyz(); code != http.StatusOK {
			return fmt.Errorf("/readyz %d: %s", code, body)
		}
		return nil
	})
	if _, body := readyz(); !strings.Contains(body, `"database":"ok"`) || !strings.Contains(body, `"nats":"ok"`) ||
		!strings.Contains(body, `"jetstream":"ok"`) || !strings.Contains(body, `"manager":"ok"`) {
		t.Errorf("/readyz names the checks %s", body)
	}

	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := iot.NewDeviceManagerClient(context.Background(),
		option.WithEndpoint(adminAddr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(strings.TrimSpace(string(token))))),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key, pubPEM := es256Key(t)
	reg, err := c.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{
		Parent: "projects/p1/locations/us-central1",
		DeviceRegistry: &iotpb.DeviceRegistry{Id: "serve-reg", EventNotificationConfigs: []*iotpb.EventNotificationConfig{
			{PubsubTopicName: "projects/p1/topics/serve-events"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := c.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg.GetName(), Device: &iotpb.Device{
		Id: "dev-1",
		Credentials: []*iotpb.DeviceCredential{{Credential: &iotpb.DeviceCredential_PublicKey{
			PublicKey: &iotpb.PublicKeyCredential{Format: iotpb.PublicKeyFormat_ES256_PEM, Key: pubPEM},
		}}},
	}})
	if err != nil {
		t.Fatal(err)
	}

	// The device connects over TLS trusting ca.pem, like a Cloud IoT
	// device trusting roots.pem.
	caPEM, err := os.ReadFile(filepath.Join(dataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	configs := make(chan string, 4)
	now := time.Now()
	password, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), Audience: jwt.ClaimStrings{"p1"},
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	opts := paho.NewClientOptions().
		AddBroker("tls://localhost:" + strings.Split(mqttAddr, ":")[1]).
		SetClientID(reg.GetName() + "/devices/dev-1").
		SetUsername("unused").SetPassword(password).
		SetTLSConfig(&tls.Config{RootCAs: roots, ServerName: "localhost"}).
		SetProtocolVersion(4).SetAutoReconnect(false)
	lost := make(chan struct{})
	opts.SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	mc := paho.NewClient(opts)
	if tok := mc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT connect: %v\n%s", tok.Error(), out.String())
	}
	if tok := mc.Subscribe("/devices/dev-1/config", 1, func(_ paho.Client, m paho.Message) {
		configs <- string(m.Payload())
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if got := <-configs; got != "" {
		t.Fatalf("first config = %q, want the empty version 1", got)
	}
	if _, err := c.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{Name: dev.GetName(), BinaryData: []byte("fan=on")}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-configs:
		if got != "fan=on" {
			t.Fatalf("config = %q, want fan=on", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the new config never reached the device")
	}
	if tok := mc.Publish("/devices/dev-1/events", 1, false, []byte("hello")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}

	// Blocking the device through the admin API closes its live connection.
	if _, err := c.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{
		Device:     &iotpb.Device{Name: dev.GetName(), Blocked: true},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"blocked"}},
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("the blocked device's connection was still up 5 s later")
	}

	// The hub answers with the same admin token.
	hc, err := grpc.NewClient(hubAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer(strings.TrimSpace(string(token)))))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := hubv1.NewHubClient(hc).GetPool(ctx, &hubv1.GetPoolRequest{}); err != nil {
		t.Fatalf("hub GetPool: %v", err)
	}

	first.stop(t)

	// A second start reuses the folder: same token, same CA, same data.
	ca1, _ := os.ReadFile(filepath.Join(dataDir, "ca.pem"))
	second := startServe(t, noEnv, args...)
	ca2, _ := os.ReadFile(filepath.Join(dataDir, "ca.pem"))
	if !bytes.Equal(ca1, ca2) {
		t.Error("the second start made a new CA")
	}
	if _, err := c.GetDevice(context.Background(), &iotpb.GetDeviceRequest{Name: dev.GetName()}); err != nil {
		t.Errorf("GetDevice after a restart with the first token: %v", err)
	}
	second.stop(t)
	// "stopped" comes after everything is closed: nothing is logged
	// after it, and the process exits right away.
	lines := strings.Split(strings.TrimSpace(second.out.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "passerelle stopped") {
		t.Errorf("the last line is %q, want the stop message", last)
	}
}

func TestServeBadInput(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	corrupt := t.TempDir()
	if err := os.WriteFile(filepath.Join(corrupt, "tokens"), []byte("admin root sha256:00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "Usage"},
		{"unknown command", []string{"serf"}, 2, "unknown command"},
		{"busy port", []string{"serve", "--ops-addr", "", "--http-bridge-addr", "", "--data-dir", t.TempDir(), "--admin-addr", busy.Addr().String()}, 1, "cannot listen"},
		{"busy hub port", []string{"serve", "--ops-addr", "", "--http-bridge-addr", "", "--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
			"--pubsub-addr", "", "--hub-addr", busy.Addr().String()}, 1, "--hub-addr"},
		{"data folder is a file", []string{"serve", "--ops-addr", "", "--http-bridge-addr", "", "--data-dir", notDir}, 1, "data folder"},
		{"corrupt tokens file", []string{"serve", "--ops-addr", "", "--http-bridge-addr", "", "--data-dir", corrupt}, 1, "tokens:1"},
		{"wrong database URL", []string{"serve", "--ops-addr", "", "--http-bridge-addr", "", "--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--pubsub-addr", "", "--hub-addr", "127.0.0.1:0",
			"--database-url", "postgres://postgres:hunter2pw@127.0.0.1:1/x?connect_timeout=2"}, 1, "cannot open the database"},
		{"unreachable NATS", []string{"serve", "--ops-addr", "", "--http-bridge-addr", "", "--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--pubsub-addr", "", "--hub-addr", "127.0.0.1:0",
			"--nats-url", "nats://127.0.0.1:1"}, 1, "NATS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(t.Context(), tc.args, &out, noEnv)
			if code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("exit %d, output %q; want exit %d saying %q", code, out.String(), tc.code, tc.want)
			}
			if strings.Contains(out.String(), "hunter2pw") {
				t.Fatalf("a password reached the output: %q", out.String())
			}
			if tc.code == 1 && strings.Count(strings.TrimSpace(lastLines(out.String())), "\n") != 0 {
				t.Fatalf("the error is not one line: %q", out.String())
			}
		})
	}
}

// lastLines drops log lines, keeping what run printed itself.
func lastLines(s string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if strings.HasPrefix(l, "passerelle:") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// serving is passerelle run in the background by a test.
type serving struct {
	out    testutil.SyncBuffer
	cancel context.CancelFunc
	exited chan struct{} // closed when run has returned
	code   int           // run's exit code, once exited
}

// startServe runs passerelle with args and env until stop (or the test's
// end), and waits for its banner.
// offDefaultPorts turns off the listeners whose default is one fixed port
// (the operator address 127.0.0.1:9090, the HTTP bridge's 8443, the
// Pub/Sub API's 8085) unless args set them, since tests run at once.
func offDefaultPorts(args []string) []string {
	for _, flag := range []string{"--ops-addr", "--http-bridge-addr", "--pubsub-addr"} {
		if !slices.Contains(args, flag) {
			args = append([]string{flag, ""}, args...)
		}
	}
	return args
}

func startServe(t *testing.T, env config.Env, args ...string) *serving {
	t.Helper()
	args = append(args[:1:1], offDefaultPorts(args[1:])...)
	ctx, cancel := context.WithCancel(context.Background())
	s := &serving{cancel: cancel, exited: make(chan struct{})}
	go func() {
		defer close(s.exited)
		s.code = run(ctx, args, &s.out, env)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop 20 s after its context ended")
		}
	})
	waitFor(t, &s.out, "Passerelle is ready")
	return s
}

// stop ends serve, and fails the test unless it exits 0 within 20 s.
func (s *serving) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case <-s.exited:
		if s.code != 0 {
			t.Fatalf("exit %d\n%s", s.code, s.out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop 20 s after its context ended")
	}
}

// waitFor waits until out shows what.
func waitFor(t *testing.T, out *testutil.SyncBuffer, what string) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, func() error {
		if !strings.Contains(out.String(), what) {
			return fmt.Errorf("no %q in:\n%s", what, out.String())
		}
		return nil
	})
}

func es256Key(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
