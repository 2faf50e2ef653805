package hub_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/cluster"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
	"github.com/passerelle-iot/passerelle/services/hub"
	"github.com/passerelle-iot/passerelle/services/manager"
)

// clusterEnv is the manager, one bridge (plain MQTT) whose connections
// are watched by MQTT client id, and hub replicas: each its own NATS
// connection, leases, members, pool and server, all sharing one key store
// folder, each dialing the bridge through a proxy of its own that a test
// can cut (as the kernel closes a killed process's sockets).
type clusterEnv struct {
	t         testing.TB
	log       *slog.Logger
	natsURL   string
	admin     *cloudiot.Service
	prov      *hub.ManagerProvisioner
	bus       *bus.Bus // the embedded NATS: the manager's and the bridge's
	closeIdle func()   // closes the admin API clients' idle connections
	bridge    string
	conns     *mqttConns
	clockSkew *atomic.Int64
	keysDir   string
}

// replica is one hub replica of a clusterEnv.
type replica struct {
	name    string
	addr    string
	members *cluster.Members
	pool    *hub.Pool
	srv     *hub.Server
	client  hubv1.HubClient
	bus     *bus.Bus
	proxy   *cutProxy
	stop    func() // ends Serve: a drain when the replica has one, then a stop
}

type replicaConfig struct {
	drain   time.Duration // hub.WithDrain
	settle  time.Duration // Replicas.Settle; default 1 s
	keysDir string        // a key store of its own; default: the shared one
	// advertise replaces the replica's address in its membership (a
	// wrong --advertise-addr).
	advertise string
}

func newClusterEnv(t testing.TB, bridgeOpts ...bridge.Option) *clusterEnv {
	t.Helper()
	ctx := context.Background()
	log := testutil.Logger(t)
	st := testutil.Must(sqlstore.Open(ctx, log, t.TempDir()+"/db.sqlite"))
	t.Cleanup(func() { _ = st.Close() })
	b := testutil.Must(bus.Open(ctx, log, bus.Options{DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0"}))
	t.Cleanup(func() { _ = b.Close() })

	mlis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	m := manager.New(log, st, manager.WithInsecureNoAuth(), manager.WithBus(b))
	serve(t, func(ctx context.Context) error { return m.Serve(ctx, mlis) })
	adminHTTP, provHTTP := newHTTPClient(), newHTTPClient()
	t.Cleanup(adminHTTP.CloseIdleConnections)
	t.Cleanup(provHTTP.CloseIdleConnections)
	endpoint := option.WithEndpoint("http://" + mlis.Addr().String() + "/")

	e := &clusterEnv{
		t: t, log: log, natsURL: b.Server().ClientURL(), bus: b,
		closeIdle: func() { adminHTTP.CloseIdleConnections(); provHTTP.CloseIdleConnections() },
		admin:     testutil.Must(cloudiot.NewService(ctx, endpoint, option.WithHTTPClient(adminHTTP))),
		prov:      hub.NewManagerProvisioner(testutil.Must(cloudiot.NewService(ctx, endpoint, option.WithHTTPClient(provHTTP)))),
		conns:     newMQTTConns(),
		clockSkew: &atomic.Int64{},
		keysDir:   t.TempDir() + "/hub-keys",
	}
	lis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	e.bridge = lis.Addr().String()
	br := bridge.New(log, st, b, append([]bridge.Option{bridge.WithClock(func() time.Time { return time.Now().Add(time.Duration(e.clockSkew.Load())) })}, bridgeOpts...)...)
	serve(t, func(ctx context.Context) error { return br.Serve(ctx, sniffListener{lis, e.conns}) })
	return e
}

// addReplica starts a hub replica named name (its instance id).
func (e *clusterEnv) addReplica(name string, cfg replicaConfig) *replica {
	t := e.t
	t.Helper()
	ctx := context.Background()
	log := e.log.With("replica", name)
	b := testutil.Must(bus.Open(ctx, log, bus.Options{URL: e.natsURL, Name: name}))
	t.Cleanup(func() { _ = b.Close() })
	js := testutil.Must(jetstream.New(b.Conn()))
	leases := cluster.NewLeases(js, log, name, 1)
	t.Cleanup(leases.Close)
	members := cluster.NewMembers(js, log, name, 1)
	t.Cleanup(members.Close)
	if cfg.keysDir == "" {
		cfg.keysDir = e.keysDir
	}
	keys := testutil.Must(hub.NewKeys("", cfg.keysDir))
	proxy := newCutProxy(t, e.bridge)
	lis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	if cfg.settle == 0 {
		cfg.settle = time.Second
	}
	pool := hub.NewPool(log, proxy.addr(), keys, hub.WithGatewayCheck(e.prov),
		hub.WithBackoff(10*time.Millisecond, 200*time.Millisecond), hub.WithIdleTimeout(200*time.Millisecond),
		hub.WithReplicas(hub.Replicas{Leases: leases, Members: members, Advertise: cmp.Or(cfg.advertise, lis.Addr().String()), Settle: cfg.settle}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := pool.Close(ctx); err != nil {
			t.Errorf("%s: pool.Close: %v", name, err)
		}
	})
	srv := hub.NewServer(log, hub.NewService(log, pool, keys, e.prov), hub.WithInsecureNoAuth(),
		hub.WithShutdownTimeout(100*time.Millisecond), hub.WithDrain(cfg.drain))
	stop := start(t, func(ctx context.Context) error { return srv.Serve(ctx, lis) })
	conn := testutil.Must(grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(hub.ServiceConfig)))
	t.Cleanup(func() { _ = conn.Close() })
	return &replica{name: name, addr: lis.Addr().String(), members: members, pool: pool, srv: srv, client: hubv1.NewHubClient(conn), bus: b, proxy: proxy, stop: stop}
}

// waitMembers waits until each of rs sees all of rs live: until then a
// replica may take a gateway another is preferred for.
func waitMembers(t testing.TB, rs ...*replica) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() error {
		for _, r := range rs {
			live := map[string]bool{}
			for _, m := range r.members.Live() {
				live[m.Instance] = true
			}
			for _, o := range rs {
				if !live[o.name] {
					return fmt.Errorf("%s does not see %s yet", r.name, o.name)
				}
			}
		}
		return nil
	})
}

// kill stops r the way SIGKILL would, as far as the others can tell: its
// MQTT connections drop, its NATS connection closes (nothing released,
// leases left to lapse) and its gRPC server stops at once.
func (r *replica) kill() {
	r.proxy.cut()
	r.bus.Conn().Close()
	r.stop()
}

// connected reports whether r's pool has gateway connected.
func (r *replica) connected(gateway string) bool {
	v, ok := r.pool.Connection(gateway)
	return ok && v.State == hub.StateConnected
}

// waitOwner waits until exactly one of rs has gateway connected and
// returns it.
func waitOwner(t testing.TB, gateway string, timeout time.Duration, rs ...*replica) *replica {
	t.Helper()
	var owner *replica
	testutil.WaitFor(t, timeout, func() error {
		owner = nil
		for _, r := range rs {
			if r.connected(gateway) {
				if owner != nil {
					return fmt.Errorf("%s and %s both have %s connected", owner.name, r.name, gateway)
				}
				owner = r
			}
		}
		if owner == nil {
			return fmt.Errorf("no replica has %s connected", gateway)
		}
		return nil
	})
	return owner
}

// mqttConns watches the bridge's connections by MQTT client id (a
// gateway's is its resource name): how many are open at once.
type mqttConns struct {
	mu       sync.Mutex
	open     map[string]int
	most     map[string]int
	connects map[string]int
	closedAt map[string]time.Time // the last close
	gaps     map[string][]time.Duration
	history  map[string][]string // opens and closes, for failures
}

func newMQTTConns() *mqttConns {
	return &mqttConns{open: map[string]int{}, most: map[string]int{}, connects: map[string]int{},
		closedAt: map[string]time.Time{}, gaps: map[string][]time.Duration{}, history: map[string][]string{}}
}

func (m *mqttConns) opened(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.open[id]++
	m.connects[id]++
	m.history[id] = append(m.history[id], time.Now().Format("15:04:05.000000")+" open")
	m.most[id] = max(m.most[id], m.open[id])
	if at, ok := m.closedAt[id]; ok && m.open[id] == 1 {
		m.gaps[id] = append(m.gaps[id], time.Since(at))
	}
}

func (m *mqttConns) closed(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.open[id]--
	m.closedAt[id] = time.Now()
	m.history[id] = append(m.history[id], time.Now().Format("15:04:05.000000")+" close")
}

// atOnce returns the most connections of id the bridge had open at once,
// and how many it accepted in all.
func (m *mqttConns) atOnce(id string) (most, connects int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.most[id], m.connects[id]
}

// lastGap is the time between the last close of id's connection and the
// connect after it.
func (m *mqttConns) lastGap(id string) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.gaps[id]
	if len(g) == 0 {
		return 0
	}
	return g[len(g)-1]
}

// checkOnce fails t when the bridge ever had gateway connected twice at once.
func (m *mqttConns) checkOnce(t testing.TB, gateway string) {
	t.Helper()
	most, connects := m.atOnce(gateway)
	if most > 1 {
		m.mu.Lock()
		h := m.history[gateway]
		m.mu.Unlock()
		t.Errorf("the bridge had %s connected %d times at once (%d connects): %v", gateway, most, connects, h)
	}
}

// sniffListener hands the bridge connections that read the client id of
// their CONNECT packet and tell mqttConns when they open and close.
type sniffListener struct {
	net.Listener
	m *mqttConns
}

func (l sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, m: l.m}, nil
}

type sniffConn struct {
	net.Conn
	m    *mqttConns
	buf  []byte
	id   string
	done bool // the CONNECT was read (or will never be)
	end  sync.Once
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.done && n > 0 {
		c.buf = append(c.buf, p[:n]...)
		if id, ok := connectClientID(c.buf); ok {
			c.id, c.done, c.buf = id, true, nil
			c.m.opened(id)
		} else if len(c.buf) > 4096 {
			c.done, c.buf = true, nil
		}
	}
	if err != nil {
		c.ended()
	}
	return n, err
}

func (c *sniffConn) Close() error {
	c.ended()
	return c.Conn.Close()
}

func (c *sniffConn) ended() {
	c.end.Do(func() {
		if c.id != "" {
			c.m.closed(c.id)
		}
	})
}

// connectClientID reads the client id of an MQTT 3.1.1 CONNECT packet at
// the start of b; ok is false until b holds it.
func connectClientID(b []byte) (string, bool) {
	if len(b) < 2 || b[0]>>4 != 1 {
		return "", false
	}
	i := 1
	for shift := 0; ; shift += 7 { // remaining length
		if i >= len(b) || shift > 21 {
			return "", false
		}
		c := b[i]
		i++
		if c&0x80 == 0 {
			break
		}
	}
	field := func() (string, bool) {
		if len(b) < i+2 {
			return "", false
		}
		n := int(b[i])<<8 | int(b[i+1])
		if len(b) < i+2+n {
			return "", false
		}
		s := string(b[i+2 : i+2+n])
		i += 2 + n
		return s, true
	}
	if _, ok := field(); !ok { // protocol name
		return "", false
	}
	i += 4 // level, flags, keep alive
	return field()
}

// cutProxy forwards TCP connections to a target until cut: then it closes
// every connection and refuses new ones.
type cutProxy struct {
	lis    net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	isCut bool
}

func newCutProxy(t testing.TB, target string) *cutProxy {
	p := &cutProxy{lis: testutil.Must(net.Listen("tcp", "127.0.0.1:0")), target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *cutProxy) addr() string { return p.lis.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.isCut {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		// Each way ends with a half-close, as a TCP load balancer does:
		// the hub's FIN reaches the bridge, and the bridge's close the hub.
		var left atomic.Int32
		left.Store(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			if left.Add(-1) == 0 {
				dst.Close()
				src.Close()
			}
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

// cut closes the proxy and every connection through it.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isCut {
		return
	}
	p.isCut = true
	p.lis.Close()
	for c := range p.conns {
		c.Close()
	}
}

// natsServer is a NATS server with JetStream on a fixed port that a test
// can stop and start again on the same storage (an outage).
type natsServer struct {
	t    testing.TB
	opts *server.Options
	srv  *server.Server
	url  string
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	lis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	n := &natsServer{t: t, opts: &server.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true}}
	n.start()
	n.url = n.srv.ClientURL()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	var err error
	// The port was just freed: listening again on it may take a moment.
	testutil.WaitFor(n.t, 10*time.Second, func() error {
		if n.srv, err = server.NewServer(n.opts); err != nil {
			return err
		}
		n.srv.Start()
		if !n.srv.ReadyForConnections(2 * time.Second) {
			n.srv.Shutdown()
			return errors.New("NATS did not start")
		}
		return nil
	})
}

func (n *natsServer) stop() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}
