package hub_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/devca"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
	"github.com/passerelle-iot/passerelle/services/hub"
	"github.com/passerelle-iot/passerelle/services/manager"
)

// env is the manager, the bridge (TLS) and the hub, in process.
type env struct {
	admin     *cloudiot.Service
	hub       hubv1.HubClient
	pool      *hub.Pool
	hubAddr   string
	keysDir   string        // the hub's key store
	accepts   *atomic.Int64 // connections the bridge accepted (MQTT connects tried)
	clockSkew *atomic.Int64 // added to the bridge's clock, in ns
	// provHTTP is the hub provisioner's HTTP client: its idle keep-alive
	// connections (and their goroutines) are closed by closeIdle.
	provHTTP, adminHTTP *http.Client

	t          *testing.T
	log        *slog.Logger
	st         store.Store
	bus        *bus.Bus
	bridgeAddr string
	bridgeTLS  *tls.Config
	bridgeOpts []bridge.Option
	stopBridge func()
}

type envConfig struct {
	bridgeOpts []bridge.Option
	poolOpts   []hub.PoolOption
	serverOpts []hub.ServerOption // replaces WithInsecureNoAuth when set
}

// start runs f until stop (or the test's end), then cancels it and waits.
func start(t testing.TB, f func(ctx context.Context) error) (stop func()) {
	return testutil.Serve(t, f)
}

// serve runs f until the test ends, then cancels it and waits.
func serve(t testing.TB, f func(ctx context.Context) error) { start(t, f) }

// newHTTPClient is an HTTP client with its own connection pool, so a
// test can close its idle connections.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
}

func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	ctx := context.Background()
	log := testutil.Logger(t)
	st := testutil.Must(sqlstore.Open(ctx, log, t.TempDir()+"/db.sqlite"))
	t.Cleanup(func() { _ = st.Close() })
	b := testutil.Must(bus.Open(ctx, log, bus.Options{DataDir: t.TempDir()}))
	t.Cleanup(func() { _ = b.Close() })

	// The manager.
	mlis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	m := manager.New(log, st, manager.WithInsecureNoAuth(), manager.WithBus(b))
	serve(t, func(ctx context.Context) error { return m.Serve(ctx, mlis) })
	adminHTTP, provHTTP := newHTTPClient(), newHTTPClient()
	endpoint := option.WithEndpoint("http://" + mlis.Addr().String() + "/")
	admin := testutil.Must(cloudiot.NewService(ctx, endpoint, option.WithHTTPClient(adminHTTP)))
	provSvc := testutil.Must(cloudiot.NewService(ctx, endpoint, option.WithHTTPClient(provHTTP)))

	// The bridge, over TLS, with a clock tests may move forward (the
	// bridge takes one state per second per device).
	skew := &atomic.Int64{}
	serverTLS, clientTLS := testTLS()
	e := &env{
		admin: admin, clockSkew: skew, accepts: &atomic.Int64{}, provHTTP: provHTTP, adminHTTP: adminHTTP,
		t: t, log: log, st: st, bus: b, bridgeTLS: serverTLS,
		bridgeOpts: append([]bridge.Option{bridge.WithClock(func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })}, cfg.bridgeOpts...),
	}
	e.startBridge()

	// The hub.
	e.keysDir = t.TempDir() + "/hub-keys"
	keys := testutil.Must(hub.NewKeys("", e.keysDir))
	prov := hub.NewManagerProvisioner(provSvc)
	pool := hub.NewPool(log, e.bridgeAddr, keys, append([]hub.PoolOption{hub.WithBridgeTLS(clientTLS), hub.WithGatewayCheck(prov)}, cfg.poolOpts...)...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := pool.Close(ctx); err != nil {
			t.Errorf("pool.Close: %v", err)
		}
	})
	svc := hub.NewService(log, pool, keys, prov)
	hlis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	sopts := cfg.serverOpts
	if sopts == nil {
		sopts = []hub.ServerOption{hub.WithInsecureNoAuth()}
	}
	hs := hub.NewServer(log, svc, append(sopts, hub.WithShutdownTimeout(time.Second))...)
	serve(t, func(ctx context.Context) error { return hs.Serve(ctx, hlis) })
	conn := testutil.Must(grpc.NewClient(hlis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())))
	t.Cleanup(func() { _ = conn.Close() })
	e.hub, e.pool, e.hubAddr = hubv1.NewHubClient(conn), pool, hlis.Addr().String()
	return e
}

// startBridge starts a bridge on the env's store and bus, on the port of
// the previous one when there was one.
func (e *env) startBridge() {
	e.t.Helper()
	addr := e.bridgeAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	// The port was just freed: listening again on it may take a moment.
	testutil.WaitFor(e.t, 5*time.Second, func() (err error) {
		lis, err = net.Listen("tcp", addr)
		return err
	})
	e.bridgeAddr = lis.Addr().String()
	br := bridge.New(e.log, e.st, e.bus, e.bridgeOpts...)
	lis = countingListener{lis, e.accepts}
	e.stopBridge = start(e.t, func(ctx context.Context) error { return br.Serve(ctx, tls.NewListener(lis, e.bridgeTLS)) })
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// closeIdle closes the idle keep-alive connections of the env's HTTP
// clients, whose goroutines would otherwise stay for 90 s.
func (e *env) closeIdle() {
	e.provHTTP.CloseIdleConnections()
	e.adminHTTP.CloseIdleConnections()
}

// testTLS makes a CA and a server certificate for 127.0.0.1.
func testTLS() (server, client *tls.Config) {
	server, client, err := devca.Ephemeral("127.0.0.1")
	if err != nil {
		panic(err)
	}
	return server, client
}
