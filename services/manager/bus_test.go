package manager_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/manager"
)

// TestBusWiring checks what the manager tells the bridges: config changes,
// device changes and deletions are announced, and commands reach the
// handler a bridge registered for the device, or fail with
// FAILED_PRECONDITION when none did.
func TestBusWiring(t *testing.T) {
	b := openBus(t)
	heard := hear(t, b)
	expect := func(kind bus.AnnouncementKind, numID uint64, version int64) bus.Announcement {
		t.Helper()
		select {
		case a := <-heard:
			if a.Kind != kind || a.NumID != numID || (version != 0 && (a.Config == nil || a.Config.Version != version)) {
				t.Fatalf("heard %+v, want %s for %d (version %d)", a, kind, numID, version)
			}
			return a
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s announcement for %d", kind, numID)
		}
		return bus.Announcement{}
	}

	env := newAPIEnv(t, filepath.Join(t.TempDir(), "passerelle.db"), manager.WithBus(b))
	ctx := context.Background()
	reg := env.createRegistry(t, "bus-reg")
	dev, err := env.grpc.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg, Device: &iotpb.Device{Id: "dev-1"}})
	if err != nil {
		t.Fatal(err)
	}

	// A config change by id is announced under the numId.
	if _, err := env.grpc.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{
		Name: reg + "/devices/dev-1", BinaryData: []byte("on"),
	}); err != nil {
		t.Fatal(err)
	}
	if a := expect(bus.ConfigChanged, dev.GetNumId(), 2); string(a.Config.Data) != "on" || a.DeviceID != "dev-1" {
		t.Errorf("announced config %q for %q, want \"on\" for dev-1", a.Config.Data, a.DeviceID)
	}
	// A large config is left for the bridge to read from the store.
	big, err := env.grpc.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg, Device: &iotpb.Device{Id: "dev-big"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.grpc.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{
		Name: big.GetName(), BinaryData: make([]byte, 5<<10),
	}); err != nil {
		t.Fatal(err)
	}
	if a := expect(bus.ConfigChanged, big.GetNumId(), 0); a.Config != nil {
		t.Errorf("a 5 KB config was announced with its data (%d bytes)", len(a.Config.Data))
	}

	// Commands: refused while no bridge holds the device, delivered once one does.
	_, err = env.grpc.SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{Name: dev.GetName(), BinaryData: []byte("reboot")})
	wantCode(t, err, codes.FailedPrecondition, "not connected")
	got := make(chan bus.Command, 1)
	stopCmd, err := b.HandleCommands(dev.GetNumId(), func(_ context.Context, cmd bus.Command) error {
		got <- cmd
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.rest.SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{
		Name: dev.GetName(), BinaryData: []byte("reboot"), Subfolder: "power/now",
	}); err != nil {
		t.Fatalf("SendCommandToDevice with a bridge holding the device: %v", err)
	}
	if cmd := <-got; string(cmd.Data) != "reboot" || cmd.SubFolder != "power/now" {
		t.Fatalf("bridge got %+v", cmd)
	}
	stopCmd()

	// Blocking is announced; so is a deletion.
	if _, err := env.grpc.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{
		Device:     &iotpb.Device{Name: dev.GetName(), Blocked: true},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"blocked"}},
	}); err != nil {
		t.Fatal(err)
	}
	expect(bus.DeviceChanged, dev.GetNumId(), 0)
	if err := env.grpc.DeleteDevice(ctx, &iotpb.DeleteDeviceRequest{Name: dev.GetName()}); err != nil {
		t.Fatal(err)
	}
	expect(bus.DeviceDeleted, dev.GetNumId(), 0)
}

// TestCacheAcrossInstances runs two managers on one database and one bus,
// the second with a cache that never expires by itself: a device blocked
// through the first is seen blocked through the second as soon as the
// announcement arrives.
func TestCacheAcrossInstances(t *testing.T) {
	b := openBus(t)
	db := filepath.Join(t.TempDir(), "passerelle.db")
	first := newAPIEnv(t, db, manager.WithBus(b))
	second := newAPIEnv(t, db, manager.WithBus(b), manager.WithDeviceCacheTTL(time.Hour))
	ctx := context.Background()

	reg := first.createRegistry(t, "cache-reg")
	dev, err := first.grpc.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg, Device: &iotpb.Device{Id: "dev-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := second.grpc.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()}); err != nil || d.GetBlocked() {
		t.Fatalf("GetDevice through the second manager: %v %v", d, err)
	}
	if _, err := first.grpc.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{
		Device:     &iotpb.Device{Name: dev.GetName(), Blocked: true},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"blocked"}},
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, err := second.grpc.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: reg + "/devices/dev-1"})
		if err != nil {
			t.Fatal(err)
		}
		if d.GetBlocked() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second manager still serves the device unblocked 5 s after the change")
		}
		time.Sleep(10 * time.Millisecond) // polling for the announcement
	}
	// Its own writes it sees at once.
	if _, err := second.grpc.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{
		Name: dev.GetName(), BinaryData: []byte("x"),
	}); err != nil {
		t.Fatal(err)
	}
	if d, err := second.grpc.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()}); err != nil || d.GetConfig().GetVersion() != 2 {
		t.Fatalf("GetDevice after its own config change: version %d, %v", d.GetConfig().GetVersion(), err)
	}
}

// openBus opens an embedded bus, closed when the test ends.
func openBus(t *testing.T) *bus.Bus {
	t.Helper()
	b := testutil.Must(bus.Open(context.Background(), testutil.Logger(t), bus.Options{DataDir: filepath.Join(t.TempDir(), "nats")}))
	t.Cleanup(func() { b.Close() })
	return b
}

// hear subscribes to b's announcements until the test ends; they arrive
// on the channel returned.
func hear(t *testing.T, b *bus.Bus) <-chan bus.Announcement {
	t.Helper()
	heard := make(chan bus.Announcement, 16)
	t.Cleanup(testutil.Must(b.SubscribeAnnouncements(func(a bus.Announcement) { heard <- a })))
	return heard
}
