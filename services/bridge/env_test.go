package bridge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/devca"
	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

const (
	project     = "p1"
	eventsTopic = "projects/p1/topics/events"
	stateTopic  = "projects/p1/topics/state"
)

var regKey = store.RegistryKey{Project: project, Location: "us-central1", ID: "reg1"}

type env struct {
	t    testing.TB
	st   store.Store
	bus  *bus.Bus
	br   *bridge.Bridge
	addr string
	tls  *tls.Config // client side
	srv  *tls.Config // server side, for ServeHTTP
	// plainAddr is the bridge's plain MQTT listener, beside the TLS one.
	plainAddr string
}

// newEnv starts SQLite, the embedded bus and the bridge over TLS (and
// plain MQTT at plainAddr).
func newEnv(t testing.TB, opts ...bridge.Option) *env {
	t.Helper()
	return newEnvWrapped(t, nil, opts...)
}

// newEnvWrapped is newEnv with the bridge's store wrapped by wrap (when
// not nil), for tests that watch what the bridge asks of it.
func newEnvWrapped(t testing.TB, wrap func(store.Store) store.Store, opts ...bridge.Option) *env {
	t.Helper()
	return newEnvLogged(t, testutil.Logger(t), wrap, opts...)
}

// newEnvLogged is newEnvWrapped logging to log, for tests that read the
// bridge's log.
func newEnvLogged(t testing.TB, log *slog.Logger, wrap func(store.Store) store.Store, opts ...bridge.Option) *env {
	t.Helper()
	ctx := context.Background()
	st := testutil.Must(sqlstore.Open(ctx, log, t.TempDir()+"/db.sqlite"))
	t.Cleanup(func() { _ = st.Close() })
	b := testutil.Must(bus.Open(ctx, log, bus.Options{DataDir: t.TempDir()}))
	t.Cleanup(func() { _ = b.Close() })
	if err := st.CreateRegistry(ctx, &store.Registry{
		Key:                      regKey,
		EventNotificationConfigs: []store.EventNotificationConfig{{PubsubTopicName: eventsTopic}},
		StateNotificationTopic:   stateTopic,
	}); err != nil {
		t.Fatal(err)
	}

	serverTLS, clientTLS := testTLS(t)
	ln := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	plain := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	var bst store.Store = st
	if wrap != nil {
		bst = wrap(st)
	}
	br := bridge.New(log, bst, b, opts...)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- br.Serve(sctx, tls.NewListener(ln, serverTLS), plain) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return &env{t: t, st: st, bus: b, br: br, addr: ln.Addr().String(), tls: clientTLS, srv: serverTLS, plainAddr: plain.Addr().String()}
}

// testTLS makes a CA and a server certificate for 127.0.0.1.
func testTLS(t testing.TB) (server, client *tls.Config) {
	server, client, err := devca.Ephemeral("127.0.0.1")
	if err != nil {
		panic(err)
	}
	return server, client
}

// devKey is a device's private key and its credential.
type devKey struct {
	priv   any
	method jwt.SigningMethod
	cred   store.Credential
}

var (
	keyOnce       sync.Once
	rsaKey, ecKey devKey
	otherKey      devKey
)

func keys(t testing.TB) {
	keyOnce.Do(func() {
		r := testutil.Must(rsa.GenerateKey(rand.Reader, 2048))
		rsaKey = devKey{r, jwt.SigningMethodRS256, store.Credential{Format: deviceauth.FormatRSAPEM, Key: pubPEM(t, &r.PublicKey)}}
		e := testutil.Must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		ecKey = devKey{e, jwt.SigningMethodES256, store.Credential{Format: deviceauth.FormatES256PEM, Key: pubPEM(t, &e.PublicKey)}}
		o := testutil.Must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		otherKey = devKey{o, jwt.SigningMethodES256, store.Credential{Format: deviceauth.FormatES256PEM, Key: pubPEM(t, &o.PublicKey)}}
	})
}

func pubPEM(t testing.TB, pub any) string {
	der := testutil.Must(x509.MarshalPKIXPublicKey(pub))
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func (k devKey) token(t testing.TB, aud string, iat, exp time.Time) string {
	t.Helper()
	return testutil.Must(jwt.NewWithClaims(k.method, jwt.MapClaims{"aud": aud, "iat": iat.Unix(), "exp": exp.Unix()}).SignedString(k.priv))
}

func (k devKey) jwt(t testing.TB) string {
	return k.token(t, project, time.Now(), time.Now().Add(time.Hour))
}

func (e *env) createDevice(id string, k devKey, mod func(*store.Device)) *store.Device {
	e.t.Helper()
	d := &store.Device{Registry: regKey, ID: id, Credentials: []store.Credential{k.cred}}
	if mod != nil {
		mod(d)
	}
	return testutil.Must(e.st.CreateDevice(context.Background(), d, time.Now()))
}

func clientID(id string) string {
	return "projects/" + project + "/locations/us-central1/registries/reg1/devices/" + id
}

// client is a paho client with a record of lost connections.
type client struct {
	paho.Client
	lost chan error
}

func (e *env) dial(id, password string) (*client, error) {
	return e.dialBroker("ssl://"+e.addr, id, password)
}

func (e *env) dialBroker(broker, id, password string) (*client, error) {
	c := &client{lost: make(chan error, 1)}
	o := paho.NewClientOptions().
		AddBroker(broker).
		SetClientID(id).
		SetUsername("unused").
		SetPassword(password).
		SetTLSConfig(e.tls).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).
		SetKeepAlive(60 * time.Second).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		})
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func (e *env) connect(id string, k devKey) *client {
	e.t.Helper()
	return testutil.Must(e.dial(clientID(id), k.jwt(e.t)))
}

// connectPlain is connect over plain MQTT.
func (e *env) connectPlain(id string, k devKey) *client {
	e.t.Helper()
	return testutil.Must(e.dialBroker("tcp://"+e.plainAddr, clientID(id), k.jwt(e.t)))
}

func wait(t testing.TB, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("MQTT operation timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

func (e *env) device(id string) *store.Device {
	e.t.Helper()
	return testutil.Must(e.st.GetDevice(context.Background(), store.DeviceRef{Registry: regKey, ID: id}))
}

// lastNotification returns the last stream message on a Pub/Sub topic.
func (e *env) lastNotification(topic string) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js, err := jetstream.New(e.bus.Conn())
	if err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, "PASSERELLE_PUBSUB")
	if err != nil {
		return nil, err
	}
	subj, err := bus.TopicSubject(topic)
	if err != nil {
		return nil, err
	}
	return s.GetLastMsgForSubject(ctx, subj)
}

// received collects messages of a subscription.
type received struct {
	ch chan paho.Message
}

func newReceived() *received { return &received{ch: make(chan paho.Message, 100)} }

func (r *received) handler(_ paho.Client, m paho.Message) { r.ch <- m }

func (r *received) next(t testing.TB) paho.Message {
	t.Helper()
	select {
	case m := <-r.ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10 s")
		return nil
	}
}

func lostWithin(t testing.TB, c *client, d time.Duration) {
	t.Helper()
	select {
	case <-c.lost:
	case <-time.After(d):
		t.Fatalf("connection still up after %s", d)
	}
}

// storedEvents reads the first n events of eventsTopic from the stream,
// in order.
func (e *env) storedEvents(t testing.TB, n int) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := testutil.Must(jetstream.New(e.bus.Conn()))
	subj := testutil.Must(bus.TopicSubject(eventsTopic))
	cons := testutil.Must(js.OrderedConsumer(ctx, "PASSERELLE_PUBSUB", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}}))
	var out [][]byte
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		k := len(out)
		for m := range batch.Messages() {
			out = append(out, m.Data())
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
		if len(out) == k {
			t.Fatalf("%d of %d events stored", k, n)
		}
	}
	return out
}
