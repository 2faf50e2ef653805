package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/store/storetest"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// provision makes registry reg1 (events to projects/p1/topics/events) and
// the given ES256 devices in the database, and returns their key.
func provision(t *testing.T, databaseURL string, ids ...string) *ecdsa.PrivateKey {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, slogDiscard(), databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := store.RegistryKey{Project: "p1", Location: "us-central1", ID: "reg1"}
	if err := st.CreateRegistry(ctx, &store.Registry{Key: reg,
		EventNotificationConfigs: []store.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/events"}}}); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	cred := store.Credential{Format: deviceauth.FormatES256PEM, Key: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}
	for _, id := range ids {
		if _, err := st.CreateDevice(ctx, &store.Device{Registry: reg, ID: id, Credentials: []store.Credential{cred}}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return key
}

// connectDevice connects device id over plain MQTT to addr.
func connectDevice(t *testing.T, addr, id string, key *ecdsa.PrivateKey) (paho.Client, error) {
	t.Helper()
	token, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"aud": "p1", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).
		SetClientID("projects/p1/locations/us-central1/registries/reg1/devices/" + id).
		SetUsername("unused").SetPassword(token).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

type readyBody struct {
	Status   string            `json:"status"`
	Failing  []string          `json:"failing"`
	Degraded []string          `json:"degraded"`
	Checks   map[string]string `json:"checks"`
}

func getReadyz(opsAddr string) (int, readyBody, error) {
	var body readyBody
	resp, err := http.Get("http://" + opsAddr + "/readyz")
	if err != nil {
		return 0, body, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		return resp.StatusCode, body, fmt.Errorf("/readyz body %q: %v", raw, err)
	}
	return resp.StatusCode, body, nil
}

// waitReadyz polls /readyz until it answers code with exactly the failing
// checks named.
func waitReadyz(t *testing.T, opsAddr string, code int, failing ...string) readyBody {
	t.Helper()
	var last readyBody
	testutil.WaitFor(t, 30*time.Second, func() error {
		got, body, err := getReadyz(opsAddr)
		if err != nil {
			return err
		}
		last = body
		slices.Sort(body.Failing)
		if got != code || !slices.Equal(body.Failing, failing) {
			return fmt.Errorf("/readyz %d %+v, want %d failing %v", got, body, code, failing)
		}
		return nil
	})
	return last
}

// runBridge runs the binary with args until the test ends.
func runBridge(t *testing.T, args ...string) *testutil.SyncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &testutil.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, out, noEnv) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit %d\n%s", code, out.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("the bridge did not stop after cancel")
		}
		if t.Failed() {
			t.Logf("bridge output:\n%s", out.String())
		}
	})
	return out
}

// The NATS server goes away and comes back (stopped, then started again
// on its port and folder): the bridge says so once in its log and on
// /readyz, keeps its device connected, does not PUBACK an event while
// JetStream cannot store it, PUBACKs it once stored after the return,
// and is ready again by itself.
func TestNATSOutage(t *testing.T) {
	node := testutil.NewNATSNode(t, "bridge-nats")
	node.Start()
	dataDir := t.TempDir()
	db := filepath.Join(dataDir, "passerelle.db")
	key := provision(t, db, "dev-1")
	addr, opsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	out := runBridge(t, "--mqtt-addr", "", "--mqtt-plain-addr", addr, "--data-dir", dataDir,
		"--nats-url", node.URL(), "--ops-addr", opsAddr)
	body := waitReadyz(t, opsAddr, http.StatusOK)
	for _, c := range []string{"database", "nats", "jetstream"} {
		if body.Checks[c] != "ok" {
			t.Errorf("/readyz check %s: %q", c, body.Checks[c])
		}
	}
	dev, err := connectDevice(t, addr, "dev-1", key)
	if err != nil {
		t.Fatal(err)
	}
	if tok := dev.Publish("/devices/dev-1/events", 1, false, "before"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish before the outage: %v", tok.Error())
	}

	node.Stop()
	// The bridge itself is not ready either: it cannot record its
	// connections in the presence bucket, so it cannot keep one connection
	// per device across bridges.
	body = waitReadyz(t, opsAddr, http.StatusServiceUnavailable, "bridge", "nats")
	if !slices.Contains(body.Degraded, "jetstream") {
		t.Errorf("/readyz does not report jetstream degraded: %+v", body)
	}
	if !strings.Contains(body.Checks["nats"], "not connected to NATS at "+node.URL()) {
		t.Errorf("/readyz says %q about nats", body.Checks["nats"])
	}
	during := dev.Publish("/devices/dev-1/events", 1, false, "during")
	if during.WaitTimeout(500 * time.Millisecond) {
		t.Fatalf("an event was PUBACKed while JetStream was away (%v)", during.Error())
	}
	if !dev.IsConnectionOpen() {
		t.Error("the device lost its connection when NATS went away")
	}

	node.Start()
	if !during.WaitTimeout(15*time.Second) || during.Error() != nil {
		t.Fatalf("the event sent during the outage: %v", during.Error())
	}
	waitReadyz(t, opsAddr, http.StatusOK)

	// JetStream holds both events.
	nc, err := nats.Connect(node.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cons, err := js.OrderedConsumer(t.Context(), "PASSERELLE_PUBSUB", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"iot.pubsub.p1.events"}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for m := range batch.Messages() {
		stored = append(stored, string(m.Data()))
	}
	if strings.Join(stored, ",") != "before,during" {
		t.Errorf("stored events %v, want before and during", stored)
	}

	log := out.String()
	for line, want := range map[string]int{
		"disconnected from NATS":            1,
		"reconnected to NATS":               1,
		"not ready: nats check failing":     1,
		"degraded: jetstream check failing": 1,
		"nats check passing again":          1,
		"jetstream check passing again":     1,
		"level=ERROR":                       0,
		"forwarding an event":               0,
	} {
		if n := strings.Count(log, line); n != want {
			t.Errorf("%d log lines with %q, want %d", n, line, want)
		}
	}
}

// PostgreSQL goes away and comes back (the proxy to it is cut, then
// restored): the bridge reports it on /readyz and once in its log, keeps
// its device connected and forwarding events, refuses new connections
// with CONNACK 3 (server unavailable), and takes them again once the
// database is back.
func TestDatabaseOutage(t *testing.T) {
	u, err := url.Parse(storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	key := provision(t, u.String(), "dev-1", "dev-2")
	proxy := testutil.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	addr, opsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	out := runBridge(t, "--mqtt-addr", "", "--mqtt-plain-addr", addr, "--data-dir", t.TempDir(),
		"--database-url", u.String(), "--ops-addr", opsAddr)
	waitReadyz(t, opsAddr, http.StatusOK)
	dev, err := connectDevice(t, addr, "dev-1", key)
	if err != nil {
		t.Fatal(err)
	}
	if tok := dev.Publish("/devices/dev-1/events", 1, false, "before"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish before the outage: %v", tok.Error())
	}

	proxy.Cut()
	body := waitReadyz(t, opsAddr, http.StatusServiceUnavailable, "database")
	if !strings.Contains(body.Checks["database"], "the database is unreachable") {
		t.Errorf("/readyz says %q about the database", body.Checks["database"])
	}
	for i := range 3 {
		if tok := dev.Publish("/devices/dev-1/events", 1, false, "during"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("event %d during the outage: %v", i, tok.Error())
		}
	}
	if _, err := connectDevice(t, addr, "dev-2", key); err == nil || !strings.Contains(strings.ToLower(err.Error()), "server unavailable") {
		t.Errorf("a new device during the outage: %v, want CONNACK 3 (server unavailable)", err)
	}
	if !dev.IsConnectionOpen() {
		t.Error("the device lost its connection when the database went away")
	}

	proxy.Restore()
	waitReadyz(t, opsAddr, http.StatusOK)
	if _, err := connectDevice(t, addr, "dev-2", key); err != nil {
		t.Errorf("a new device after the outage: %v", err)
	}
	log := out.String()
	for line, want := range map[string]int{
		"not ready: database check failing": 1,
		"database check passing again":      1,
		"level=ERROR":                       0,
	} {
		if n := strings.Count(log, line); n != want {
			t.Errorf("%d log lines with %q, want %d", n, line, want)
		}
	}
}
