package manager_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store/storetest"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/manager"
)

// twoManagers starts two managers on one database, each with its own
// connection to one NATS server, as two instances behind a load balancer
// are. Their device caches never expire by themselves: only the bus can
// explain a fresh read.
func twoManagers(t *testing.T, databaseURL string) (first, second *apiEnv) {
	t.Helper()
	logger := testutil.Logger(t)
	nats, err := bus.Open(t.Context(), logger, bus.Options{DataDir: filepath.Join(t.TempDir(), "nats"), ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nats.Close() })
	conn := func() *bus.Bus {
		b, err := bus.Open(t.Context(), logger, bus.Options{URL: nats.Server().ClientURL(), Name: "manager"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	first = newAPIEnv(t, databaseURL, manager.WithBus(conn()), manager.WithDeviceCacheTTL(time.Hour))
	second = newAPIEnv(t, databaseURL, manager.WithBus(conn()), manager.WithDeviceCacheTTL(time.Hour))
	for _, e := range []*apiEnv{first, second} {
		testutil.WaitFor(t, 10*time.Second, func() error { return e.srv.Ready(t.Context()) })
	}
	return first, second
}

// A change made through one manager is seen through the other at once,
// with no polling: devices (GetDevice's cache included), configs,
// deletions, registries, bindings, and page tokens made by the other.
// Each change is read back right after its call returns, many times
// over, so that an invalidation that arrived late would show.
func TestChangesSeenAtOnceThroughAnotherManager(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		testChangesSeenAtOnce(t, filepath.Join(t.TempDir(), "passerelle.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		testChangesSeenAtOnce(t, storetest.PostgresURL(t))
	})
}

func testChangesSeenAtOnce(t *testing.T, databaseURL string) {
	first, second := twoManagers(t, databaseURL)
	ctx := context.Background()
	reg := first.createRegistry(t, "two-managers")
	dev, err := first.grpc.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg, Device: &iotpb.Device{Id: "dev-1"}})
	if err != nil {
		t.Fatal(err)
	}
	get := func(e *apiEnv) *iotpb.Device {
		t.Helper()
		d, err := e.grpc.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	const rounds = 40
	for i := range rounds {
		get(second) // cached by the second manager
		value := fmt.Sprintf("v%d", i)
		if _, err := first.grpc.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{
			Device:     &iotpb.Device{Name: dev.GetName(), Blocked: i%2 == 0, Metadata: map[string]string{"k": value}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"blocked", "metadata"}},
		}); err != nil {
			t.Fatal(err)
		}
		if d := get(second); d.GetMetadata()["k"] != value || d.GetBlocked() != (i%2 == 0) {
			t.Fatalf("round %d: the second manager serves metadata %q blocked %v right after the first changed them to %q %v",
				i, d.GetMetadata()["k"], d.GetBlocked(), value, i%2 == 0)
		}
	}

	for i := range 3 { // one config a second per device: a few rounds
		get(second)
		data := fmt.Sprintf("config-%d", i)
		if i > 0 {
			time.Sleep(time.Second) // Cloud IoT's one config update per second and device
		}
		c, err := first.grpc.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{Name: dev.GetName(), BinaryData: []byte(data)})
		if err != nil {
			t.Fatal(err)
		}
		if d := get(second); d.GetConfig().GetVersion() != c.GetVersion() || string(d.GetConfig().GetBinaryData()) != data {
			t.Fatalf("config round %d: the second manager serves version %d %q, the first wrote %d %q",
				i, d.GetConfig().GetVersion(), d.GetConfig().GetBinaryData(), c.GetVersion(), data)
		}
		vs, err := second.grpc.ListDeviceConfigVersions(ctx, &iotpb.ListDeviceConfigVersionsRequest{Name: dev.GetName()})
		if err != nil || vs.GetDeviceConfigs()[0].GetVersion() != c.GetVersion() {
			t.Fatalf("config versions through the second manager: %v %v", vs, err)
		}
	}

	// The registry.
	for i, level := range []iotpb.LogLevel{iotpb.LogLevel_INFO, iotpb.LogLevel_DEBUG, iotpb.LogLevel_ERROR} {
		if _, err := second.grpc.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: reg}); err != nil {
			t.Fatal(err)
		}
		if _, err := first.grpc.UpdateDeviceRegistry(ctx, &iotpb.UpdateDeviceRegistryRequest{
			DeviceRegistry: &iotpb.DeviceRegistry{Name: reg, LogLevel: level},
			UpdateMask:     &fieldmaskpb.FieldMask{Paths: []string{"log_level"}},
		}); err != nil {
			t.Fatal(err)
		}
		r, err := second.grpc.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: reg})
		if err != nil || r.GetLogLevel() != level {
			t.Fatalf("registry round %d: the second manager serves log level %v (%v), want %v", i, r.GetLogLevel(), err, level)
		}
	}

	// Bindings.
	gw, err := first.grpc.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg, Device: &iotpb.Device{
		Id: "gw-1", GatewayConfig: &iotpb.GatewayConfig{GatewayType: iotpb.GatewayType_GATEWAY, GatewayAuthMethod: iotpb.GatewayAuthMethod_ASSOCIATION_ONLY}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.grpc.BindDeviceToGateway(ctx, &iotpb.BindDeviceToGatewayRequest{Parent: reg, GatewayId: gw.GetId(), DeviceId: dev.GetId()}); err != nil {
		t.Fatal(err)
	}
	it := second.grpc.ListDevices(ctx, &iotpb.ListDevicesRequest{Parent: reg, GatewayListOptions: &iotpb.GatewayListOptions{
		Filter: &iotpb.GatewayListOptions_AssociationsGatewayId{AssociationsGatewayId: gw.GetId()}}})
	if d, err := it.Next(); err != nil || d.GetId() != dev.GetId() {
		t.Fatalf("devices bound to the gateway, through the second manager: %v %v", d, err)
	}

	// A page token made by one manager pages on through the other.
	for i := range 5 {
		if _, err := first.grpc.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg, Device: &iotpb.Device{Id: fmt.Sprintf("page-%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	firstPage, err := listPage(ctx, first, reg, "")
	if err != nil || len(firstPage.GetDevices()) != 3 || firstPage.GetNextPageToken() == "" {
		t.Fatalf("first page: %v %v", firstPage, err)
	}
	rest, err := listAll(ctx, second, reg, firstPage.GetNextPageToken())
	if err != nil {
		t.Fatalf("paging through the second manager with the first one's token: %v", err)
	}
	if n := len(firstPage.GetDevices()) + len(rest); n != 7 {
		t.Fatalf("paged %d devices across the two managers, want 7", n)
	}

	// A deletion.
	get(second)
	if _, err := first.grpc.UnbindDeviceFromGateway(ctx, &iotpb.UnbindDeviceFromGatewayRequest{Parent: reg, GatewayId: gw.GetId(), DeviceId: dev.GetId()}); err != nil {
		t.Fatal(err)
	}
	if err := first.grpc.DeleteDevice(ctx, &iotpb.DeleteDeviceRequest{Name: dev.GetName()}); err != nil {
		t.Fatal(err)
	}
	if _, err := second.grpc.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetDevice through the second manager right after the first deleted it: %v, want NOT_FOUND", err)
	}
}

// listPage lists one page of 3 devices through e's gRPC client.
func listPage(ctx context.Context, e *apiEnv, reg, token string) (*iotpb.ListDevicesResponse, error) {
	it := e.grpc.ListDevices(ctx, &iotpb.ListDevicesRequest{Parent: reg, PageSize: 3, PageToken: token})
	if _, err := it.Next(); err != nil && err != iterator.Done {
		return nil, err
	}
	resp, _ := it.Response.(*iotpb.ListDevicesResponse)
	return resp, nil
}

// listAll lists the devices from token on.
func listAll(ctx context.Context, e *apiEnv, reg, token string) ([]*iotpb.Device, error) {
	var out []*iotpb.Device
	for {
		resp, err := listPage(ctx, e, reg, token)
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetDevices()...)
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// BenchmarkGetDeviceBehindABus measures GetDevice on a manager that shares
// its database and NATS with another: with the device cache (each hit
// waits for a NATS round trip, AnnouncementSub.Sync) and without it (each
// call reads the database).
func BenchmarkGetDeviceBehindABus(b *testing.B) {
	for _, cache := range []struct {
		name string
		ttl  time.Duration
	}{{"cache", time.Second}, {"no-cache", 0}} {
		for _, db := range []string{"sqlite", "postgres"} {
			b.Run(cache.name+"/"+db, func(b *testing.B) {
				url := filepath.Join(b.TempDir(), "passerelle.db")
				if db == "postgres" {
					url = storetest.PostgresURL(b)
				}
				logger := testutil.Logger(b)
				nats, err := bus.Open(b.Context(), logger, bus.Options{DataDir: filepath.Join(b.TempDir(), "nats"), ListenAddr: "127.0.0.1:0"})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { nats.Close() })
				conn, err := bus.Open(b.Context(), logger, bus.Options{URL: nats.Server().ClientURL()})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { conn.Close() })
				env := newAPIEnv(b, url, manager.WithBus(conn), manager.WithDeviceCacheTTL(cache.ttl))
				reg := env.createRegistry(b, "bench-bus")
				dev, err := env.grpc.CreateDevice(context.Background(), &iotpb.CreateDeviceRequest{Parent: reg, Device: &iotpb.Device{Id: "dev-1"}})
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := env.grpc.GetDevice(context.Background(), &iotpb.GetDeviceRequest{Name: dev.GetName()}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
