package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/pkg/testutil/natstest"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

const errTakenOver = "another active connection with the same device id"

func mkGateway(d *store.Device) {
	d.GatewayType = store.GatewayTypeGateway
	d.GatewayAuthMethod = 1 // ASSOCIATION_ONLY
}

func (ce *clusterEnv) bind(gw, dev string) {
	ce.t.Helper()
	if err := ce.st.BindDevice(context.Background(), store.DeviceRef{Registry: regKey, ID: gw}, store.DeviceRef{Registry: regKey, ID: dev}); err != nil {
		ce.t.Fatal(err)
	}
}

func attach(t *testing.T, gw *client, dev string) {
	t.Helper()
	wait(t, gw.Publish("/devices/"+dev+"/attach", 1, false, []byte(`{"authorization": ""}`)))
}

// A device connected to bridge A that connects again through bridge B
// loses its A connection, as a second connection on one bridge does; the
// same for a gateway.
func TestClusterOneConnectionPerClient(t *testing.T) {
	keys(t)
	ce := newClusterEnv(t)
	a, b := ce.addBridge("a", ""), ce.addBridge("b", "")
	dev := a.createDevice("dev-1", ecKey, nil)
	gw := a.createDevice("gw-1", rsaKey, mkGateway)

	onA := a.connect("dev-1", ecKey)
	a.holds(dev)
	onB := b.connect("dev-1", ecKey)
	lostWithinLogged(t, "dev-1 on bridge a after connecting through b", onA)
	stillUp(t, onB, "dev-1")
	b.holds(dev)
	a.waitLastError("dev-1", 6, errTakenOver)

	// And back: the connection on b goes.
	again := a.connect("dev-1", ecKey)
	lostWithinLogged(t, "dev-1 on bridge b after connecting through a again", onB)
	stillUp(t, again, "dev-1")

	gwA := a.connect("gw-1", rsaKey)
	a.holds(gw)
	gwB := b.connect("gw-1", rsaKey)
	lostWithinLogged(t, "gw-1 on bridge a after connecting through b", gwA)
	b.holds(gw)
	if !gwB.IsConnectionOpen() {
		t.Fatal("the newer gateway connection was closed")
	}
	a.waitLastError("gw-1", 6, errTakenOver)
}

// What one bridge allows, a cluster allows across bridges: a device held
// directly and through a gateway, or through two gateways, at once. Only
// the same client id connecting twice is a takeover.
func TestClusterHeldDirectlyAndThroughGateways(t *testing.T) {
	keys(t)
	ce := newClusterEnv(t)
	a, b := ce.addBridge("a", ""), ce.addBridge("b", "")
	a.createDevice("dev-1", ecKey, nil)
	a.createDevice("gw-1", rsaKey, mkGateway)
	a.createDevice("gw-2", rsaKey, mkGateway)
	ce.bind("gw-1", "dev-1")
	ce.bind("gw-2", "dev-1")

	direct := a.connect("dev-1", ecKey)
	gw1 := b.connect("gw-1", rsaKey)
	attach(t, gw1, "dev-1")
	gw2 := a.connect("gw-2", rsaKey)
	attach(t, gw2, "dev-1")
	settled(t, a, b)
	stillUp(t, direct, "dev-1")
	stillUp(t, gw1, "dev-1")
	stillUp(t, gw2, "dev-1")
	if a.br.Connections() != 2 || b.br.Connections() != 1 {
		t.Errorf("connections: a %d, b %d; want 2 and 1", a.br.Connections(), b.br.Connections())
	}
}

// 200 devices connecting to both bridges at once end with exactly one
// connection each.
func TestClusterConnectRace(t *testing.T) {
	keys(t)
	ce := newClusterEnv(t)
	// Every device dials from 127.0.0.1: no per-address handshake limit.
	a, b := ce.addBridge("a", "", bridge.WithMaxPendingPerAddress(0)), ce.addBridge("b", "", bridge.WithMaxPendingPerAddress(0))
	const n = 200
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "race-" + strconv.Itoa(i)
		a.createDevice(ids[i], ecKey, nil)
	}
	// Each device's two connects race; 25 devices at a time, so that the
	// handshakes fit their timeouts on a loaded machine under -race.
	onA, onB := make([]*client, n), make([]*client, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 25)
	dial := func(e *bridgeNode, id string, into **client) {
		defer wg.Done()
		c, err := e.dial(clientID(id), ecKey.jwt(t))
		if err != nil {
			t.Errorf("%s: %v", id, err)
			return
		}
		*into = c
	}
	for i, id := range ids {
		sem <- struct{}{}
		wg.Add(2)
		var pair sync.WaitGroup
		pair.Add(2)
		go func() { defer pair.Done(); dial(a, id, &onA[i]) }()
		go func() { defer pair.Done(); dial(b, id, &onB[i]) }()
		go func() { pair.Wait(); <-sem }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		for i, id := range ids {
			if onA[i].IsConnectionOpen() == onB[i].IsConnectionOpen() {
				return fmt.Errorf("%s: connected on a %v, on b %v", id, onA[i].IsConnectionOpen(), onB[i].IsConnectionOpen())
			}
		}
		if got := a.br.Connections() + b.br.Connections(); got != n {
			return fmt.Errorf("the bridges hold %d connections, want %d", got, n)
		}
		return nil
	})
	settled(t, a, b)
	up := 0
	for i := range ids {
		if onA[i].IsConnectionOpen() != onB[i].IsConnectionOpen() {
			up++
		}
	}
	if up != n {
		t.Errorf("after the claims settled, %d of %d devices have exactly one connection", up, n)
	}
	t.Logf("bridge a holds %d, bridge b %d", a.br.Connections(), b.br.Connections())
}

// Configs announced through one manager and commands sent through
// another reach devices on both bridges, directly and through gateways;
// device changes too. A command for a device no bridge holds fails with
// ErrNotConnected (the manager's FAILED_PRECONDITION).
func TestClusterRouting(t *testing.T) {
	keys(t)
	ce := newClusterEnv(t)
	a, b := ce.addBridge("a", ""), ce.addBridge("b", "")
	mgr1, mgr2 := ce.mgr, ce.openBus("manager-2")
	ctx := context.Background()
	for _, id := range []string{"dev-a", "dev-b", "proxied-a", "proxied-b", "idle"} {
		a.createDevice(id, ecKey, nil)
	}
	a.createDevice("gw-a", rsaKey, mkGateway)
	a.createDevice("gw-b", rsaKey, mkGateway)
	ce.bind("gw-a", "proxied-a")
	ce.bind("gw-b", "proxied-b")

	type target struct {
		id         string
		c          *client
		cfgs, cmds *received
	}
	subscribe := func(c *client, id string) target {
		tg := target{id: id, c: c, cfgs: newReceived(), cmds: newReceived()}
		wait(t, c.Subscribe("/devices/"+id+"/config", 1, tg.cfgs.handler))
		if m := tg.cfgs.next(t); string(m.Payload()) != "" {
			t.Fatalf("%s: first config %q", id, m.Payload())
		}
		wait(t, c.Subscribe("/devices/"+id+"/commands/#", 1, tg.cmds.handler))
		return tg
	}
	gwA, gwB := a.connect("gw-a", rsaKey), b.connect("gw-b", rsaKey)
	gwErrs := newReceived()
	wait(t, gwB.Subscribe("/devices/gw-b/errors", 0, gwErrs.handler))
	attach(t, gwA, "proxied-a")
	attach(t, gwB, "proxied-b")
	targets := []target{
		subscribe(a.connect("dev-a", ecKey), "dev-a"),
		subscribe(b.connect("dev-b", ecKey), "dev-b"),
		subscribe(gwA, "proxied-a"),
		subscribe(gwB, "proxied-b"),
	}
	for _, tg := range targets {
		// Manager 1: a new config, written and announced as the
		// manager does.
		ref := store.DeviceRef{Registry: regKey, ID: tg.id}
		ch := testutil.Must(ce.st.ModifyConfig(ctx, ref, store.ConfigUpdate{Data: []byte("cfg-" + tg.id), Now: time.Now()}))
		if err := mgr1.Announce(ctx, bus.Announcement{Kind: bus.ConfigChanged, Project: regKey.Project, Location: regKey.Location,
			Registry: regKey.ID, DeviceID: tg.id, NumID: ch.Device.NumID,
			Config: &bus.AnnouncedConfig{Version: ch.Version, Data: ch.Data}}); err != nil {
			t.Fatal(err)
		}
		if m := tg.cfgs.next(t); string(m.Payload()) != "cfg-"+tg.id {
			t.Errorf("%s: config %q", tg.id, m.Payload())
		}
		// Manager 2: a command.
		if err := mgr2.SendCommand(ctx, ch.Device.NumID, bus.Command{Data: []byte("cmd-" + tg.id)}); err != nil {
			t.Errorf("%s: command: %v", tg.id, err)
			continue
		}
		if m := tg.cmds.next(t); string(m.Payload()) != "cmd-"+tg.id || m.Topic() != "/devices/"+tg.id+"/commands" {
			t.Errorf("%s: command %q on %s", tg.id, m.Payload(), m.Topic())
		}
	}
	idle := a.device("idle")
	if err := mgr2.SendCommand(ctx, idle.NumID, bus.Command{Data: []byte("x")}); !errors.Is(err, bus.ErrNotConnected) {
		t.Errorf("command for a device no bridge holds: %v, want ErrNotConnected", err)
	}

	// Device changes: blocking a device closes its connection on the
	// bridge that holds it, or detaches it from its gateway there.
	for _, id := range []string{"dev-b", "proxied-b"} {
		d := testutil.Must(ce.st.UpdateDevice(ctx, store.DeviceRef{Registry: regKey, ID: id}, func(d *store.Device) error {
			d.Blocked = true
			return nil
		}))
		if err := mgr1.Announce(ctx, bus.Announcement{Kind: bus.DeviceChanged, Project: regKey.Project, Location: regKey.Location,
			Registry: regKey.ID, DeviceID: id, NumID: d.NumID}); err != nil {
			t.Fatal(err)
		}
	}
	lostWithin(t, targets[1].c, 10*time.Second)
	if ge := nextError(t, gwErrs); ge.ErrorType != "GATEWAY_DETACHMENT_DEVICE_ERROR" || ge.DeviceID != "proxied-b" {
		t.Errorf("gateway error %+v, want proxied-b detached", ge)
	}
	stillUp(t, targets[0].c, "dev-a")
}

// A bridge stopped hard (its NATS connection gone before it could
// release anything) leaves records that do not delay its devices'
// reconnects elsewhere.
func TestClusterBridgeStoppedHard(t *testing.T) {
	keys(t)
	ce := newClusterEnv(t)
	a, b := ce.addBridge("a", ""), ce.addBridge("b", "")
	var devs []*store.Device
	var onA []*client
	for i := range 10 {
		id := "hard-" + strconv.Itoa(i)
		devs = append(devs, a.createDevice(id, ecKey, nil))
		onA = append(onA, a.connect(id, ecKey))
	}
	settled(t, a)
	a.bus.Conn().Close() // as a SIGKILL: nothing reaches NATS any more
	a.stop()
	for _, c := range onA {
		lostWithin(t, c, 10*time.Second)
	}
	var onB []*client
	for _, d := range devs {
		onB = append(onB, b.connect(d.ID, ecKey))
	}
	settled(t, b)
	for i, d := range devs {
		b.holds(d)
		stillUp(t, onB[i], d.ID)
	}
}

// A bridge cut from NATS keeps its connections; a device that connected
// on both sides meanwhile ends with one connection, the newer, moments
// after the bridge is back.
func TestClusterSplitHeals(t *testing.T) {
	keys(t)
	ce := newClusterEnv(t)
	proxy := natstest.NewProxy(t, ce.natsURL[len("nats://"):])
	a, b := ce.addBridge("a", proxy.URL()), ce.addBridge("b", "")
	dev := a.createDevice("dev-1", ecKey, nil)
	a.createDevice("dev-2", ecKey, nil)
	onA := a.connect("dev-1", ecKey)
	other := a.connect("dev-2", ecKey)
	a.holds(dev)

	proxy.Cut()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if a.br.Ready(context.Background()) == nil {
			return errors.New("bridge a still ready while cut from NATS")
		}
		return nil
	})
	onB := b.connect("dev-1", ecKey)
	settled(t, b)
	b.holds(dev)
	// a keeps what it holds (a SUBSCRIBE round trip: a QoS 1 event
	// would wait for the stream).
	wait(t, other.Subscribe("/devices/dev-2/config", 0, func(paho.Client, paho.Message) {}))
	if !onA.IsConnectionOpen() {
		t.Fatal("bridge a closed dev-1 while it could not know of the other connection")
	}

	healed := time.Now()
	proxy.Restore()
	testutil.WaitFor(t, 20*time.Second, func() error {
		if !a.bus.Conn().IsConnected() {
			return errors.New("bridge a not reconnected to NATS")
		}
		return nil
	})
	back := time.Now()
	lostWithin(t, onA, 20*time.Second)
	t.Logf("dev-1's older connection closed %s after bridge a reconnected to NATS (%s after the path to NATS was restored)",
		time.Since(back).Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
	stillUp(t, onB, "dev-1")
	testutil.WaitFor(t, 10*time.Second, func() error { return a.br.Ready(context.Background()) })
	stillUp(t, other, "dev-2")
}

// On a three-server NATS cluster, with the stream and the presence bucket
// replicated three times and each bridge on another server, a takeover
// across bridges works as on one server, and QoS 1 events are
// acknowledged once replicated.
func TestClusterOnThreeNATSServers(t *testing.T) {
	keys(t)
	servers := natstest.Cluster(t, 3)
	ce := newClusterEnvOn(t, natstest.URLs(servers...), 3)
	a := ce.addBridge("a", natstest.URLs(servers[0], servers[1]))
	b := ce.addBridge("b", natstest.URLs(servers[2], servers[1]))
	dev := a.createDevice("dev-1", ecKey, nil)
	onA := a.connect("dev-1", ecKey)
	stillUp(t, onA, "dev-1")
	a.holds(dev)
	onB := b.connect("dev-1", ecKey)
	lostWithinLogged(t, "dev-1 on bridge a (NATS server 0) after connecting through b (server 2)", onA)
	stillUp(t, onB, "dev-1")
	b.holds(dev)
	a.waitLastError("dev-1", 6, errTakenOver)
}

// Readiness: not before Serve, ready while serving, not while the bus is
// down.
func TestReady(t *testing.T) {
	keys(t)
	br := bridge.New(testutil.Logger(t), nil, nil)
	if br.Ready(context.Background()) == nil {
		t.Error("ready before Serve")
	}
	ce := newClusterEnv(t)
	proxy := natstest.NewProxy(t, ce.natsURL[len("nats://"):])
	a := ce.addBridge("a", proxy.URL())
	if err := a.br.Ready(context.Background()); err != nil {
		t.Fatalf("not ready while serving: %v", err)
	}
	proxy.Cut()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if a.br.Ready(context.Background()) == nil {
			return errors.New("ready while cut from NATS")
		}
		return nil
	})
	t.Logf("not ready while cut: %v", a.br.Ready(context.Background()))
	proxy.Restore()
	testutil.WaitFor(t, 10*time.Second, func() error { return a.br.Ready(context.Background()) })
	a.stop()
	if a.br.Ready(context.Background()) == nil {
		t.Error("ready after Serve returned")
	}
}
