package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// KeyResolver returns a gateway's signing key (Keys implements it).
type KeyResolver interface {
	Get(name string) (*GatewayKey, error)
}

// Pool holds one MQTT connection per gateway, shared by every holder of
// that gateway. It is safe for concurrent use.
type Pool struct {
	log    *slog.Logger
	broker string
	keys   KeyResolver
	o      poolOptions
	tel    *poolTel

	// ctx ends with Close: holders stop following their gateways.
	ctx    context.Context
	cancel context.CancelFunc

	rep *replicaSet // nil: the pool is alone

	mu     sync.Mutex
	gws    map[string]*gw
	closed bool
	// deleted: gateways dropped as deleted from their registry, and when,
	// so that a call for one answers ErrGatewayDeleted rather than "no
	// key" once its key is forgotten (kept for deletedMemory).
	deleted map[string]time.Time
	wg      sync.WaitGroup // every goroutine the pool starts

	// goMu guards goClosed, for goOwned: a lock of its own, taken under
	// any other (a holder may start a goroutine under a gateway's lock).
	goMu     sync.Mutex
	goClosed bool
}

// NewPool returns a pool connecting to the bridge at addr (host:port),
// over TLS when WithBridgeTLS is given.
func NewPool(logger *slog.Logger, addr string, keys KeyResolver, opts ...PoolOption) *Pool {
	o := defaultPoolOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.renewBefore > o.tokenLifetime/2 {
		o.renewBefore = o.tokenLifetime / 2
	}
	scheme := "tcp://"
	if o.tls != nil {
		scheme = "ssl://"
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		log: logger, broker: scheme + addr, keys: keys, o: o,
		tel: newPoolTel(o.tracerProvider, o.meterProvider),
		ctx: ctx, cancel: cancel,
		gws: map[string]*gw{},
	}
	if o.replicas != nil {
		p.rep = newReplicaSet(p, *o.replicas)
		p.rep.start()
	}
	return p
}

// goOwned runs f on a goroutine the pool waits for in Close; it reports
// false, running nothing, once the pool is closed.
func (p *Pool) goOwned(f func()) bool {
	p.goMu.Lock()
	defer p.goMu.Unlock()
	if p.goClosed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// admit says whether this pool may open gateway's connection (under
// p.mu): always alone, only while it holds the gateway's lease in a
// cluster.
func (p *Pool) admit(gateway string) error {
	if p.rep == nil {
		return nil
	}
	return p.rep.admit(gateway)
}

// ready is nil while the pool can serve: always alone; in a cluster, while
// it can reach NATS.
func (p *Pool) ready() error {
	if p.rep == nil {
		return nil
	}
	return p.rep.ready()
}

// drain hands the gateways over to other replicas (nothing alone).
func (p *Pool) drain(ctx context.Context, period time.Duration) {
	if p.rep != nil {
		p.rep.drain(ctx, period)
	}
}

// stoppingLocked is told (under the gateway's lock) that gateway's
// connection stops for good.
func (p *Pool) stoppingLocked(gateway string) {
	if p.rep != nil {
		p.rep.stopping(gateway)
	}
}

// gatewayEnded is told once gateway's connection is closed and its run
// loop about to return.
func (p *Pool) gatewayEnded(gateway string) {
	if p.rep != nil {
		p.rep.ended(gateway)
	}
}

// Event is something that happened to a held device, for Attach streams.
type Event struct {
	// Reattached: the device was attached again after a reconnect (or
	// after the bridge detached it for an error); Reconnects is the
	// connection's reconnect count.
	Reattached bool
	Reconnects int64
	// Error is a gateway error about the device.
	Error *GatewayError
	// Lost ends the hold: the device could not be attached again.
	Lost error
}

// localHold is a Holder's hold on a connection of this pool: it keeps the
// connection open and, for a device, the device attached.
type localHold struct {
	g        *gw
	d        *device // nil: the gateway itself
	owner    *Holder
	release1 sync.Once
}

// holdLocal opens (or shares) the connection of h's gateway in this pool
// and, for a device, attaches it (refcounted) with the device JWT
// authorization (may be empty). It returns once the connection is up and
// the bridge has accepted the attach. In a cluster, the replica set must
// have admitted the gateway (this replica holds its lease).
func (p *Pool) holdLocal(ctx context.Context, h *Holder, authorization string) (*localHold, error) {
	lh := &localHold{owner: h}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	g := p.gws[h.gateway]
	if g == nil {
		if err := p.admit(h.gateway); err != nil {
			p.mu.Unlock()
			return nil, err
		}
		key, err := p.keys.Get(h.gateway)
		if err != nil {
			if at, ok := p.deleted[h.gateway]; ok && errors.Is(err, ErrNoKey) {
				p.mu.Unlock()
				return nil, fmt.Errorf("%w: %s (at %s); the hub dropped its connection and forgot its key", ErrGatewayDeleted, h.gateway, at.UTC().Format(time.RFC3339))
			}
			p.mu.Unlock()
			return nil, err
		}
		delete(p.deleted, h.gateway) // made again (CreateGateway)
		g = newGW(p, h.gateway, h.gatewayID, key)
		p.gws[h.gateway] = g
		p.wg.Add(1)
		go g.run()
	}
	g.mu.Lock()
	if h.deviceID != "" {
		d := g.devices[h.deviceID]
		if d == nil {
			if len(g.devices) >= p.o.maxAttached {
				g.mu.Unlock()
				p.mu.Unlock()
				return nil, fmt.Errorf("%w (%d)", ErrTooManyDevices, p.o.maxAttached)
			}
			d = &device{id: h.deviceID, holders: map[*localHold]struct{}{}, states: newStatePacer()}
			g.devices[h.deviceID] = d
		}
		if authorization != "" {
			d.auth = authorization
		}
		d.holders[lh] = struct{}{}
		lh.d = d
	}
	g.holders++
	if g.idle != nil {
		g.idle.Stop()
		g.idle = nil
	}
	g.mu.Unlock()
	p.mu.Unlock()
	lh.g = g
	if _, _, err := g.ready(ctx, lh.d); err != nil {
		lh.release()
		return nil, err
	}
	return lh, nil
}

// setAuthorization replaces the device JWT used on the next re-attach.
func (h *localHold) setAuthorization(token string) {
	if h.d == nil || token == "" {
		return
	}
	h.g.mu.Lock()
	h.d.auth = token
	h.g.mu.Unlock()
}

// release lets the device and the connection go: the device is detached
// when its last holder goes, the connection closed after the idle timeout
// when its last holder goes. It is idempotent.
func (h *localHold) release() {
	h.release1.Do(func() { h.g.release(h) })
}

// abandon is release: a publish in flight on a moved gateway fails with
// errMoved by itself.
func (h *localHold) abandon() { h.release() }

// publish publishes payload QoS 1 to the held device's topic suffix and
// returns once the bridge has acknowledged it, across reconnects.
func (h *localHold) publish(ctx context.Context, suffix string, payload []byte) error {
	return h.g.publish(ctx, h.d, suffix, payload)
}

// Config is one configuration delivery.
type Config struct {
	Data        []byte
	ReceiveTime time.Time
	// Version is the config's version when the hub replica that holds the
	// gateway's connection told it (0: unknown; MQTT carries none).
	Version int64
}

// Command is one command delivery.
type Command struct {
	SubFolder   string
	Data        []byte
	ReceiveTime time.Time
}

// GatewayView is one gateway connection in Pool.View.
type GatewayView struct {
	Gateway     string
	State       ConnState
	Reconnects  int64
	ConnectTime time.Time
	TokenExpiry time.Time
	Holders     int
	Devices     []DeviceView
}

// DeviceView is one attached device in GatewayView.
type DeviceView struct {
	ID       string
	Holders  int
	Attached bool
}

// View returns the open gateway connections, sorted by gateway.
func (p *Pool) View() []GatewayView {
	p.mu.Lock()
	gws := make([]*gw, 0, len(p.gws))
	for _, g := range p.gws {
		gws = append(gws, g)
	}
	p.mu.Unlock()
	out := make([]GatewayView, 0, len(gws))
	for _, g := range gws {
		out = append(out, g.view())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Gateway < out[j].Gateway })
	return out
}

// Connection returns the view of one gateway's connection; ok is false
// when the pool holds none.
func (p *Pool) Connection(gateway string) (GatewayView, bool) {
	p.mu.Lock()
	g := p.gws[gateway]
	p.mu.Unlock()
	if g == nil {
		return GatewayView{}, false
	}
	return g.view(), true
}

// Close detaches every device, closes every gateway connection and waits
// for the pool's goroutines, or for ctx. Calls still holding devices fail
// with ErrClosed. In a cluster it releases the gateways' leases, so other
// replicas take them at once, and leaves the members. It is idempotent.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.cancel()
		for _, g := range p.gws {
			g.mu.Lock()
			g.shutdownLocked(ErrClosed)
			g.mu.Unlock()
		}
	}
	p.mu.Unlock()
	if p.rep != nil {
		p.rep.closeRemotes(ErrClosed)
	}
	p.goMu.Lock()
	p.goClosed = true
	p.goMu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if p.rep != nil {
		p.rep.close(ctx)
	}
	return nil
}

// errConnLost: the connection ended under a call; it waits for the next.
var errConnLost = errors.New("connection lost")
