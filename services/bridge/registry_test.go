package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
	"github.com/passerelle-iot/passerelle/services/manager"
)

// startManager serves the manager on the env's store and bus and returns
// Google's gRPC client for it. It is the one place the bridge's tests run
// the manager (as the hub's tests do): registry changes must travel from
// the admin API to live connections.
func (e *env) startManager() *iot.DeviceManagerClient {
	e.t.Helper()
	lis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	m := manager.New(testutil.Logger(e.t), e.st, manager.WithInsecureNoAuth(), manager.WithBus(e.bus))
	testutil.Serve(e.t, func(ctx context.Context) error { return m.Serve(ctx, lis) })
	c := testutil.Must(iot.NewDeviceManagerClient(context.Background(),
		option.WithEndpoint(lis.Addr().String()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))))
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

const regName = "projects/" + project + "/locations/us-central1/registries/reg1"

// TestRegistryNotificationConfigsApplyAtOnce adds event and state
// notification configs through the manager while a device is connected,
// with a registry cache that never expires by itself: the next messages go
// to the new topics, by announcement.
func TestRegistryNotificationConfigsApplyAtOnce(t *testing.T) {
	keys(t)
	e := newEnv(t, bridge.WithRegistryCacheTTL(time.Hour))
	admin := e.startManager()
	ctx := context.Background()
	e.createDevice("dev-1", ecKey, nil)
	c := e.connect("dev-1", ecKey)
	// The bridge reads the registry (and caches it) for this event.
	wait(t, c.Publish("/devices/dev-1/events/alerts", 1, false, []byte("before")))
	if m, err := e.lastNotification(eventsTopic); err != nil || string(m.Data) != "before" {
		t.Fatalf("first event: %v %v", m, err)
	}

	// New event and state notification configs.
	const alertsTopic, state2Topic = "projects/p1/topics/alerts", "projects/p1/topics/state2"
	if _, err := admin.UpdateDeviceRegistry(ctx, &iotpb.UpdateDeviceRegistryRequest{
		DeviceRegistry: &iotpb.DeviceRegistry{
			Name: regName,
			EventNotificationConfigs: []*iotpb.EventNotificationConfig{
				{PubsubTopicName: alertsTopic, SubfolderMatches: "alerts"},
				{PubsubTopicName: eventsTopic},
			},
			StateNotificationConfig: &iotpb.StateNotificationConfig{PubsubTopicName: state2Topic},
		},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"event_notification_configs", "state_notification_config"}},
	}); err != nil {
		t.Fatal(err)
	}
	// The announcement travels apart from the device's messages: publish
	// until an event lands on the new topic.
	n := 0
	testutil.WaitFor(t, 5*time.Second, func() error {
		n++
		wait(t, c.Publish("/devices/dev-1/events/alerts", 1, false, fmt.Appendf(nil, "after-%d", n)))
		m, err := e.lastNotification(alertsTopic)
		if err != nil {
			return fmt.Errorf("no event on the new topic: %v", err)
		}
		if want := fmt.Sprintf("after-%d", n); string(m.Data) != want {
			return fmt.Errorf("last event on the new topic %q, want %q", m.Data, want)
		}
		return nil
	})
	// The bridge holds the new registry by now: the state goes to the new
	// state topic.
	wait(t, c.Publish("/devices/dev-1/state", 1, false, []byte("s1")))
	testutil.WaitFor(t, 5*time.Second, func() error {
		m, err := e.lastNotification(state2Topic)
		if err != nil || string(m.Data) != "s1" {
			return fmt.Errorf("state notification on the new topic: %v %v", m, err)
		}
		return nil
	})
}

// TestRegistryMQTTDisabledClosesConnections disables MQTT on a registry
// through the manager while a device is connected, with a registry cache
// that never expires by itself: the connection closes at once, with
// lastErrorStatus FAILED_PRECONDITION, new ones are refused, and enabling
// MQTT again lets the device back.
func TestRegistryMQTTDisabledClosesConnections(t *testing.T) {
	keys(t)
	e := newEnv(t, bridge.WithRegistryCacheTTL(time.Hour))
	admin := e.startManager()
	ctx := context.Background()
	e.createDevice("dev-1", ecKey, nil)
	c := e.connect("dev-1", ecKey)
	wait(t, c.Publish("/devices/dev-1/events", 1, false, []byte("x")))

	setMQTT := func(state iotpb.MqttState) {
		t.Helper()
		if _, err := admin.UpdateDeviceRegistry(ctx, &iotpb.UpdateDeviceRegistryRequest{
			DeviceRegistry: &iotpb.DeviceRegistry{Name: regName, MqttConfig: &iotpb.MqttConfig{MqttEnabledState: state}},
			UpdateMask:     &fieldmaskpb.FieldMask{Paths: []string{"mqtt_config"}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	setMQTT(iotpb.MqttState_MQTT_DISABLED)
	lostWithin(t, c, 10*time.Second)
	testutil.WaitFor(t, 5*time.Second, func() error {
		d := e.device("dev-1")
		if s := d.LastErrorStatus; s == nil || s.Code != 9 || !strings.Contains(s.Message, "MQTT is disabled") {
			return fmt.Errorf("lastErrorStatus %+v, want FAILED_PRECONDITION saying MQTT is disabled", s)
		}
		return nil
	})
	if _, err := e.dial(clientID("dev-1"), ecKey.jwt(t)); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("connect with MQTT disabled: %v, want CONNACK 5", err)
	}

	// Enabled again: the device connects.
	setMQTT(iotpb.MqttState_MQTT_ENABLED)
	testutil.WaitFor(t, 5*time.Second, func() error {
		c, err := e.dial(clientID("dev-1"), ecKey.jwt(t))
		if err == nil {
			c.Disconnect(0)
		}
		return err
	})
}

// TestResyncReappliesRegistries: when announcements may have been lost,
// the bridge forgets its cached registries and applies them again to live
// connections (here, a registry whose MQTT was disabled without any
// announcement reaching the bridge).
func TestResyncReappliesRegistries(t *testing.T) {
	keys(t)
	e := newEnv(t, bridge.WithRegistryCacheTTL(time.Hour))
	e.createDevice("dev-1", ecKey, nil)
	c := e.connect("dev-1", ecKey)
	wait(t, c.Publish("/devices/dev-1/events", 1, false, []byte("x")))
	testutil.Must(e.st.UpdateRegistry(context.Background(), regKey, func(r *store.Registry) error {
		r.MQTTEnabledState = 2
		return nil
	}))
	bridge.Resync(e.br)
	lostWithin(t, c, 10*time.Second)
	if _, err := e.dial(clientID("dev-1"), ecKey.jwt(t)); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("connect after the Resync: %v, want CONNACK 5", err)
	}
}
