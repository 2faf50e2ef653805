package bridge_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

func TestDirectDevice(t *testing.T) {
	keys(t)
	e := newEnv(t, bridge.WithConfigResendInterval(200*time.Millisecond))
	ctx := context.Background()
	dev := e.createDevice("dev-rsa", rsaKey, nil)
	c := e.connect("dev-rsa", rsaKey)

	// Telemetry at QoS 1 (PUBACK after the stream has it) and QoS 0.
	wait(t, c.Publish("/devices/dev-rsa/events/temp/room1", 1, false, []byte("21.5")))
	m, err := e.lastNotification(eventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	a := bus.AttributesFromHeader(m.Header)
	want := bus.Attributes{DeviceID: "dev-rsa", DeviceNumID: fmt.Sprint(dev.NumID), DeviceRegistryID: "reg1",
		DeviceRegistryLocation: "us-central1", ProjectID: project, SubFolder: "temp/room1"}
	if a != want || string(m.Data) != "21.5" {
		t.Fatalf("event %q %+v, want %+v", m.Data, a, want)
	}
	wait(t, c.Publish("/devices/dev-rsa/events", 0, false, []byte("qos0")))
	testutil.WaitFor(t, 5*time.Second, func() error {
		m, err := e.lastNotification(eventsTopic)
		if err != nil || string(m.Data) != "qos0" {
			return fmt.Errorf("last event %v, %v", m, err)
		}
		return nil
	})

	// State: stored and notified.
	wait(t, c.Publish("/devices/dev-rsa/state", 1, false, []byte("on")))
	if d := e.device("dev-rsa"); d.State == nil || string(d.State.Data) != "on" {
		t.Fatalf("state %+v", d.State)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		m, err := e.lastNotification(stateTopic)
		if err != nil || string(m.Data) != "on" {
			return fmt.Errorf("state notification %v, %v", m, err)
		}
		return nil
	})

	// Config on subscribe, then on change; the PUBACK is recorded.
	cfgs := newReceived()
	wait(t, c.Subscribe("/devices/dev-rsa/config", 1, cfgs.handler))
	if m := cfgs.next(t); string(m.Payload()) != "" || m.Topic() != "/devices/dev-rsa/config" {
		t.Fatalf("first config %q on %s", m.Payload(), m.Topic())
	}
	testutil.Must(e.st.ModifyConfig(ctx, store.DeviceRef{Registry: regKey, ID: "dev-rsa"}, store.ConfigUpdate{Data: []byte("v2"), Now: time.Now()}))
	if err := e.bus.Announce(ctx, bus.Announcement{Kind: bus.ConfigChanged, NumID: dev.NumID}); err != nil {
		t.Fatal(err)
	}
	if m := cfgs.next(t); string(m.Payload()) != "v2" {
		t.Fatalf("second config %q", m.Payload())
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		d := e.device("dev-rsa")
		if d.LastConfigAckTime.IsZero() || d.LastConfigSendTime.IsZero() || d.LastHeartbeatTime.IsZero() || d.LastEventTime.IsZero() {
			return fmt.Errorf("server-set fields not written: %+v", d)
		}
		if string(d.Config.Data) != "v2" || d.Config.DeviceAckTime.IsZero() {
			return fmt.Errorf("config %d %q: deviceAckTime not set", d.Config.Version, d.Config.Data)
		}
		return nil
	})
	// The ack is in the config history too.
	cfgList := testutil.Must(e.st.ListConfigs(ctx, store.DeviceRef{Registry: regKey, ID: "dev-rsa"}, 1))
	if len(cfgList) != 1 || string(cfgList[0].Data) != "v2" || cfgList[0].DeviceAckTime.IsZero() {
		t.Fatalf("config history %+v: newest version not acknowledged", cfgList)
	}

	// Commands: not subscribed, then subscribed.
	if err := e.bus.SendCommand(ctx, dev.NumID, bus.Command{Data: []byte("x")}); !errors.Is(err, bus.ErrNotConnected) {
		t.Fatalf("command before subscribing: %v, want ErrNotConnected", err)
	}
	cmds := newReceived()
	wait(t, c.Subscribe("/devices/dev-rsa/commands/#", 1, cmds.handler))
	if err := e.bus.SendCommand(ctx, dev.NumID, bus.Command{Data: []byte("reboot"), SubFolder: "sys"}); err != nil {
		t.Fatal(err)
	}
	if m := cmds.next(t); string(m.Payload()) != "reboot" || m.Topic() != "/devices/dev-rsa/commands/sys" {
		t.Fatalf("command %q on %s", m.Payload(), m.Topic())
	}
	wait(t, c.Unsubscribe("/devices/dev-rsa/commands/#"))
	testutil.WaitFor(t, 5*time.Second, func() error {
		if err := e.bus.SendCommand(ctx, dev.NumID, bus.Command{Data: []byte("x")}); !errors.Is(err, bus.ErrNotConnected) {
			return fmt.Errorf("command after unsubscribing: %v", err)
		}
		return nil
	})
}

func TestES256Device(t *testing.T) {
	keys(t)
	e := newEnv(t)
	e.createDevice("dev-ec", ecKey, nil)
	c := e.connect("dev-ec", ecKey)
	wait(t, c.Publish("/devices/dev-ec/events", 1, false, []byte("hello")))
}

func TestRefusals(t *testing.T) {
	keys(t)
	e := newEnv(t)
	e.createDevice("good", ecKey, nil)
	e.createDevice("blocked", ecKey, func(d *store.Device) { d.Blocked = true })
	e.createDevice("expired-cred", ecKey, func(d *store.Device) {
		d.Credentials[0].ExpirationTime = time.Now().Add(-time.Minute)
	})
	good := e.connect("good", ecKey)
	now := time.Now()

	tests := []struct {
		name, id, password string
		want               error // paho's error for the CONNACK code
	}{
		{"alg none", clientID("good"), noneToken(t), packets.ErrorRefusedNotAuthorised},
		{"wrong audience", clientID("good"), ecKey.token(t, "other", now, now.Add(time.Hour)), packets.ErrorRefusedNotAuthorised},
		{"expired", clientID("good"), ecKey.token(t, project, now.Add(-2*time.Hour), now.Add(-time.Hour)), packets.ErrorRefusedNotAuthorised},
		{"issued in the future", clientID("good"), ecKey.token(t, project, now.Add(time.Hour), now.Add(2*time.Hour)), packets.ErrorRefusedNotAuthorised},
		{"lifetime over 24 h", clientID("good"), ecKey.token(t, project, now, now.Add(25*time.Hour)), packets.ErrorRefusedNotAuthorised},
		{"key not the device's", clientID("good"), otherKey.jwt(t), packets.ErrorRefusedNotAuthorised},
		{"expired credential", clientID("expired-cred"), ecKey.jwt(t), packets.ErrorRefusedNotAuthorised},
		{"blocked device", clientID("blocked"), ecKey.jwt(t), packets.ErrorRefusedNotAuthorised},
		{"unknown device", clientID("nobody"), ecKey.jwt(t), packets.ErrorRefusedNotAuthorised},
		{"unknown registry", "projects/p1/locations/us-central1/registries/nope/devices/good", ecKey.jwt(t), packets.ErrorRefusedNotAuthorised},
		// A client id that is not a device's name: 3.1.1's "identifier
		// rejected".
		{"bad client id", "good", ecKey.jwt(t), packets.ErrorRefusedIDRejected},
		{"numeric device id", clientID("12345"), ecKey.jwt(t), packets.ErrorRefusedIDRejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.dial(tc.id, tc.password)
			if !errors.Is(err, tc.want) {
				t.Fatalf("connect: %v, want %v", err, tc.want)
			}
		})
	}
	// The good client is unharmed.
	wait(t, good.Publish("/devices/good/events", 1, false, []byte("still here")))
	if d := e.device("good"); d.LastErrorStatus == nil {
		t.Log("no lastErrorStatus recorded yet for refused connections (batched)")
	}
}

func noneToken(t testing.TB) string {
	return "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." +
		jsonB64(t, map[string]any{"aud": project, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}) + "."
}

func TestMQTTDisabledRegistry(t *testing.T) {
	keys(t)
	e := newEnv(t, bridge.WithRegistryCacheTTL(time.Nanosecond))
	e.createDevice("dev-1", ecKey, nil)
	testutil.Must(e.st.UpdateRegistry(context.Background(), regKey, func(r *store.Registry) error {
		r.MQTTEnabledState = 2
		return nil
	}))
	if _, err := e.dial(clientID("dev-1"), ecKey.jwt(t)); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("connect: %v, want CONNACK 5", err)
	}
}

func TestEvictionBySecondConnection(t *testing.T) {
	keys(t)
	e := newEnv(t)
	e.createDevice("dev-1", ecKey, nil)
	first := e.connect("dev-1", ecKey)
	second := e.connect("dev-1", ecKey)
	lostWithin(t, first, 10*time.Second)
	wait(t, second.Publish("/devices/dev-1/events", 1, false, []byte("x")))
	testutil.WaitFor(t, 5*time.Second, func() error {
		d := e.device("dev-1")
		if d.LastErrorStatus == nil || d.LastErrorStatus.Code != 6 {
			return fmt.Errorf("lastErrorStatus %+v", d.LastErrorStatus)
		}
		return nil
	})
}

func TestDisconnectAtJWTExpiry(t *testing.T) {
	keys(t)
	e := newEnv(t, bridge.WithJWTSkew(time.Second))
	e.createDevice("dev-1", ecKey, nil)
	now := time.Now()
	c := testutil.Must(e.dial(clientID("dev-1"), ecKey.token(t, project, now, now.Add(2*time.Second))))
	lostWithin(t, c, 10*time.Second)
	testutil.WaitFor(t, 5*time.Second, func() error {
		d := e.device("dev-1")
		if d.LastErrorStatus == nil || d.LastErrorStatus.Code != 16 {
			return fmt.Errorf("lastErrorStatus %+v", d.LastErrorStatus)
		}
		return nil
	})
}

func TestMisuseClosesTheConnection(t *testing.T) {
	keys(t)
	e := newEnv(t)
	e.createDevice("dev-1", ecKey, nil)
	e.createDevice("dev-2", ecKey, nil)
	for _, tc := range []struct {
		name string
		do   func(c *client)
	}{
		{"subscribe to another device", func(c *client) {
			tok := c.Subscribe("/devices/dev-2/config", 1, nil)
			wait(t, tok)
			if got := tok.(*paho.SubscribeToken).Result()["/devices/dev-2/config"]; got != 0x80 {
				t.Errorf("SUBACK code %#x, want 0x80", got)
			}
		}},
		{"publish to another device", func(c *client) { c.Publish("/devices/dev-2/events", 0, false, []byte("x")) }},
		{"publish outside the topics", func(c *client) { c.Publish("/foo", 0, false, []byte("x")) }},
		{"attach from a non-gateway", func(c *client) { c.Publish("/devices/dev-2/attach", 1, false, []byte("{}")) }},
		{"QoS 2", func(c *client) { c.Publish("/devices/dev-1/events", 2, false, []byte("x")) }},
		{"event over 256 KB", func(c *client) { c.Publish("/devices/dev-1/events", 1, false, make([]byte, 256*1024+1)) }},
		{"state over 64 KB", func(c *client) { c.Publish("/devices/dev-1/state", 1, false, make([]byte, 64*1024+1)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.connect("dev-1", ecKey)
			tc.do(c)
			lostWithin(t, c, 10*time.Second)
		})
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// TestGarbageHarmsNoOne sends what is not MQTT, and a CONNECT that lies
// about its length, on connections of their own: each is closed, and a
// device connected meanwhile keeps publishing.
func TestGarbageHarmsNoOne(t *testing.T) {
	keys(t)
	e := newEnv(t, bridge.WithConnectTimeout(time.Second))
	e.createDevice("good", ecKey, nil)
	good := e.connect("good", ecKey)
	for _, tc := range []struct {
		name  string
		bytes []byte
	}{
		{"not MQTT", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"reserved packet type", []byte{0xF0, 0x00}},
		{"remaining length over four bytes", []byte{0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}},
		{"CONNECT shorter than it says", []byte{0x10, 0x20, 0x00, 0x04, 'M', 'Q'}},
		{"PUBLISH before CONNECT", []byte{0x30, 0x05, 0x00, 0x01, 'a', 'x', 'y'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", e.addr, e.tls)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(tc.bytes); err != nil {
				t.Fatal(err)
			}
			// The bridge closes it (a truncated CONNECT at the 1 s CONNECT
			// deadline): a read ends with an error, never with a CONNACK.
			_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
			buf := make([]byte, 64)
			n, err := conn.Read(buf)
			if err == nil && n > 0 && buf[0] == 0x20 {
				t.Fatalf("got a CONNACK for %q", tc.name)
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the connection was still open 15 s after %q", tc.name)
			}
			wait(t, good.Publish("/devices/good/events", 1, false, []byte("still here")))
		})
	}
}

func TestBlockingClosesTheConnection(t *testing.T) {
	keys(t)
	e := newEnv(t)
	dev := e.createDevice("dev-1", ecKey, nil)
	c := e.connect("dev-1", ecKey)
	testutil.Must(e.st.UpdateDevice(context.Background(), store.DeviceRef{Registry: regKey, ID: "dev-1"}, func(d *store.Device) error {
		d.Blocked = true
		return nil
	}))
	if err := e.bus.Announce(context.Background(), bus.Announcement{Kind: bus.DeviceChanged, NumID: dev.NumID}); err != nil {
		t.Fatal(err)
	}
	lostWithin(t, c, 2*time.Second)
}

func TestCredentialRemovalClosesTheConnection(t *testing.T) {
	keys(t)
	e := newEnv(t)
	dev := e.createDevice("dev-1", ecKey, func(d *store.Device) { d.Credentials = append(d.Credentials, rsaKey.cred) })
	c := e.connect("dev-1", ecKey)
	testutil.Must(e.st.UpdateDevice(context.Background(), store.DeviceRef{Registry: regKey, ID: "dev-1"}, func(d *store.Device) error {
		d.Credentials = []store.Credential{rsaKey.cred}
		return nil
	}))
	if err := e.bus.Announce(context.Background(), bus.Announcement{Kind: bus.DeviceChanged, NumID: dev.NumID}); err != nil {
		t.Fatal(err)
	}
	lostWithin(t, c, 2*time.Second)
}

func TestConnectTimeoutAndCap(t *testing.T) {
	keys(t)
	e := newEnv(t, bridge.WithConnectTimeout(300*time.Millisecond), bridge.WithMaxConnections(1))
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// The bridge holds raw (no CONNECT yet); a second connection is over
	// the cap and closed at once.
	testutil.WaitFor(t, 5*time.Second, func() error {
		extra, err := net.Dial("tcp", e.addr)
		if err != nil {
			return err
		}
		defer extra.Close()
		_ = extra.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := extra.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("connection over the cap not closed: %v", err)
		}
		return nil
	})
	// raw never sends CONNECT: it is closed after the connect timeout.
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := raw.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent connection not closed: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %s", d)
	}
	// Once it is gone, a device connects again.
	e.createDevice("dev-1", ecKey, nil)
	testutil.WaitFor(t, 5*time.Second, func() error {
		c, err := e.dial(clientID("dev-1"), ecKey.jwt(t))
		if err == nil {
			c.Disconnect(0)
		}
		return err
	})
}
