package hub_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"google.golang.org/api/cloudiot/v1"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

const parent = "projects/p1/locations/us-central1"

// TestGatewayDemo runs Cloud IoT Core's gateway demo (hub_demo.py)
// through the hub's gRPC API.
func TestGatewayDemo(t *testing.T) {
	e := newEnv(t, envConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	regs := e.admin.Projects.Locations.Registries

	// Creating registry.
	reg, err := regs.Create(parent, &cloudiot.DeviceRegistry{
		Id:                       "test-registry",
		EventNotificationConfigs: []*cloudiot.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/events"}},
	}).Do()
	if err != nil {
		t.Fatalf("create registry: %v", err)
	}

	// Creating gateway: the hub makes and keeps the key.
	gwResp, err := e.hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{
		Parent: reg.Name, GatewayId: "test-device-RS256", Algorithm: hubv1.Algorithm_ALGORITHM_RS256,
	})
	if err != nil {
		t.Fatalf("CreateGateway: %v", err)
	}
	gw := gwResp.GetGateway().GetName()
	if gw != reg.Name+"/devices/test-device-RS256" || gwResp.GetGateway().GetKeySource() != hubv1.KeySource_KEY_SOURCE_KEY_STORE {
		t.Fatalf("gateway %v", gwResp.GetGateway())
	}
	d, err := regs.Devices.Get(gw).Do()
	if err != nil || d.GatewayConfig.GatewayType != "GATEWAY" || len(d.Credentials) != 1 {
		t.Fatalf("gateway in the manager: %+v, %v", d, err)
	}

	// Attach with on-demand create and bind.
	const devID = "test-device-noauthbind"
	att, err := e.hub.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := att.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: devID, CreateIfMissing: true, BindIfNeeded: true}); err != nil {
		t.Fatal(err)
	}
	first, err := att.Recv()
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if a := first.GetAttached(); a == nil || !a.GetCreated() || !a.GetBound() || a.GetDevice() != reg.Name+"/devices/"+devID {
		t.Fatalf("first response %v", first)
	}
	devName := reg.Name + "/devices/" + devID

	// Listening for config: the current one, then a change.
	cfgCtx, cfgCancel := context.WithCancel(ctx)
	cfgs, err := e.hub.SubscribeConfig(cfgCtx, &hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: devID})
	if err != nil {
		t.Fatal(err)
	}
	c1, err := cfgs.Recv()
	if err != nil {
		t.Fatalf("first config: %v", err)
	}
	if c1.GetVersion() != 1 || c1.GetReceiveTime() == nil {
		t.Fatalf("first config %v", c1)
	}
	if _, err := regs.Devices.ModifyCloudToDeviceConfig(devName, &cloudiot.ModifyCloudToDeviceConfigRequest{
		BinaryData: base64.StdEncoding.EncodeToString([]byte("device-config")),
	}).Do(); err != nil {
		t.Fatalf("modify config: %v", err)
	}
	c2, err := cfgs.Recv()
	if err != nil {
		t.Fatalf("second config: %v", err)
	}
	if string(c2.GetData()) != "device-config" || c2.GetVersion() != 2 {
		t.Fatalf("second config %v", c2)
	}
	cfgCancel()

	// Publishing 15 state messages, each acknowledged.
	states, err := e.hub.PublishState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 15
	for i := 1; i <= n; i++ {
		payload := fmt.Sprintf("%s/%s-%s-payload-%d", "test-registry", "test-device-RS256", devID, i)
		req := &hubv1.PublishStateRequest{Data: []byte(payload)}
		if i == 1 {
			req.Gateway, req.DeviceId = gw, devID
		}
		if err := states.Send(req); err != nil {
			t.Fatal(err)
		}
		ack, err := states.Recv()
		if err != nil {
			t.Fatalf("state %d: %v", i, err)
		}
		if ack.GetIndex() != int64(i-1) {
			t.Fatalf("ack %v for state %d", ack, i)
		}
		// The bridge takes one state per second per device: move its
		// clock rather than sleep.
		e.clockSkew.Add(int64(1100 * time.Millisecond))
	}
	if err := states.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := states.Recv(); err == nil {
		t.Fatal("state stream: want its end")
	}
	list, err := regs.Devices.States.List(devName).NumStates(n).Do()
	if err != nil {
		t.Fatal(err)
	}
	// Cloud IoT Core keeps a device's 10 newest states.
	if len(list.DeviceStates) != 10 {
		t.Fatalf("%d states, want the 10 newest", len(list.DeviceStates))
	}
	latest, _ := base64.StdEncoding.DecodeString(list.DeviceStates[0].BinaryData)
	if want := fmt.Sprintf("test-registry/test-device-RS256-%s-payload-%d", devID, n); string(latest) != want {
		t.Fatalf("latest state %q, want %q", latest, want)
	}

	// The pool view while attached.
	pv, err := e.hub.GetPool(ctx, &hubv1.GetPoolRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pv.GetConnections()) != 1 || pv.GetConnections()[0].GetState() != hubv1.ConnectionState_CONNECTION_STATE_CONNECTED ||
		len(pv.GetConnections()[0].GetAttachedDevices()) != 1 {
		t.Fatalf("pool %v", pv)
	}

	// Detaching: the client half-closes its Attach stream.
	if err := att.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := att.Recv(); err == nil {
		t.Fatal("attach stream: want its end")
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		v, ok := e.pool.Connection(gw)
		if ok && len(v.Devices) != 0 {
			return fmt.Errorf("devices still held: %+v", v.Devices)
		}
		return nil
	})

	// Clean up.
	if _, err := regs.UnbindDeviceFromGateway(reg.Name, &cloudiot.UnbindDeviceFromGatewayRequest{DeviceId: devID, GatewayId: "test-device-RS256"}).Do(); err != nil {
		t.Fatalf("unbind: %v", err)
	}
	if _, err := regs.Devices.Delete(devName).Do(); err != nil {
		t.Fatalf("delete device: %v", err)
	}
	if _, err := regs.Devices.Delete(gw).Do(); err != nil {
		t.Fatalf("delete gateway: %v", err)
	}
	if _, err := regs.Delete(reg.Name).Do(); err != nil {
		t.Fatalf("delete registry: %v", err)
	}
}
