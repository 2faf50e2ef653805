package deploy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/devca"
	"github.com/passerelle-iot/passerelle/pkg/store/storetest"
)

const (
	project    = "p1"
	location   = "us-central1"
	registryID = "cluster-reg"
	eventTopic = "projects/p1/topics/cluster-events"
	stateTopic = "projects/p1/topics/cluster-states"
	// drain is the bridges' and hubs' --drain in this test.
	drain = 3 * time.Second
)

// service is one Passerelle process of the cluster.
type service struct {
	*proc
	binary string
	addr   string // what it serves: the admin API, MQTT (plain) or the hub API
	extra  string // a manager's Pub/Sub API, a bridge's HTTP device bridge (TLS)
	ops    string // its operator address (/readyz)
}

// restart starts the service again with the same arguments and waits
// until it is ready. The process belongs to the cluster's test (top), not
// to the subtest that restarts it, which would stop it when it ends.
func (s *service) restart(top *testing.T) {
	top.Helper()
	s.proc = start(top, s.name, s.binary, s.args...)
	ready(top, s.proc, s.ops, 60*time.Second)
}

// cluster is three NATS nodes, PostgreSQL, two managers, two bridges and
// two hubs, each its own process, and HAProxy in front of them when it is
// installed.
type cluster struct {
	top      *testing.T // the test the processes belong to
	nats     *natsCluster
	js       jetstream.JetStream
	data     string // passerelle init's folder: tokens, admin token
	token    string
	managers []*service
	bridges  []*service
	hubs     []*service
	lb       *lbAddrs // nil without HAProxy

	key    *ecdsa.PrivateKey
	keyPEM string
	admin  []*iot.DeviceManagerClient // one client per manager
}

type lbAddrs struct{ mqtt, admin, hub, pubsub, http string }

func startCluster(t *testing.T) *cluster {
	t.Helper()
	dbURL := storetest.PostgresURL(t) // a fresh schema, dropped at the end
	c := &cluster{top: t, nats: startNATSCluster(t, 3), data: t.TempDir()}
	_, c.js = c.nats.connect(t)

	if out, err := exec.Command(bin(t, "passerelle"), "init", "--data-dir", c.data).CombinedOutput(); err != nil {
		t.Fatalf("passerelle init: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(c.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c.token = strings.TrimSpace(string(raw))
	common := func(name string, ops string) []string {
		return []string{"--nats-url", c.nats.urls(), "--ops-addr", ops, "--instance-id", name, "--log-level", "debug"}
	}
	for i := range 2 {
		name, a, ps, ops := fmt.Sprintf("manager-%d", i+1), addr(freePort(t)), addr(freePort(t)), addr(freePort(t))
		args := append(common(name, ops)[:4], "--listen", a, "--database-url", dbURL, "--pubsub-addr", ps,
			"--data-dir", c.data, "--tokens-file", filepath.Join(c.data, "tokens"))
		c.managers = append(c.managers, &service{proc: start(t, name, bin(t, "manager"), args...), binary: bin(t, "manager"), addr: a, extra: ps, ops: ops})
	}
	for i := range 2 {
		name, a, h, ops := fmt.Sprintf("bridge-%d", i+1), addr(freePort(t)), addr(freePort(t)), addr(freePort(t))
		args := append(common(name, ops), "--mqtt-addr", "", "--mqtt-plain-addr", a, "--database-url", dbURL,
			"--http-bridge-addr", h, "--tls-cert", filepath.Join(c.data, devca.ServerCertFile), "--tls-key", filepath.Join(c.data, devca.ServerKeyFile),
			"--data-dir", t.TempDir(), "--drain", drain.String(),
			"--max-pending-per-address", "0") // every device dials from 127.0.0.1
		c.bridges = append(c.bridges, &service{proc: start(t, name, bin(t, "bridge"), args...), binary: bin(t, "bridge"), addr: a, extra: h, ops: ops})
	}
	for _, s := range append(c.managers, c.bridges...) {
		ready(t, s.proc, s.ops, 60*time.Second)
	}
	hubData := t.TempDir() // shared by the replicas, as a volume would be
	for i := range 2 {
		name, a, ops := fmt.Sprintf("hub-%d", i+1), addr(freePort(t)), addr(freePort(t))
		args := append(common(name, ops), "--listen", a, "--advertise-addr", a,
			"--bridge", c.bridges[i].addr, "--bridge-plain",
			"--manager-url", "http://"+c.managers[i].addr, "--manager-token-file", filepath.Join(c.data, "admin.token"),
			"--tokens-file", filepath.Join(c.data, "tokens"), "--data-dir", hubData, "--drain", drain.String())
		c.hubs = append(c.hubs, &service{proc: start(t, name, bin(t, "hub"), args...), binary: bin(t, "hub"), addr: a, ops: ops})
	}
	for _, s := range c.hubs {
		ready(t, s.proc, s.ops, 60*time.Second)
	}
	c.startLB(t)

	for _, m := range c.managers {
		cl, err := iot.NewDeviceManagerClient(context.Background(),
			option.WithEndpoint(m.addr), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
			option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(c.token))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		c.admin = append(c.admin, cl)
	}
	c.key, c.keyPEM = es256Key(t)
	_, err = c.admin[0].CreateDeviceRegistry(context.Background(), &iotpb.CreateDeviceRegistryRequest{
		Parent: "projects/" + project + "/locations/" + location,
		DeviceRegistry: &iotpb.DeviceRegistry{
			Id:                       registryID,
			EventNotificationConfigs: []*iotpb.EventNotificationConfig{{PubsubTopicName: eventTopic}},
			StateNotificationConfig:  &iotpb.StateNotificationConfig{PubsubTopicName: stateTopic},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startLB runs HAProxy with deploy/haproxy.cfg, its addresses and servers
// turned into this cluster's loopback ports.
func (c *cluster) startLB(t *testing.T) {
	t.Helper()
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy is not installed under CI=true (apt-get install haproxy)")
		}
		t.Log("haproxy is not installed: the load-balanced parts are skipped")
		return
	}
	raw, err := os.ReadFile("haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	c.lb = &lbAddrs{mqtt: addr(freePort(t)), admin: addr(freePort(t)), hub: addr(freePort(t)), pubsub: addr(freePort(t)), http: addr(freePort(t))}
	r := []string{
		"bind :8883", "bind " + c.lb.mqtt,
		"bind :8080", "bind " + c.lb.admin,
		"bind :8090", "bind " + c.lb.hub,
		"bind :8085", "bind " + c.lb.pubsub,
		"bind :8443", "bind " + c.lb.http,
		"bind :8404", "bind " + addr(freePort(t)),
		"log stdout format raw local0 info", "log stdout format raw local0 notice",
		"maxconn 100000", "maxconn 4000", // this machine's file limit is 20,000
	}
	for i, s := range c.bridges {
		r = append(r, fmt.Sprintf("bridge-%d:8883", i+1), s.addr+" port "+portOf(s.ops),
			fmt.Sprintf("bridge-%d:8443", i+1), s.extra+" port "+portOf(s.ops))
	}
	for i, s := range c.managers {
		r = append(r, fmt.Sprintf("manager-%d:8080", i+1), s.addr+" port "+portOf(s.ops),
			fmt.Sprintf("manager-%d:8085", i+1), s.extra+" port "+portOf(s.ops))
	}
	for i, s := range c.hubs {
		r = append(r, fmt.Sprintf("hub-%d:8090", i+1), s.addr+" port "+portOf(s.ops))
	}
	cfg := strings.NewReplacer(r...).Replace(string(raw))
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "haproxy", haproxy, "-db", "-f", path)
	waitUntil(t, 30*time.Second, func() error {
		if !p.running() {
			return fmt.Errorf("haproxy exited: %v", p.err)
		}
		return dialable(c.lb.mqtt)
	})
}

func portOf(a string) string { return a[strings.LastIndexByte(a, ':')+1:] }

func registryName() string {
	return "projects/" + project + "/locations/" + location + "/registries/" + registryID
}

func deviceName(id string) string { return registryName() + "/devices/" + id }

// createDevices creates devices with the cluster's key; kind GATEWAY makes
// gateways that attach by binding alone.
func (c *cluster) createDevices(t *testing.T, gateway bool, ids ...string) {
	t.Helper()
	for _, id := range ids {
		d := &iotpb.Device{Id: id, Credentials: []*iotpb.DeviceCredential{{Credential: &iotpb.DeviceCredential_PublicKey{
			PublicKey: &iotpb.PublicKeyCredential{Format: iotpb.PublicKeyFormat_ES256_PEM, Key: c.keyPEM},
		}}}}
		if gateway {
			d.GatewayConfig = &iotpb.GatewayConfig{GatewayType: iotpb.GatewayType_GATEWAY, GatewayAuthMethod: iotpb.GatewayAuthMethod_ASSOCIATION_ONLY}
		}
		if _, err := c.admin[0].CreateDevice(context.Background(), &iotpb.CreateDeviceRequest{Parent: registryName(), Device: d}); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
	}
}

// mqttDevice is a device's (or a gateway's) MQTT connection.
type mqttDevice struct {
	id       string
	lost     chan struct{} // closed when the connection is lost (no auto-reconnect)
	lostAt   atomic.Int64  // unix nanoseconds of the first loss
	configs  chan string
	commands chan string

	mu     sync.Mutex
	cl     paho.Client // the current connection
	closed bool
	redial sync.WaitGroup // the goroutine connecting again, if any
}

type dialOpts struct {
	autoReconnect bool
	brokers       []string // host:port, in the order paho tries them
}

// connect connects device id to the brokers (plain MQTT) with a fresh JWT.
func (c *cluster) connect(t *testing.T, id string, o dialOpts) (*mqttDevice, error) {
	t.Helper()
	d := &mqttDevice{id: id, lost: make(chan struct{}), configs: make(chan string, 64), commands: make(chan string, 64)}
	if err := c.dial(t, d, o); err != nil {
		return nil, err
	}
	t.Cleanup(d.close)
	return d, nil
}

// dial makes d's connection. A device that reconnects does it the way
// Cloud IoT's device samples do: a new client with a fresh JWT, trying
// its brokers in turn. paho's own auto-reconnect sets a field of the
// client that a later Disconnect reads with nothing ordering the two: a
// data race -race reported in CI (eclipse-paho/paho.mqtt.golang#550).
func (c *cluster) dial(t *testing.T, d *mqttDevice, o dialOpts) error {
	var once sync.Once
	opts := paho.NewClientOptions().
		SetClientID(deviceName(d.id)).SetUsername("unused").
		SetCredentialsProvider(func() (string, string) { return "unused", c.jwt(t) }).
		SetProtocolVersion(4).SetCleanSession(true).SetKeepAlive(30 * time.Second).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(false).
		SetConnectTimeout(5 * time.Second).
		SetConnectionLostHandler(func(paho.Client, error) {
			d.lostAt.CompareAndSwap(0, time.Now().UnixNano())
			if !o.autoReconnect {
				once.Do(func() { close(d.lost) })
				return
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.closed {
				return
			}
			d.redial.Add(1)
			go func() {
				defer d.redial.Done()
				for !d.isClosed() {
					time.Sleep(100 * time.Millisecond)
					if c.dial(t, d, o) == nil {
						return
					}
				}
			}()
		})
	for _, b := range o.brokers {
		opts.AddBroker("tcp://" + b)
	}
	cl := paho.NewClient(opts)
	tok := cl.Connect()
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		cl.Disconnect(0)
		return fmt.Errorf("connect %s to %v: %v", d.id, o.brokers, tok.Error())
	}
	d.mu.Lock()
	closed := d.closed
	if !closed {
		d.cl = cl
	}
	d.mu.Unlock()
	if closed {
		cl.Disconnect(0)
	}
	return nil
}

// client is the device's current connection.
func (d *mqttDevice) client() paho.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cl
}

func (d *mqttDevice) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// close disconnects the device and ends its reconnecting.
func (d *mqttDevice) close() {
	d.mu.Lock()
	d.closed = true
	cl := d.cl
	d.mu.Unlock()
	cl.Disconnect(0)
	d.redial.Wait()
}

func (c *cluster) mustConnect(t *testing.T, id string, o dialOpts) *mqttDevice {
	t.Helper()
	d, err := c.connect(t, id, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// subscribe subscribes the device (or, with target, a device attached
// through this gateway) to its config and commands.
func (d *mqttDevice) subscribe(t *testing.T, target string) {
	t.Helper()
	for topic, ch := range map[string]chan string{"/devices/" + target + "/config": d.configs, "/devices/" + target + "/commands/#": d.commands} {
		tok := d.client().Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { ch <- string(m.Payload()) })
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s subscribe %s: %v", d.id, topic, tok.Error())
		}
	}
}

// expect waits for want on ch.
func expect(t *testing.T, what string, ch chan string, want string) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case got := <-ch:
			if got == want {
				return
			}
		case <-deadline:
			t.Fatalf("%s: no %q within 15 s", what, want)
		}
	}
}

func (c *cluster) jwt(t *testing.T) string {
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), Audience: jwt.ClaimStrings{project},
	}).SignedString(c.key)
	if err != nil {
		t.Error(err)
	}
	return s
}

// TestCluster runs the cluster of issue 9 as separate processes and
// checks what an operator relies on: one connection per device across
// bridges, routing across bridges and managers, the loss of a bridge, of a
// NATS node and of a hub replica under load, and the drain of a bridge.
// It needs PostgreSQL (PASSERELLE_TEST_POSTGRES_URL); CI runs it.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	c := startCluster(t)
	t.Run("OneConnectionPerDevice", c.testOneConnectionPerDevice)
	t.Run("Routing", c.testRouting)
	t.Run("BridgeKilledUnderLoad", c.testBridgeKilled)
	t.Run("NATSNodeKilledUnderLoad", c.testNATSNodeKilled)
	t.Run("HubOwnerKilled", c.testHubOwnerKilled)
	t.Run("BridgeDrained", c.testBridgeDrained)
	t.Run("PubSubThroughTheBalancer", c.testPubSubThroughTheBalancer)
}

// A device connected to bridge A that connects again through bridge B
// loses its A connection; 200 devices connecting to both at once end with
// exactly one connection each.
func (c *cluster) testOneConnectionPerDevice(t *testing.T) {
	c.createDevices(t, false, "twice")
	a := c.mustConnect(t, "twice", dialOpts{brokers: []string{c.bridges[0].addr}})
	start := time.Now()
	b := c.mustConnect(t, "twice", dialOpts{brokers: []string{c.bridges[1].addr}})
	select {
	case <-a.lost:
		t.Logf("figure: the connection on bridge A closed %s after the connect through bridge B", time.Duration(a.lostAt.Load()-start.UnixNano()).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the connection on bridge A was still up 10 s after the device connected through bridge B")
	}
	if !b.client().IsConnectionOpen() {
		t.Fatal("the newer connection (bridge B) was closed")
	}
	waitUntil(t, 10*time.Second, func() error {
		dev, err := c.admin[1].GetDevice(context.Background(), &iotpb.GetDeviceRequest{Name: deviceName("twice")})
		if err != nil {
			return err
		}
		if codes.Code(dev.GetLastErrorStatus().GetCode()) != codes.AlreadyExists {
			return fmt.Errorf("lastErrorStatus %v, want ALREADY_EXISTS", dev.GetLastErrorStatus())
		}
		return nil
	})

	const n = 200
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("race-%03d", i)
	}
	c.createDevices(t, false, ids...)
	pairs := make([][2]*mqttDevice, n)
	var wg sync.WaitGroup
	for i, id := range ids {
		for side := range 2 {
			wg.Go(func() {
				// A connect may lose the race before its CONNACK: that
				// is one of the two outcomes, not a failure.
				d, err := c.connect(t, id, dialOpts{brokers: []string{c.bridges[side].addr}})
				if err == nil {
					pairs[i][side] = d
				}
			})
		}
	}
	wg.Wait()
	open := func(d *mqttDevice) bool { return d != nil && d.client().IsConnectionOpen() }
	waitUntil(t, 15*time.Second, func() error {
		bad := 0
		for _, p := range pairs {
			if open(p[0]) == open(p[1]) {
				bad++
			}
		}
		if bad > 0 {
			return fmt.Errorf("%d of %d devices have %s", bad, n, "zero or two connections")
		}
		return nil
	})
	// And it stays so.
	time.Sleep(2 * time.Second) // let any late takeover show itself
	for i, p := range pairs {
		if open(p[0]) == open(p[1]) {
			t.Errorf("%s: connected on A %v, on B %v", ids[i], open(p[0]), open(p[1]))
		}
	}
}

// Configs set through manager 1 and commands sent through manager 2 reach
// devices on both bridges, directly and through a gateway.
func (c *cluster) testRouting(t *testing.T) {
	c.createDevices(t, false, "route-a", "route-b", "route-behind")
	c.createDevices(t, true, "route-gw")
	if _, err := c.admin[0].BindDeviceToGateway(context.Background(), &iotpb.BindDeviceToGatewayRequest{
		Parent: registryName(), GatewayId: "route-gw", DeviceId: "route-behind"}); err != nil {
		t.Fatal(err)
	}
	a := c.mustConnect(t, "route-a", dialOpts{brokers: []string{c.bridges[0].addr}})
	b := c.mustConnect(t, "route-b", dialOpts{brokers: []string{c.bridges[1].addr}})
	gw := c.mustConnect(t, "route-gw", dialOpts{brokers: []string{c.bridges[1].addr}})
	if tok := gw.client().Publish("/devices/route-behind/attach", 1, false, `{"authorization":""}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("attach: %v", tok.Error())
	}
	a.subscribe(t, "route-a")
	b.subscribe(t, "route-b")
	gw.subscribe(t, "route-behind")
	for _, d := range []struct {
		id string
		at *mqttDevice
	}{{"route-a", a}, {"route-b", b}, {"route-behind", gw}} {
		start := time.Now()
		if _, err := c.admin[0].ModifyCloudToDeviceConfig(context.Background(), &iotpb.ModifyCloudToDeviceConfigRequest{
			Name: deviceName(d.id), BinaryData: []byte("config-for-" + d.id)}); err != nil {
			t.Fatal(err)
		}
		expect(t, d.id+" config", d.at.configs, "config-for-"+d.id)
		t.Logf("figure: config through manager 1 reached %s in %s", d.id, time.Since(start).Round(time.Microsecond))
		waitUntil(t, 10*time.Second, func() error { // the device must be subscribed on its bridge first
			_, err := c.admin[1].SendCommandToDevice(context.Background(), &iotpb.SendCommandToDeviceRequest{
				Name: deviceName(d.id), BinaryData: []byte("command-for-" + d.id)})
			return err
		})
		expect(t, d.id+" command", d.at.commands, "command-for-"+d.id)
	}
	_, err := c.admin[1].SendCommandToDevice(context.Background(), &iotpb.SendCommandToDeviceRequest{
		Name: deviceName("twice-never-connected"), BinaryData: []byte("x")})
	if status.Code(err) != codes.NotFound {
		t.Errorf("command to a missing device: %v, want NOT_FOUND", err)
	}
	c.createDevices(t, false, "route-offline")
	_, err = c.admin[1].SendCommandToDevice(context.Background(), &iotpb.SendCommandToDeviceRequest{
		Name: deviceName("route-offline"), BinaryData: []byte("x")})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("command to a device no bridge holds: %v, want FAILED_PRECONDITION", err)
	}
}

// publisher publishes QoS 1 events from devices until stopped, recording
// each payload the bridge acknowledged.
type publisher struct {
	mu    sync.Mutex
	acked map[string]bool
	after atomic.Int64 // acks counted once mark is set
	first atomic.Int64 // unix nanoseconds of the first of them
	mark  atomic.Bool
	stop  chan struct{}
	wg    sync.WaitGroup
}

func (c *cluster) publish(t *testing.T, prefix string, devices []*mqttDevice) *publisher {
	p := &publisher{acked: map[string]bool{}, stop: make(chan struct{})}
	for _, d := range devices {
		p.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-p.stop:
					return
				default:
				}
				if !d.client().IsConnectionOpen() {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				payload := fmt.Sprintf("%s/%s/%d", prefix, d.id, i)
				tok := d.client().Publish("/devices/"+d.id+"/events", 1, false, payload)
				if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
					p.mu.Lock()
					p.acked[payload] = true
					p.mu.Unlock()
					if p.mark.Load() {
						p.after.Add(1)
						p.first.CompareAndSwap(0, time.Now().UnixNano())
					}
				}
				time.Sleep(10 * time.Millisecond) // 100 messages/s is a connection's limit
			}
		})
	}
	return p
}

func (p *publisher) finish() map[string]bool {
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked
}

// stored reads every event of the registry's topic with prefix from
// JetStream, through a consumer of its own.
func (c *cluster) stored(t *testing.T, prefix string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	// Each attempt has its own deadline: right after a node's loss a
	// request can go unanswered while the cluster elects leaders.
	waitUntil(t, 90*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cons, err := c.js.CreateOrUpdateConsumer(ctx, "PASSERELLE_PUBSUB", jetstream.ConsumerConfig{
			FilterSubject: "iot.pubsub.p1.cluster-events", DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute, MemoryStorage: true,
		})
		if err != nil {
			return err
		}
		defer c.js.DeleteConsumer(context.Background(), "PASSERELLE_PUBSUB", cons.CachedInfo().Name)
		for {
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending == 0 && info.NumAckPending == 0 {
				return nil
			}
			batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return err
			}
			n := 0
			for m := range batch.Messages() {
				n++
				if s := string(m.Data()); strings.HasPrefix(s, prefix+"/") {
					got[s] = true
				}
			}
			if err := batch.Error(); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("read the stream: %d messages pending, none fetched", info.NumPending)
			}
		}
	})
	return got
}

func checkNoLoss(t *testing.T, acked, stored map[string]bool) {
	t.Helper()
	lost := 0
	for p := range acked {
		if !stored[p] {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged but not stored: %s", p)
			}
		}
	}
	t.Logf("figure: %d events acknowledged, %d stored, %d acknowledged and lost", len(acked), len(stored), lost)
}

func (c *cluster) loadDevices(t *testing.T, prefix string, n int, brokers func(i int) []string) []*mqttDevice {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	c.createDevices(t, false, ids...)
	devs := make([]*mqttDevice, n)
	for i, id := range ids {
		devs[i] = c.mustConnect(t, id, dialOpts{autoReconnect: true, brokers: brokers(i)})
	}
	return devs
}

// SIGKILL of a bridge under QoS 1 load: its devices reconnect to the
// other, and every PUBACKed message is in JetStream.
func (c *cluster) testBridgeKilled(t *testing.T) {
	a, b := c.bridges[0].addr, c.bridges[1].addr
	devs := c.loadDevices(t, "kb", 20, func(i int) []string {
		if i%2 == 0 {
			return []string{a, b}
		}
		return []string{b, a}
	})
	p := c.publish(t, "kill-bridge", devs)
	time.Sleep(2 * time.Second) // load before the kill
	c.bridges[0].kill()
	p.mark.Store(true)
	defer c.bridges[0].restart(c.top)
	killed := time.Now()
	waitUntil(t, 30*time.Second, func() error {
		for _, d := range devs {
			if !d.client().IsConnectionOpen() {
				return fmt.Errorf("%s is not connected again", d.id)
			}
		}
		return nil
	})
	t.Logf("figure: every device of the killed bridge connected to the other within %s", time.Since(killed).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // load after the failover
	acked := p.finish()
	if p.after.Load() == 0 {
		t.Error("no event was acknowledged after the bridge was killed")
	}
	checkNoLoss(t, acked, c.stored(t, "kill-bridge"))
}

// SIGKILL of the NATS node leading the stream under load: PUBACKs pause
// for the election and go on, no device is disconnected, nothing
// acknowledged is lost.
func (c *cluster) testNATSNodeKilled(t *testing.T) {
	devs := c.loadDevices(t, "kn", 20, func(i int) []string { return []string{c.bridges[i%2].addr} })
	p := c.publish(t, "kill-nats", devs)
	time.Sleep(2 * time.Second)
	// The node that leads the stream: the hardest loss, an election.
	victim := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	st, err := c.js.Stream(ctx, "PASSERELLE_PUBSUB")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	leader := st.CachedInfo().Cluster.Leader
	for i := range c.nats.nodes {
		if leader == fmt.Sprintf("n%d", i) {
			victim = i
		}
	}
	t.Logf("killing NATS node n%d (the stream leader is %q)", victim, leader)
	c.nats.nodes[victim].kill()
	killed := time.Now()
	p.mark.Store(true)
	defer func() {
		c.nats.startNode(c.top, victim)
		c.nats.waitJetStream(c.top, 60*time.Second)
	}()
	// Acknowledgements wait for the election of a new leader (NATS's
	// Raft: 4 to 9 s), then go on.
	waitUntil(t, 30*time.Second, func() error {
		if p.after.Load() == 0 {
			return errors.New("no event acknowledged since the NATS node was killed")
		}
		return nil
	})
	t.Logf("figure: the first PUBACK after the NATS node's SIGKILL came %s after it", time.Duration(p.first.Load()-killed.UnixNano()).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // load on two nodes
	acked := p.finish()
	t.Logf("figure: %d events acknowledged after the NATS node was killed", p.after.Load())
	// The bridges send what the stream did not answer again through the
	// election: no device loses its connection (and reconnects).
	lost := 0
	for _, d := range devs {
		if d.lostAt.Load() != 0 {
			lost++
		}
	}
	t.Logf("figure: %d of %d devices lost their connection while the NATS node was down", lost, len(devs))
	if lost > 0 {
		t.Errorf("%d of %d devices were disconnected by the loss of a NATS node", lost, len(devs))
	}
	checkNoLoss(t, acked, c.stored(t, "kill-nats"))
}

func (c *cluster) hubClient(t *testing.T, s *service) hubv1.HubClient {
	t.Helper()
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer(c.token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return hubv1.NewHubClient(cc)
}

// owner is the hub replica whose pool holds gateway's connection.
func (c *cluster) owner(t *testing.T, gateway string) int {
	t.Helper()
	owner := -1
	waitUntil(t, 15*time.Second, func() error {
		owner = -1
		for i, h := range c.hubs {
			if !h.running() {
				continue
			}
			pool, err := c.hubClient(t, h).GetPool(context.Background(), &hubv1.GetPoolRequest{})
			if err != nil {
				return err
			}
			for _, conn := range pool.GetConnections() {
				if conn.GetGateway() == gateway && conn.GetState() == hubv1.ConnectionState_CONNECTION_STATE_CONNECTED {
					if owner >= 0 {
						return fmt.Errorf("both replicas report %s connected", gateway)
					}
					owner = i
				}
			}
		}
		if owner < 0 {
			return fmt.Errorf("no replica holds %s", gateway)
		}
		return nil
	})
	return owner
}

// SIGKILL of the hub replica that owns a gateway while callers on the
// other replica stream configs and publish states: the gateway moves, the
// callers' streams carry on, no acknowledged state is lost, and the
// bridges never see the gateway connected twice at once.
func (c *cluster) testHubOwnerKilled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gwName := deviceName("hub-gw")
	if _, err := c.hubClient(t, c.hubs[0]).CreateGateway(ctx, &hubv1.CreateGatewayRequest{Parent: registryName(), GatewayId: "hub-gw"}); err != nil {
		t.Fatal(err)
	}
	c.createDevices(t, false, "hub-dev")
	if _, err := c.admin[0].BindDeviceToGateway(ctx, &iotpb.BindDeviceToGatewayRequest{Parent: registryName(), GatewayId: "hub-gw", DeviceId: "hub-dev"}); err != nil {
		t.Fatal(err)
	}
	// Whichever replica takes the gateway first, the callers go to the
	// other one.
	att, err := c.hubClient(t, c.hubs[0]).Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := att.Send(&hubv1.AttachRequest{Gateway: gwName, DeviceId: "hub-dev"}); err != nil {
		t.Fatal(err)
	}
	if _, err := att.Recv(); err != nil {
		t.Fatalf("attach: %v", err)
	}
	owner := c.owner(t, gwName)
	caller := c.hubClient(t, c.hubs[1-owner])
	cfgs, err := caller.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gwName, DeviceId: "hub-dev"})
	if err != nil {
		t.Fatal(err)
	}
	configs := make(chan string, 64)
	go func() {
		for {
			m, err := cfgs.Recv()
			if err != nil {
				close(configs)
				return
			}
			configs <- string(m.GetData())
		}
	}()
	states, err := caller.PublishState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ackedStates atomic.Int64
	stateErr := make(chan error, 1)
	go func() {
		for {
			if _, err := states.Recv(); err != nil {
				stateErr <- err
				return
			}
			ackedStates.Add(1)
		}
	}()
	sent := 0
	send := func(n int) {
		for range n {
			sent++
			if err := states.Send(&hubv1.PublishStateRequest{Gateway: gwName, DeviceId: "hub-dev", Data: []byte("state-" + strconv.Itoa(sent))}); err != nil {
				if errors.Is(err, io.EOF) {
					// The stream ended: its status is what Recv got.
					select {
					case err = <-stateErr:
					case <-time.After(10 * time.Second):
					}
				}
				t.Fatalf("state %d: %v", sent, err)
			}
			time.Sleep(1100 * time.Millisecond) // one state a second per device
		}
	}
	send(2)

	c.hubs[owner].kill()
	killed := time.Now()
	defer c.hubs[owner].restart(c.top)
	newOwner := c.owner(t, gwName)
	t.Logf("figure: the gateway moved from hub-%d to hub-%d %s after the SIGKILL", owner+1, newOwner+1, time.Since(killed).Round(time.Millisecond))
	send(3)
	if _, err := c.admin[1].ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{Name: deviceName("hub-dev"), BinaryData: []byte("after-the-kill")}); err != nil {
		t.Fatal(err)
	}
	expect(t, "config on the caller's stream after the kill", configs, "after-the-kill")
	waitUntil(t, 20*time.Second, func() error {
		if n := ackedStates.Load(); n < int64(sent) {
			return fmt.Errorf("%d of %d states acknowledged", n, sent)
		}
		return nil
	})
	select {
	case err := <-stateErr:
		t.Fatalf("the caller's PublishState stream ended: %v", err)
	default:
	}
	// Every acknowledged state reached the registry's state topic.
	waitUntil(t, 20*time.Second, func() error {
		dev, err := c.admin[0].ListDeviceStates(ctx, &iotpb.ListDeviceStatesRequest{Name: deviceName("hub-dev")})
		if err != nil {
			return err
		}
		if got := len(dev.GetDeviceStates()); got < sent {
			return fmt.Errorf("%d states stored, %d acknowledged", got, sent)
		}
		return nil
	})
	// A gateway connected twice would have one connection closed by the
	// bridges' rule of one connection per device (logged, and recorded as
	// the device's last error).
	for _, b := range c.bridges {
		for _, line := range strings.Split(b.log.String(), "\n") {
			if strings.Contains(line, "device=hub-gw") && strings.Contains(line, "another active connection") {
				t.Errorf("%s saw the gateway connected twice: %s", b.name, line)
			}
		}
	}
	gw, err := c.admin[0].GetDevice(ctx, &iotpb.GetDeviceRequest{Name: gwName})
	if err != nil {
		t.Fatal(err)
	}
	if codes.Code(gw.GetLastErrorStatus().GetCode()) == codes.AlreadyExists {
		t.Errorf("the gateway's last error is %v: it was connected twice", gw.GetLastErrorStatus())
	}
}

// SIGTERM of a bridge: its devices are shed over the drain period and all
// reconnect to the other bridge, here through HAProxy.
func (c *cluster) testBridgeDrained(t *testing.T) {
	if c.lb == nil {
		t.Skip("no HAProxy")
	}
	devs := c.loadDevices(t, "dr", 40, func(int) []string { return []string{c.lb.mqtt} })
	// HAProxy balances by least connections: both bridges hold some.
	term := time.Now()
	defer c.bridges[0].restart(c.top)
	if err := c.bridges[0].signal(t, syscall.SIGTERM, drain+20*time.Second); err != nil {
		t.Errorf("the drained bridge exited with %v", err)
	}
	var first, last time.Duration
	for _, d := range devs {
		if at := d.lostAt.Load(); at != 0 {
			since := time.Duration(at - term.UnixNano())
			if first == 0 || since < first {
				first = since
			}
			last = max(last, since)
		}
	}
	t.Logf("figure: the drained bridge shed its devices from %s to %s after SIGTERM (--drain %s)", first.Round(time.Millisecond), last.Round(time.Millisecond), drain)
	waitUntil(t, 30*time.Second, func() error {
		for _, d := range devs {
			if !d.client().IsConnectionOpen() {
				return fmt.Errorf("%s is not connected again", d.id)
			}
		}
		return nil
	})
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

func es256Key(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// dialable reports whether a TCP connection to a can be opened.
func dialable(a string) error {
	c, err := net.DialTimeout("tcp", a, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}
