package bridge_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/mqttwire"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// The tests below park connections within milliseconds of silence
// (bridge.WithParkAfter), then check that a parked connection still does
// everything a connection does: it is resumed by its device's next
// packet, by a delivery's PUBACK, by a takeover, by the end of its
// keep-alive and by the bridge's shutdown.

const parkAfter = 50 * time.Millisecond

// parkedWithin waits until the bridge's parkers hold n connections.
func parkedWithin(t *testing.T, br *bridge.Bridge, n int) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if got := br.Parked(); got != n {
			return fmt.Errorf("%d connections parked, want %d", got, n)
		}
		return nil
	})
}

func TestParkedConnectionServesItsDevice(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections are parked on Linux only")
	}
	keys(t)
	e := newEnv(t, bridge.WithParkAfter(parkAfter))
	dev := e.createDevice("dev-1", ecKey, nil)
	c := e.connect("dev-1", ecKey)
	cfgs := newReceived()
	wait(t, c.Subscribe("/devices/dev-1/config", 1, cfgs.handler))
	cfgs.next(t) // the current (empty) config
	parkedWithin(t, e.br, 1)

	// A QoS 1 event from a parked connection: resumed, acknowledged once
	// stored.
	for i := range 3 {
		wait(t, c.Publish("/devices/dev-1/events", 1, false, fmt.Appendf(nil, "event %d", i)))
		parkedWithin(t, e.br, 1) // parked again once silent
	}
	m, err := e.lastNotification(eventsTopic)
	if err != nil || string(m.Data) != "event 2" {
		t.Fatalf("last event %v, %v", m, err)
	}

	// A config sent to a parked connection, and its PUBACK read.
	ctx := context.Background()
	testutil.Must(e.st.ModifyConfig(ctx, store.DeviceRef{Registry: regKey, ID: "dev-1"}, store.ConfigUpdate{Data: []byte("v2"), Now: time.Now()}))
	if err := e.bus.Announce(ctx, bus.Announcement{Kind: bus.ConfigChanged, NumID: dev.NumID}); err != nil {
		t.Fatal(err)
	}
	if m := cfgs.next(t); string(m.Payload()) != "v2" {
		t.Fatalf("config %q, want v2", m.Payload())
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		if d := e.device("dev-1"); d.LastConfigAckTime.IsZero() {
			return errors.New("config PUBACK not recorded")
		}
		return nil
	})
	parkedWithin(t, e.br, 1)

	// Taken over while parked: the first connection is closed, the
	// second serves the device.
	second := e.connect("dev-1", ecKey)
	lostWithin(t, c, 10*time.Second)
	wait(t, second.Publish("/devices/dev-1/events", 1, false, []byte("from the second")))
	parkedWithin(t, e.br, 1)
	if got := e.br.Connections(); got != 1 {
		t.Fatalf("%d connections, want 1", got)
	}
}

// TestParkedKeepAliveExpires: a device silent past one and a half times
// its keep-alive is closed, parked or not; one that sends a packet in
// two halves, slower than parkAfter, is not.
func TestParkedKeepAliveExpires(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections are parked on Linux only")
	}
	keys(t)
	e := newEnv(t, bridge.WithParkAfter(parkAfter))
	e.createDevice("silent", ecKey, nil)
	e.createDevice("slow", ecKey, nil)
	dial := func(id string) net.Conn {
		nc := testutil.Must(tls.Dial("tcp", e.addr, e.tls))
		pw := ecKey.jwt(t)
		pkt := connectPacket{level: 4, flags: 0xC2, clientID: clientID(id), user: ptr("unused"), password: &pw, keepAlive: 1}.encode()
		testutil.Must(nc.Write(pkt))
		ack := make([]byte, 4)
		testutil.Must(io.ReadFull(nc, ack))
		if ack[3] != 0 {
			t.Fatalf("CONNACK % x", ack)
		}
		t.Cleanup(func() { _ = nc.Close() })
		return nc
	}
	silent := dial("silent")
	slow := dial("slow")
	parkedWithin(t, e.br, 2)

	// Half a PINGREQ, the rest after parkAfter: one PINGRESP.
	testutil.Must(slow.Write([]byte{byte(mqttwire.Pingreq) << 4}))
	time.Sleep(3 * parkAfter)
	testutil.Must(slow.Write([]byte{0}))
	resp := make([]byte, 2)
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	testutil.Must(io.ReadFull(slow, resp))
	if resp[0] != byte(mqttwire.Pingresp)<<4 {
		t.Fatalf("answer % x, want a PINGRESP", resp)
	}

	// Keep-alive 1 s: closed within 1.5 s and the parker's sweep.
	start := time.Now()
	_ = silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a connection past its keep-alive", n)
	}
	t.Logf("silent device closed %s after the last check", time.Since(start).Round(time.Millisecond))
	testutil.WaitFor(t, 5*time.Second, func() error {
		if got := e.br.Connections(); got != 0 {
			return fmt.Errorf("%d connections", got)
		}
		if got := e.br.Parked(); got != 0 {
			return fmt.Errorf("%d parked", got)
		}
		return nil
	})
}

// TestStreamingConnectionParks: a plain connection whose device streams
// events (its reader then waits with a buffer, sparing a system call a
// burst) stores every event in order, is still parked once silent, and
// is resumed by its next packet.
func TestStreamingConnectionParks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections are parked on Linux only")
	}
	keys(t)
	// Without the per-device rate limits of compat-spec section 6.
	e := newEnv(t, bridge.WithParkAfter(parkAfter), bridge.WithMessageRate(0, 0), bridge.WithByteRate(0))
	e.createDevice("dev-1", ecKey, nil)
	c := e.connectPlain("dev-1", ecKey)
	parkedWithin(t, e.br, 1)

	// One PUBLISH at a time, each after the last one's PUBACK: every one
	// is a burst of its own, the next within hotGap; then a window of
	// them at once.
	const n = 300
	for i := range 100 {
		wait(t, c.Publish("/devices/dev-1/events", 1, false, fmt.Appendf(nil, "event %d", i)))
	}
	toks := make([]paho.Token, 0, n-100)
	for i := 100; i < n; i++ {
		toks = append(toks, c.Publish("/devices/dev-1/events", 1, false, fmt.Appendf(nil, "event %d", i)))
	}
	for _, tok := range toks {
		wait(t, tok)
	}
	got := e.storedEvents(t, n)
	for i, m := range got {
		if want := fmt.Sprintf("event %d", i); string(m) != want {
			t.Fatalf("stored event %d is %q, want %q", i, m, want)
		}
	}
	parkedWithin(t, e.br, 1)
	wait(t, c.Publish("/devices/dev-1/events", 1, false, []byte("after")))
	if m, err := e.lastNotification(eventsTopic); err != nil || string(m.Data) != "after" {
		t.Fatalf("last event %v, %v", m, err)
	}
	parkedWithin(t, e.br, 1)
}
