package hub_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/grpc/codes"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
	"github.com/passerelle-iot/passerelle/services/hub"
)

// eventsInStream counts the messages JetStream holds on the events
// topic of setup's registry.
func eventsInStream(t *testing.T, ctx context.Context, e *env) uint64 {
	t.Helper()
	js := testutil.Must(jetstream.New(e.bus.Conn()))
	stream := testutil.Must(js.Stream(ctx, e.bus.StreamName()))
	info := testutil.Must(stream.Info(ctx, jetstream.WithSubjectFilter("iot.pubsub.p1.events")))
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// TestPublishEventsOrder: events of many devices on one stream are each
// acknowledged, in the order sent, and stored in JetStream; each device is
// attached once for the stream and detached after it.
func TestPublishEventsOrder(t *testing.T) {
	// The bridge's rate limit (100 messages per second on a connection)
	// lifted: over it, the bridge closes the connection.
	e := newEnv(t, envConfig{bridgeOpts: []bridge.Option{bridge.WithMessageRate(0, 0)}})
	regName, gw := setup(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const devices, perDevice = 40, 25
	regs := e.admin.Projects.Locations.Registries
	for i := range devices {
		id := fmt.Sprintf("dev-%d", i)
		testutil.Must(regs.Devices.Create(regName, &cloudiot.Device{Id: id}).Do())
		testutil.Must(regs.BindDeviceToGateway(regName, &cloudiot.BindDeviceToGatewayRequest{DeviceId: id, GatewayId: "gw-1"}).Do())
	}
	before := eventsInStream(t, ctx, e)

	s := testutil.Must(e.hub.PublishEvents(ctx))
	const total = devices*perDevice + 1
	sendErr := make(chan error, 1)
	go func() {
		defer close(sendErr)
		for i := range total {
			req := &hubv1.PublishEventsRequest{DeviceId: fmt.Sprintf("dev-%d", i%devices), Data: []byte(fmt.Sprint(i))}
			if i == 0 {
				req.Gateway = gw
			}
			if i == total-1 {
				req.DeviceId = "" // the gateway's own event
			}
			if i%7 == 0 {
				req.SubFolder = "sub/folder"
			}
			if err := s.Send(req); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- s.CloseSend()
	}()
	for i := range int64(total) {
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if resp.GetIndex() != i || resp.GetRefused() != nil {
			t.Fatalf("answer %d: %v", i, resp)
		}
		if i == total/2 {
			// Half-way: every device the stream used is attached once.
			v, _ := e.pool.Connection(gw)
			for _, d := range v.Devices {
				if d.Holders != 1 {
					t.Errorf("device %s held %d times, want once", d.ID, d.Holders)
				}
			}
		}
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v", err)
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	if got := eventsInStream(t, ctx, e) - before; got != total {
		t.Fatalf("%d events in JetStream, want %d", got, total)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if v, ok := e.pool.Connection(gw); ok && len(v.Devices) > 0 {
			return fmt.Errorf("%d devices still attached", len(v.Devices))
		}
		return nil
	})
}

// TestPublishEventsRefused: bad events are answered with their reason and
// the stream goes on; another gateway ends it with STREAM_TARGET_CHANGED.
func TestPublishEventsRefused(t *testing.T) {
	e := newEnv(t, envConfig{})
	regName, gw := setup(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := testutil.Must(e.hub.PublishEvents(ctx))
	cases := []struct {
		req    *hubv1.PublishEventsRequest
		reason hubv1.ErrorReason // UNSPECIFIED: acknowledged
		code   codes.Code
	}{
		{&hubv1.PublishEventsRequest{Gateway: gw, DeviceId: "bound", Data: []byte("ok")}, 0, codes.OK},
		{&hubv1.PublishEventsRequest{DeviceId: "1bad", Data: []byte("x")}, hubv1.ErrorReason_INVALID_FIELD, codes.InvalidArgument},
		{&hubv1.PublishEventsRequest{DeviceId: "bound", SubFolder: "a/#", Data: []byte("x")}, hubv1.ErrorReason_INVALID_FIELD, codes.InvalidArgument},
		{&hubv1.PublishEventsRequest{DeviceId: "bound", Data: make([]byte, hub.MaxEventBytes+1)}, hubv1.ErrorReason_PAYLOAD_TOO_LARGE, codes.InvalidArgument},
		{&hubv1.PublishEventsRequest{DeviceId: "unbound", Data: []byte("x")}, hubv1.ErrorReason_DEVICE_NOT_BOUND, codes.PermissionDenied},
		{&hubv1.PublishEventsRequest{DeviceId: "nobody", Data: []byte("x")}, hubv1.ErrorReason_DEVICE_NOT_FOUND, codes.FailedPrecondition},
		{&hubv1.PublishEventsRequest{DeviceId: "bound", Data: []byte("still ok")}, 0, codes.OK},
	}
	for i, c := range cases {
		if err := s.Send(c.req); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for i, c := range cases {
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		r := resp.GetRefused()
		if resp.GetIndex() != int64(i) || r.GetReason() != c.reason || codes.Code(r.GetCode()) != c.code {
			t.Errorf("answer %d: %v, want reason %v code %v", i, resp, c.reason, c.code)
		}
		if c.reason != 0 && r.GetMessage() == "" {
			t.Errorf("answer %d: a refusal without a message", i)
		}
	}
	// Another gateway ends the stream.
	if err := s.Send(&hubv1.PublishEventsRequest{Gateway: regName + "/devices/other", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Recv()
	wantReason(t, "another gateway", err, codes.InvalidArgument, hubv1.ErrorReason_STREAM_TARGET_CHANGED)

	// A gateway the hub has no key for ends the stream at once.
	s = testutil.Must(e.hub.PublishEvents(ctx))
	if err := s.Send(&hubv1.PublishEventsRequest{Gateway: regName + "/devices/other", DeviceId: "bound"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	wantReason(t, "gateway without key", err, codes.FailedPrecondition, hubv1.ErrorReason_GATEWAY_KEY_MISSING)
	s = testutil.Must(e.hub.PublishEvents(ctx))
	if err := s.Send(&hubv1.PublishEventsRequest{DeviceId: "bound"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	wantReason(t, "no gateway", err, codes.InvalidArgument, hubv1.ErrorReason_INVALID_FIELD)
}

// TestPublishEventsCancel: a caller that cancels its stream while events
// are in flight ends it; the hub lets the devices go, and the gateway
// serves the next stream.
func TestPublishEventsCancel(t *testing.T) {
	e := newEnv(t, envConfig{})
	_, gw := setup(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sctx, scancel := context.WithCancel(ctx)
	s := testutil.Must(e.hub.PublishEvents(sctx))
	if err := s.Send(&hubv1.PublishEventsRequest{Gateway: gw, DeviceId: "bound", Data: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if err := s.Send(&hubv1.PublishEventsRequest{DeviceId: "bound", Data: []byte(strings.Repeat("x", 1000))}); err != nil {
			break
		}
	}
	scancel()
	for {
		if _, err := s.Recv(); err != nil {
			wantReason(t, "cancelled", err, codes.Canceled, hubv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
			break
		}
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if v, ok := e.pool.Connection(gw); ok && len(v.Devices) > 0 {
			return fmt.Errorf("%d devices still attached", len(v.Devices))
		}
		return nil
	})
	s = testutil.Must(e.hub.PublishEvents(ctx))
	if err := s.Send(&hubv1.PublishEventsRequest{Gateway: gw, DeviceId: "bound", Data: []byte("again")}); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Recv(); err != nil || resp.GetRefused() != nil {
		t.Fatalf("after the cancel: %v, %v", resp, err)
	}
	_ = s.CloseSend()
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}
