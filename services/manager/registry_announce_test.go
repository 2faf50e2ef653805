package manager_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/services/manager"
)

// TestRegistryChangesAnnounced: updating a registry announces
// RegistryChanged and deleting it RegistryDeleted, naming the registry and
// no device; a refused update announces nothing.
func TestRegistryChangesAnnounced(t *testing.T) {
	b := openBus(t)
	heard := hear(t, b)
	env := newAPIEnv(t, filepath.Join(t.TempDir(), "passerelle.db"), manager.WithBus(b))
	ctx := context.Background()
	reg := env.createRegistry(t, "ann-reg")

	expect := func(kind bus.AnnouncementKind) {
		t.Helper()
		select {
		case a := <-heard:
			want := bus.Announcement{Kind: kind, Project: "p1", Location: "us-central1", Registry: "ann-reg"}
			if a.Kind != want.Kind || a.Project != want.Project || a.Location != want.Location || a.Registry != want.Registry ||
				a.NumID != 0 || a.DeviceID != "" || a.RegistryName() != reg {
				t.Fatalf("heard %+v, want %+v", a, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s announcement", kind)
		}
	}

	// Through gRPC and REST alike.
	for _, c := range []*iot.DeviceManagerClient{env.grpc, env.rest} {
		if _, err := c.UpdateDeviceRegistry(ctx, &iotpb.UpdateDeviceRegistryRequest{
			DeviceRegistry: &iotpb.DeviceRegistry{Name: reg, MqttConfig: &iotpb.MqttConfig{MqttEnabledState: iotpb.MqttState_MQTT_DISABLED}},
			UpdateMask:     &fieldmaskpb.FieldMask{Paths: []string{"mqtt_config"}},
		}); err != nil {
			t.Fatal(err)
		}
		expect(bus.RegistryChanged)
	}

	// A refused update changes nothing and announces nothing.
	if _, err := env.grpc.UpdateDeviceRegistry(ctx, &iotpb.UpdateDeviceRegistryRequest{
		DeviceRegistry: &iotpb.DeviceRegistry{Name: reg},
		UpdateMask:     &fieldmaskpb.FieldMask{Paths: []string{"id"}},
	}); err == nil {
		t.Fatal("an update of the id was accepted")
	}

	if err := env.grpc.DeleteDeviceRegistry(ctx, &iotpb.DeleteDeviceRegistryRequest{Name: reg}); err != nil {
		t.Fatal(err)
	}
	expect(bus.RegistryDeleted) // not a RegistryChanged left over from the refused update
}
