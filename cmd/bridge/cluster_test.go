package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/store/storetest"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/pkg/testutil/natstest"
	"github.com/passerelle-iot/passerelle/services/manager"
)

const clusterParent = "projects/p1/locations/us-central1"

// clusterRig is two managers and two bridges (this binary's run) on one
// NATS server and one database, each with its own connections, as
// separate processes would be; Google's gRPC client on each manager.
type clusterRig struct {
	t        testing.TB
	natsURL  string
	database string
	managers [2]*iot.DeviceManagerClient
	bridges  [2]*bridgeProc
	key      *ecdsa.PrivateKey
	pubPEM   string
}

type bridgeProc struct {
	addr   string
	out    *testutil.SyncBuffer
	cancel context.CancelFunc
	done   chan int
	once   sync.Once
}

func newClusterRig(tb testing.TB, database string, bridgeArgs ...string) *clusterRig {
	tb.Helper()
	r := &clusterRig{t: tb, natsURL: natstest.Server(tb).ClientURL(), database: database}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	r.key, r.pubPEM = key, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	for i := range r.managers {
		r.managers[i] = r.startManager(i)
	}
	for i := range r.bridges {
		r.bridges[i] = r.startBridge(i, bridgeArgs...)
	}
	return r
}

func (r *clusterRig) startManager(i int) *iot.DeviceManagerClient {
	tb := r.t
	ctx, cancel := context.WithCancel(context.Background())
	log := testutil.Logger(tb).With("manager", i)
	st := testutil.Must(sqlstore.Open(ctx, log, r.database))
	b := testutil.Must(bus.Open(ctx, log, bus.Options{URL: r.natsURL, Name: fmt.Sprintf("manager-%d", i)}))
	lis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	srv := manager.New(log, st, manager.WithInsecureNoAuth(), manager.WithBus(b))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	c := testutil.Must(iot.NewDeviceManagerClient(context.Background(),
		option.WithEndpoint(lis.Addr().String()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))))
	tb.Cleanup(func() {
		c.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("manager %d: %v", i, err)
			}
		case <-time.After(15 * time.Second):
			tb.Errorf("manager %d did not stop", i)
		}
		_ = b.Close()
		_ = st.Close()
	})
	return c
}

func (r *clusterRig) startBridge(i int, extra ...string) *bridgeProc {
	tb := r.t
	p := &bridgeProc{addr: testutil.FreeAddr(tb), out: &testutil.SyncBuffer{}, done: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	args := append([]string{"--mqtt-addr", "", "--mqtt-plain-addr", p.addr, "--data-dir", tb.TempDir(),
		"--database-url", r.database, "--nats-url", r.natsURL, "--instance-id", fmt.Sprintf("bridge-%d", i),
		"--max-pending-per-address", "0"}, extra...)
	go func() { p.done <- run(ctx, args, p.out, config.MapEnv(nil)) }()
	tb.Cleanup(func() { p.stop(tb) })
	// Ready once it accepts.
	testutil.WaitFor(tb, 20*time.Second, func() error {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("bridge %d not listening: %v\n%s", i, err, p.out.String())
		}
		c.Close()
		return nil
	})
	return p
}

func (p *bridgeProc) stop(tb testing.TB) {
	p.once.Do(func() {
		p.cancel()
		select {
		case code := <-p.done:
			if code != 0 {
				tb.Errorf("bridge exit %d\n%s", code, p.out.String())
			}
		case <-time.After(30 * time.Second):
			tb.Errorf("bridge did not stop\n%s", p.out.String())
		}
	})
}

func (r *clusterRig) createRegistry(id string) {
	r.t.Helper()
	if _, err := r.managers[0].CreateDeviceRegistry(context.Background(), &iotpb.CreateDeviceRegistryRequest{
		Parent: clusterParent,
		DeviceRegistry: &iotpb.DeviceRegistry{Id: id,
			EventNotificationConfigs: []*iotpb.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/" + id}}},
	}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *clusterRig) createDevice(reg, id string, gateway bool) {
	r.t.Helper()
	d := &iotpb.Device{Id: id, Credentials: []*iotpb.DeviceCredential{{Credential: &iotpb.DeviceCredential_PublicKey{
		PublicKey: &iotpb.PublicKeyCredential{Format: iotpb.PublicKeyFormat_ES256_PEM, Key: r.pubPEM}}}}}
	if gateway {
		d.GatewayConfig = &iotpb.GatewayConfig{GatewayType: iotpb.GatewayType_GATEWAY, GatewayAuthMethod: iotpb.GatewayAuthMethod_ASSOCIATION_ONLY}
	}
	if _, err := r.managers[0].CreateDevice(context.Background(), &iotpb.CreateDeviceRequest{
		Parent: clusterParent + "/registries/" + reg, Device: d}); err != nil {
		r.t.Fatal(err)
	}
}

// mqttClient is a device's (or gateway's) paho client on one bridge.
type mqttClient struct {
	paho.Client
	lost chan struct{}
}

func (r *clusterRig) connect(bridge int, reg, id string) *mqttClient {
	r.t.Helper()
	token := testutil.Must(jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"aud": "p1", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(r.key))
	c := &mqttClient{lost: make(chan struct{})}
	c.Client = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + r.bridges[bridge].addr).
		SetClientID(clusterParent + "/registries/" + reg + "/devices/" + id).
		SetUsername("unused").SetPassword(token).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).
		SetConnectionLostHandler(func(paho.Client, error) { close(c.lost) }))
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		r.t.Fatalf("%s on bridge %d: %v", id, bridge, tok.Error())
	}
	r.t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func waitTok(tb testing.TB, tok paho.Token) {
	tb.Helper()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("MQTT: %v", tok.Error())
	}
}

func lostWithin(tb testing.TB, c *mqttClient, d time.Duration) {
	tb.Helper()
	select {
	case <-c.lost:
	case <-time.After(d):
		tb.Fatalf("connection still up after %s", d)
	}
}

// inbox collects a subscription's messages.
type inbox chan paho.Message

func (in inbox) handler(_ paho.Client, m paho.Message) { in <- m }

func (in inbox) next(tb testing.TB) paho.Message {
	tb.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(10 * time.Second):
		tb.Fatal("no message within 10 s")
		return nil
	}
}

func forEachDatabase(t *testing.T, fn func(t *testing.T, database string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "passerelle.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, storetest.PostgresURL(t)) })
}

// Two managers and two bridges on one NATS and one database: configs set
// through manager 1 and commands sent through manager 2 reach devices on
// both bridges, directly and through gateways; a command for a device no
// bridge holds is FAILED_PRECONDITION; a device that connects again
// through the other bridge loses its first connection (lastErrorStatus
// ALREADY_EXISTS, read through the other manager); a bridge stopped with
// --drain sheds its devices, which move to the other bridge, where
// commands follow them.
func TestClusterOfTwoManagersAndTwoBridges(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, database string) {
		r := newClusterRig(t, database, "--drain", "500ms")
		ctx := context.Background()
		r.createRegistry("reg")
		for _, id := range []string{"dev-0", "dev-1", "proxied-0", "proxied-1", "idle"} {
			r.createDevice("reg", id, false)
		}
		for i := range 2 {
			gw := fmt.Sprintf("gw-%d", i)
			r.createDevice("reg", gw, true)
			if _, err := r.managers[0].BindDeviceToGateway(ctx, &iotpb.BindDeviceToGatewayRequest{
				Parent: clusterParent + "/registries/reg", GatewayId: gw, DeviceId: fmt.Sprintf("proxied-%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		type target struct {
			id         string
			c          *mqttClient
			cfgs, cmds inbox
		}
		subscribe := func(c *mqttClient, id string) target {
			tg := target{id: id, c: c, cfgs: make(inbox, 16), cmds: make(inbox, 16)}
			waitTok(t, c.Subscribe("/devices/"+id+"/config", 1, tg.cfgs.handler))
			tg.cfgs.next(t) // the current config, after the SUBACK
			waitTok(t, c.Subscribe("/devices/"+id+"/commands/#", 1, tg.cmds.handler))
			return tg
		}
		var targets []target
		for i := range 2 {
			dev := fmt.Sprintf("dev-%d", i)
			targets = append(targets, subscribe(r.connect(i, "reg", dev), dev))
			gw := r.connect(i, "reg", fmt.Sprintf("gw-%d", i))
			proxied := fmt.Sprintf("proxied-%d", i)
			waitTok(t, gw.Publish("/devices/"+proxied+"/attach", 1, false, []byte(`{"authorization": ""}`)))
			targets = append(targets, subscribe(gw, proxied))
		}
		name := func(id string) string { return clusterParent + "/registries/reg/devices/" + id }
		for _, tg := range targets {
			cfgAt := time.Now()
			if _, err := r.managers[0].ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{
				Name: name(tg.id), BinaryData: []byte("cfg-" + tg.id)}); err != nil {
				t.Fatal(err)
			}
			if m := tg.cfgs.next(t); string(m.Payload()) != "cfg-"+tg.id {
				t.Errorf("%s: config %q", tg.id, m.Payload())
			}
			t.Logf("%s: config from manager 0 delivered after %s", tg.id, time.Since(cfgAt).Round(time.Microsecond))
			if _, err := r.managers[1].SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{
				Name: name(tg.id), BinaryData: []byte("cmd-" + tg.id), Subfolder: "sub"}); err != nil {
				t.Errorf("%s: command: %v", tg.id, err)
				continue
			}
			if m := tg.cmds.next(t); string(m.Payload()) != "cmd-"+tg.id || m.Topic() != "/devices/"+tg.id+"/commands/sub" {
				t.Errorf("%s: command %q on %s", tg.id, m.Payload(), m.Topic())
			}
		}
		_, err := r.managers[1].SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{Name: name("idle"), BinaryData: []byte("x")})
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("command for a device no bridge holds: %v, want FAILED_PRECONDITION", err)
		}

		// dev-0 connects again through bridge 1: its bridge 0 connection
		// goes, and manager 1 shows why.
		again := r.connect(1, "reg", "dev-0")
		lostWithin(t, targets[0].c, 10*time.Second)
		testutil.WaitFor(t, 15*time.Second, func() error {
			d, err := r.managers[1].GetDevice(ctx, &iotpb.GetDeviceRequest{Name: name("dev-0")})
			if err != nil {
				return err
			}
			if s := d.GetLastErrorStatus(); s.GetCode() != int32(codes.AlreadyExists) || !strings.Contains(s.GetMessage(), "another active connection") {
				return fmt.Errorf("lastErrorStatus %v", s)
			}
			return nil
		})
		moved := subscribe(again, "dev-0")

		// Bridge 1 drains: its devices and gateway go; they come back on
		// bridge 0, and manager 1's commands follow them there.
		go r.bridges[1].stop(t)
		for _, tg := range []target{moved, targets[2], targets[3]} {
			lostWithin(t, tg.c, 10*time.Second)
		}
		back := subscribe(r.connect(0, "reg", "dev-0"), "dev-0")
		if _, err := r.managers[1].SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{
			Name: name("dev-0"), BinaryData: []byte("after the drain")}); err != nil {
			t.Fatal(err)
		}
		if m := back.cmds.next(t); string(m.Payload()) != "after the drain" {
			t.Errorf("command %q", m.Payload())
		}
		if _, err := r.managers[1].SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{
			Name: name("dev-1"), BinaryData: []byte("x")}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("command for a device of the drained bridge: %v, want FAILED_PRECONDITION", err)
		}
		if out := r.bridges[1].out.String(); !strings.Contains(out, "bridge: draining") || !strings.Contains(out, "instance=bridge-1") {
			t.Errorf("bridge 1's log does not show the drain with its instance id:\n%s", out)
		}
	})
}

// BenchmarkConfigAcrossBridges: the latency of a config set through a
// manager to a device connected to another process's bridge (manager ->
// store -> NATS announcement -> bridge -> MQTT -> paho), one at a time.
func BenchmarkConfigAcrossBridges(b *testing.B) {
	r := newClusterRig(b, filepath.Join(b.TempDir(), "passerelle.db"))
	ctx := context.Background()
	r.createRegistry("reg")
	// At most one config per second per device (compat-spec section 5):
	// the updates go round enough devices.
	n := min(b.N, 300)
	type dev struct {
		name string
		cfgs inbox
		last time.Time
	}
	devs := make([]*dev, n)
	for i := range devs {
		id := fmt.Sprintf("bench-%d", i)
		r.createDevice("reg", id, false)
		c := r.connect(1, "reg", id)
		d := &dev{name: clusterParent + "/registries/reg/devices/" + id, cfgs: make(inbox, 4)}
		waitTok(b, c.Subscribe("/devices/"+id+"/config", 1, d.cfgs.handler))
		d.cfgs.next(b)
		devs[i] = d
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		d := devs[i%n]
		if wait := time.Second - time.Since(d.last); wait > 0 {
			b.StopTimer()
			time.Sleep(wait + 10*time.Millisecond) // the per-device rate limit
			b.StartTimer()
		}
		at := time.Now()
		if _, err := r.managers[0].ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{
			Name: d.name, BinaryData: []byte("v")}); err != nil {
			b.Fatal(err)
		}
		d.cfgs.next(b)
		d.last = time.Now()
		lat = append(lat, d.last.Sub(at))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}
