package hub_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
	"github.com/passerelle-iot/passerelle/services/hub"
)

// setup makes a registry, a gateway made by the hub, and devices: "bound"
// (bound to the gateway) and "unbound".
func setup(t *testing.T, e *env) (regName, gw string) {
	t.Helper()
	return setupAs(t, e, context.Background())
}

// setupAs is setup with the hub called with ctx (and its credentials).
func setupAs(t *testing.T, e *env, ctx context.Context) (regName, gw string) {
	t.Helper()
	regs := e.admin.Projects.Locations.Registries
	reg := testutil.Must(regs.Create(parent, &cloudiot.DeviceRegistry{Id: "reg1", EventNotificationConfigs: []*cloudiot.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/events"}}}).Do())
	resp, err := e.hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{Parent: reg.Name, GatewayId: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"bound", "unbound"} {
		testutil.Must(regs.Devices.Create(reg.Name, &cloudiot.Device{Id: id}).Do())
	}
	testutil.Must(regs.BindDeviceToGateway(reg.Name, &cloudiot.BindDeviceToGatewayRequest{DeviceId: "bound", GatewayId: "gw-1"}).Do())
	return reg.Name, resp.GetGateway().GetName()
}

func wantCode(t *testing.T, what string, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), contains) {
		t.Errorf("%s: got %v, want %v containing %q", what, err, code, contains)
	}
}

// attachErr opens an Attach stream and returns how it ended.
func attachErr(ctx context.Context, c hubv1.HubClient, req *hubv1.AttachRequest) error {
	s, err := c.Attach(ctx)
	if err != nil {
		return err
	}
	// A stream the server already ended (a refused token, say) fails Send
	// with io.EOF; its status comes with Recv, as gRPC documents.
	if err := s.Send(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = s.Recv()
	return err
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, envConfig{})
	regName, gw := setup(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	wantCode(t, "malformed gateway", attachErr(ctx, e.hub, &hubv1.AttachRequest{Gateway: "devices/gw-1", DeviceId: "bound"}), codes.InvalidArgument, "gateway")
	wantCode(t, "malformed device id", attachErr(ctx, e.hub, &hubv1.AttachRequest{Gateway: gw, DeviceId: "1bad"}), codes.InvalidArgument, "device_id")
	wantCode(t, "gateway without key", attachErr(ctx, e.hub, &hubv1.AttachRequest{Gateway: regName + "/devices/other", DeviceId: "bound"}), codes.FailedPrecondition, "no key")
	wantCode(t, "unbound device", attachErr(ctx, e.hub, &hubv1.AttachRequest{Gateway: gw, DeviceId: "unbound"}), codes.PermissionDenied, "not bound")
	wantCode(t, "missing device", attachErr(ctx, e.hub, &hubv1.AttachRequest{Gateway: gw, DeviceId: "nobody"}), codes.FailedPrecondition, "does not exist")
	_, err := e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", Data: make([]byte, hub.MaxEventBytes+1)})
	wantCode(t, "event too large", err, codes.InvalidArgument, "limit")
	// Sub folders by the bridge's own topic rules (pkg/devicetopic): the
	// error names the field and the rule.
	for sub, rule := range map[string]string{
		"a/#":                    "'+', '#' or NUL",
		"../../x":                `"." or ".."`,
		"a/./b":                  `"." or ".."`,
		"..":                     `"." or ".."`,
		"a//b":                   "empty level",
		"/a":                     "empty level",
		"a\x00":                  "'+', '#' or NUL",
		strings.Repeat("a", 257): "at most 256 bytes",
	} {
		_, err = e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", SubFolder: sub, Data: []byte("x")})
		wantCode(t, fmt.Sprintf("subfolder %.20q", sub), err, codes.InvalidArgument, "'sub_folder' is invalid: ")
		wantCode(t, fmt.Sprintf("subfolder %.20q", sub), err, codes.InvalidArgument, rule)
	}
	_, err = e.hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{Parent: "projects/p1", GatewayId: "gw-2"})
	wantCode(t, "bad parent", err, codes.InvalidArgument, "parent")
	_, err = e.hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{Parent: regName, GatewayId: "gw-1"})
	wantCode(t, "gateway twice", err, codes.AlreadyExists, "")

	// The others carry on: a good publish after all that.
	if _, err := e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", SubFolder: "a/b", Data: []byte("x")}); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}

	// A gateway the bridge refuses because it was deleted from its
	// registry before the hub first connected it: the hub asks the admin
	// API, and answers NOT_FOUND.
	testutil.Must(e.admin.Projects.Locations.Registries.UnbindDeviceFromGateway(regName, &cloudiot.UnbindDeviceFromGatewayRequest{DeviceId: "bound", GatewayId: "gw-1"}).Do())
	resp, err := e.hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{Parent: regName, GatewayId: "gw-gone", Algorithm: hubv1.Algorithm_ALGORITHM_ES256})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Must(e.admin.Projects.Locations.Registries.Devices.Delete(resp.GetGateway().GetName()).Do())
	_, err = e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: resp.GetGateway().GetName(), Data: []byte("x")})
	wantCode(t, "deleted gateway", err, codes.NotFound, "deleted from its registry")
	_, err = e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: resp.GetGateway().GetName(), Data: []byte("x")})
	wantCode(t, "deleted gateway, again", err, codes.NotFound, "deleted from its registry")
}

// TestSlowCommandSubscriber: a subscriber that does not read is ended with
// RESOURCE_EXHAUSTED; another one carries on.
func TestSlowCommandSubscriber(t *testing.T) {
	e := newEnv(t, envConfig{
		bridgeOpts: []bridge.Option{bridge.WithByteRate(0), bridge.WithMessageRate(0, 0)},
		poolOpts:   []hub.PoolOption{hub.WithCommandBuffer(2)},
	})
	regName, gw := setup(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A client whose window stays small, so an unread stream pushes back.
	conn := testutil.Must(grpc.NewClient(e.hubAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10)))
	defer conn.Close()
	slow := testutil.Must(hubv1.NewHubClient(conn).SubscribeCommands(ctx, &hubv1.SubscribeCommandsRequest{Gateway: gw, DeviceId: "bound"}))
	fast := testutil.Must(e.hub.SubscribeCommands(ctx, &hubv1.SubscribeCommandsRequest{Gateway: gw, DeviceId: "bound"}))
	testutil.WaitFor(t, 10*time.Second, func() error {
		v, _ := e.pool.Connection(gw)
		if v.Holders != 2 {
			return fmt.Errorf("holders %d", v.Holders)
		}
		return nil
	})
	// Both subscriptions are in place once the second has its SUBACK;
	// commands sent before may fail (FAILED_PRECONDITION), so retry.
	payload := base64.StdEncoding.EncodeToString(make([]byte, 32<<10))
	var got sync.WaitGroup
	got.Add(1)
	fastN := 0
	go func() {
		defer got.Done()
		for fastN < 20 {
			if _, err := fast.Recv(); err != nil {
				t.Errorf("fast subscriber: %v", err)
				return
			}
			fastN++
		}
	}()
	for i := 0; i < 20; i++ {
		testutil.WaitFor(t, 10*time.Second, func() error {
			_, err := e.admin.Projects.Locations.Registries.Devices.SendCommandToDevice(regName+"/devices/bound",
				&cloudiot.SendCommandToDeviceRequest{BinaryData: payload}).Do()
			return err
		})
	}
	got.Wait()
	for {
		_, err := slow.Recv()
		if err != nil {
			wantCode(t, "slow subscriber", err, codes.ResourceExhausted, "did not keep up")
			break
		}
	}
}

// TestNoLeaks: streams that end release their devices, the idle
// connection closes, and the goroutines go.
func TestNoLeaks(t *testing.T) {
	e := newEnv(t, envConfig{poolOpts: []hub.PoolOption{hub.WithIdleTimeout(50 * time.Millisecond)}})
	_, gw := setup(t, e)
	ctx := context.Background()
	testutil.Must(e.hub.ListGateways(ctx, &hubv1.ListGatewaysRequest{}))
	base := baseline()

	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := e.hub.SubscribeConfig(sctx, &hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: "bound"})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := s.Recv(); err != nil {
				t.Error(err)
			}
			c, err := e.hub.SubscribeCommands(sctx, &hubv1.SubscribeCommandsRequest{Gateway: gw, DeviceId: "bound"})
			if err != nil {
				t.Error(err)
				return
			}
			_ = c // held until cancel
			if _, err := e.hub.PublishEvent(sctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", Data: []byte("x")}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if v, ok := e.pool.Connection(gw); !ok || len(v.Devices) != 1 || v.Devices[0].Holders == 0 {
		t.Fatalf("pool while streams are open: %+v", v)
	}
	cancel()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if v, ok := e.pool.Connection(gw); ok {
			return fmt.Errorf("connection still open: %+v", v)
		}
		return nil
	})
	checkNoLeaks(t, e, base)
}

// TestEventWithoutNotificationConfig: the bridge closes the gateway's
// connection for an event of a registry without an event notification
// config (compat-spec 6); the call fails with a message saying so instead
// of resending until its deadline.
func TestEventWithoutNotificationConfig(t *testing.T) {
	e := newEnv(t, envConfig{})
	regs := e.admin.Projects.Locations.Registries
	reg := testutil.Must(regs.Create(parent, &cloudiot.DeviceRegistry{Id: "reg-silent"}).Do())
	resp, err := e.hub.CreateGateway(context.Background(), &hubv1.CreateGatewayRequest{Parent: reg.Name, GatewayId: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Must(regs.Devices.Create(reg.Name, &cloudiot.Device{Id: "dev-1"}).Do())
	testutil.Must(regs.BindDeviceToGateway(reg.Name, &cloudiot.BindDeviceToGatewayRequest{DeviceId: "dev-1", GatewayId: "gw-1"}).Do())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: resp.GetGateway().GetName(), DeviceId: "dev-1", Data: []byte("x")})
	wantCode(t, "event of a registry without notification config", err, codes.FailedPrecondition, "event notification config")
}

// TestGarbageOnAStream: an Attach stream whose later message is not a
// token renewal, and a PublishState stream that switches device, are ended
// with INVALID_ARGUMENT; an Attach of the same device on another stream
// carries on.
func TestGarbageOnAStream(t *testing.T) {
	e := newEnv(t, envConfig{})
	_, gw := setup(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	keep := testutil.Must(e.hub.Attach(ctx))
	if err := keep.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: "bound"}); err != nil {
		t.Fatal(err)
	}
	if r, err := keep.Recv(); err != nil || r.GetAttached() == nil {
		t.Fatalf("first Attach: %v %v", r, err)
	}

	bad := testutil.Must(e.hub.Attach(ctx))
	if err := bad.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: "bound"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := bad.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: "unbound", CreateIfMissing: true}); err != nil {
		t.Fatal(err)
	}
	var err error
	for err == nil {
		_, err = bad.Recv()
	}
	wantCode(t, "a second Attach request naming another device", err, codes.InvalidArgument, "")

	states := testutil.Must(e.hub.PublishState(ctx))
	if err := states.Send(&hubv1.PublishStateRequest{Gateway: gw, DeviceId: "bound", Data: []byte("s1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := states.Recv(); err != nil {
		t.Fatalf("first state: %v", err)
	}
	if err := states.Send(&hubv1.PublishStateRequest{Gateway: gw, DeviceId: "unbound", Data: []byte("s2")}); err != nil {
		t.Fatal(err)
	}
	for err = nil; err == nil; {
		_, err = states.Recv()
	}
	wantCode(t, "a PublishState stream switching device", err, codes.InvalidArgument, "")

	// The first stream still holds the device, and the gateway still works.
	v, _ := e.pool.Connection(gw)
	if len(v.Devices) != 1 || v.Devices[0].ID != "bound" {
		t.Fatalf("pool after the bad streams: %+v", v)
	}
	if _, err := e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", Data: []byte("x")}); err != nil {
		t.Fatalf("PublishEvent after the bad streams: %v", err)
	}
}
