package bridge_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

func jsonB64(t testing.TB, v any) string {
	return base64.RawURLEncoding.EncodeToString(testutil.Must(json.Marshal(v)))
}

type gwError struct {
	ErrorType   string `json:"error_type"`
	Description string `json:"description"`
	DeviceID    string `json:"device_id"`
	Info        struct {
		MessageType string `json:"message_type"`
		Topic       string `json:"topic"`
		PacketID    int    `json:"packet_id"`
	} `json:"mqtt_message_info"`
}

func nextError(t *testing.T, r *received) gwError {
	t.Helper()
	var ge gwError
	m := r.next(t)
	if err := json.Unmarshal(m.Payload(), &ge); err != nil {
		t.Fatalf("error message %q: %v", m.Payload(), err)
	}
	return ge
}

// TestGatewayDemo follows Cloud IoT's gateway sample: attach a bound
// device, subscribe to its config and to the gateway's errors, publish
// state and telemetry for it, detach.
func TestGatewayDemo(t *testing.T) {
	keys(t)
	e := newEnv(t)
	ctx := context.Background()
	gw := e.createDevice("gw-1", rsaKey, func(d *store.Device) {
		d.GatewayType = store.GatewayTypeGateway
		d.GatewayAuthMethod = 1 // ASSOCIATION_ONLY
	})
	e.createDevice("dev-bound", ecKey, func(d *store.Device) { d.Config.Data = []byte("cfg-1") })
	e.createDevice("dev-unbound", ecKey, nil)
	if err := e.st.BindDevice(ctx, store.DeviceRef{Registry: regKey, ID: "gw-1"}, store.DeviceRef{Registry: regKey, ID: "dev-bound"}); err != nil {
		t.Fatal(err)
	}
	c := e.connect("gw-1", rsaKey)
	errs := newReceived()
	wait(t, c.Subscribe("/devices/gw-1/errors", 0, errs.handler))

	// A message for a device that is not attached.
	c.Publish("/devices/dev-bound/state", 1, false, []byte("early"))
	if ge := nextError(t, errs); ge.ErrorType != "GATEWAY_DEVICE_NOT_FOUND" || ge.DeviceID != "dev-bound" {
		t.Fatalf("error %+v", ge)
	}

	wait(t, c.Publish("/devices/dev-bound/attach", 1, false, []byte(`{"authorization": ""}`)))
	cfgs := newReceived()
	wait(t, c.Subscribe("/devices/dev-bound/config", 1, cfgs.handler))
	if m := cfgs.next(t); string(m.Payload()) != "cfg-1" {
		t.Fatalf("config %q", m.Payload())
	}
	wait(t, c.Publish("/devices/dev-bound/state", 1, false, []byte("on")))
	if d := e.device("dev-bound"); d.State == nil || string(d.State.Data) != "on" {
		t.Fatalf("state %+v", d.State)
	}
	wait(t, c.Publish("/devices/dev-bound/events", 1, false, []byte("t=1")))
	m, err := e.lastNotification(eventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	if a := bus.AttributesFromHeader(m.Header); a.GatewayID != "gw-1" || a.DeviceID != "dev-bound" {
		t.Fatalf("attributes %+v", a)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		if d := e.device("dev-bound"); d.LastAccessedGatewayID != "gw-1" || d.LastAccessedGatewayTime.IsZero() {
			return errorf("lastAccessedGateway %q %v", d.LastAccessedGatewayID, d.LastAccessedGatewayTime)
		}
		return nil
	})

	// Refused attach: no PUBACK, an error message, the gateway stays up.
	tok := c.Publish("/devices/dev-unbound/attach", 1, false, []byte(`{}`))
	if ge := nextError(t, errs); ge.ErrorType != "GATEWAY_ATTACHMENT_ERROR" || ge.DeviceID != "dev-unbound" ||
		ge.Info.MessageType != "PUBLISH" || ge.Info.Topic != "/devices/dev-unbound/attach" || ge.Info.PacketID == 0 {
		t.Fatalf("error %+v", ge)
	}
	if tok.WaitTimeout(300 * time.Millisecond) {
		t.Fatal("a refused attach was PUBACKed")
	}
	c.Publish("/devices/nobody/attach", 1, false, []byte(`{}`))
	if ge := nextError(t, errs); ge.ErrorType != "GATEWAY_ATTACHMENT_ERROR" || ge.DeviceID != "nobody" {
		t.Fatalf("error %+v", ge)
	}

	// Commands for the attached device reach the gateway.
	cmds := newReceived()
	wait(t, c.Subscribe("/devices/dev-bound/commands/#", 0, cmds.handler))
	bound := e.device("dev-bound")
	if err := e.bus.SendCommand(ctx, bound.NumID, bus.Command{Data: []byte("go")}); err != nil {
		t.Fatal(err)
	}
	if m := cmds.next(t); string(m.Payload()) != "go" || m.Topic() != "/devices/dev-bound/commands" {
		t.Fatalf("command %q on %s", m.Payload(), m.Topic())
	}

	wait(t, c.Publish("/devices/dev-bound/detach", 1, false, []byte(`{}`)))
	c.Publish("/devices/dev-bound/events", 1, false, []byte("after detach"))
	if ge := nextError(t, errs); ge.ErrorType != "GATEWAY_DEVICE_NOT_FOUND" {
		t.Fatalf("error %+v", ge)
	}
	if !c.IsConnectionOpen() {
		t.Fatal("the gateway was disconnected")
	}
	_ = gw
}

func TestGatewayDeviceToken(t *testing.T) {
	keys(t)
	e := newEnv(t)
	e.createDevice("gw-1", rsaKey, func(d *store.Device) {
		d.GatewayType = store.GatewayTypeGateway
		d.GatewayAuthMethod = 2 // DEVICE_AUTH_TOKEN_ONLY
	})
	e.createDevice("dev-1", ecKey, nil)
	c := e.connect("gw-1", rsaKey)
	errs := newReceived()
	wait(t, c.Subscribe("/devices/gw-1/errors", 0, errs.handler))
	c.Publish("/devices/dev-1/attach", 1, false, []byte(`{"authorization": "`+otherKey.jwt(t)+`"}`))
	if ge := nextError(t, errs); ge.ErrorType != "GATEWAY_ATTACHMENT_ERROR" {
		t.Fatalf("error %+v", ge)
	}
	wait(t, c.Publish("/devices/dev-1/attach", 1, false, []byte(`{"authorization": "`+ecKey.jwt(t)+`"}`)))
	wait(t, c.Publish("/devices/dev-1/events", 1, false, []byte("x")))
}
