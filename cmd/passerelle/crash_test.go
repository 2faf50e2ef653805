package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// TestCrashSafety runs the real binary, acknowledges admin writes, QoS 1
// telemetry and a state, kills the process with SIGKILL and starts it again
// on the same data folder: everything acknowledged is there, and the
// device connects again.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	adminAddr, mqttAddr, natsAddr, hubAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	start := func() *exec.Cmd {
		t.Helper()
		cmd, _ := startServeBinary(t, bin, "--data-dir", dataDir, "--admin-addr", adminAddr,
			"--mqtt-addr", "", "--mqtt-plain-addr", mqttAddr, "--nats-listen", natsAddr, "--hub-addr", hubAddr)
		return cmd
	}

	cmd := start()
	ctx := context.Background()
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := iot.NewDeviceManagerClient(ctx, option.WithEndpoint(adminAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(strings.TrimSpace(string(token))))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key, pubPEM := es256Key(t)
	reg, err := c.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{
		Parent: "projects/p1/locations/us-central1",
		DeviceRegistry: &iotpb.DeviceRegistry{Id: "crash-reg",
			EventNotificationConfigs: []*iotpb.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/crash-events"}},
			StateNotificationConfig:  &iotpb.StateNotificationConfig{PubsubTopicName: "projects/p1/topics/crash-states"},
		},
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
	if _, err := c.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{Name: dev.GetName(), BinaryData: []byte("v2")}); err != nil {
		t.Fatal(err)
	}

	connect := func() paho.Client {
		t.Helper()
		now := time.Now()
		password, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), Audience: jwt.ClaimStrings{"p1"},
		}).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		mc := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).
			SetClientID(reg.GetName() + "/devices/dev-1").SetUsername("unused").SetPassword(password).
			SetProtocolVersion(4).SetAutoReconnect(false))
		if tok := mc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("MQTT connect: %v", tok.Error())
		}
		return mc
	}
	mc := connect()
	const events = 50
	for i := range events {
		if tok := mc.Publish("/devices/dev-1/events", 1, false, []byte{byte(i)}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("event %d: %v", i, tok.Error())
		}
	}
	if tok := mc.Publish("/devices/dev-1/state", 1, false, []byte("state-1")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("state: %v", tok.Error())
	}

	// Everything above was acknowledged. Crash.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	mc.Disconnect(0)

	start()
	d, err := c.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()})
	if err != nil {
		t.Fatalf("GetDevice after the crash: %v", err)
	}
	if d.GetConfig().GetVersion() != 2 || string(d.GetConfig().GetBinaryData()) != "v2" {
		t.Errorf("config after the crash: %v", d.GetConfig())
	}
	states, err := c.ListDeviceStates(ctx, &iotpb.ListDeviceStatesRequest{Name: dev.GetName()})
	if err != nil || len(states.GetDeviceStates()) != 1 || string(states.GetDeviceStates()[0].GetBinaryData()) != "state-1" {
		t.Errorf("states after the crash: %v %v", states.GetDeviceStates(), err)
	}

	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "PASSERELLE_PUBSUB")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter("iot.pubsub.p1.crash-events"))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects["iot.pubsub.p1.crash-events"]; got != events {
		t.Errorf("events in JetStream after the crash: %d, want %d", got, events)
	}

	// The device comes back.
	mc = connect()
	if tok := mc.Publish("/devices/dev-1/events", 1, false, []byte("again")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("event after the restart: %v", tok.Error())
	}
	mc.Disconnect(100)
}
