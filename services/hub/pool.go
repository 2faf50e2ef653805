package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/resource"
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

	mu     sync.Mutex
	gws    map[string]*gw
	closed bool
	wg     sync.WaitGroup // every goroutine the pool starts
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
	return &Pool{
		log: logger, broker: scheme + addr, keys: keys, o: o,
		tel: newPoolTel(o.tracerProvider, o.meterProvider),
		gws: map[string]*gw{},
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

// Holder keeps a gateway connection open and, for a device, the device
// attached. Release it when done.
type Holder struct {
	g        *gw
	d        *device // nil: the gateway itself
	events   chan Event
	release  sync.Once
	deviceID string // "" for the gateway itself
}

// Hold opens (or shares) the connection of gateway and, when deviceID is
// not empty, attaches the device (refcounted) with the device JWT
// authorization (may be empty). It returns once the connection is up and
// the bridge has accepted the attach.
func (p *Pool) Hold(ctx context.Context, gateway, deviceID, authorization string) (*Holder, error) {
	gdev, err := resource.ParseDevice("gateway", gateway)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, num := gdev.NumID(); num {
		return nil, fmt.Errorf("%w: name the gateway by its id, not its numeric id", ErrInvalid)
	}
	if deviceID != "" && !resource.ValidID(deviceID) {
		return nil, fmt.Errorf("%w: device id %q is invalid", ErrInvalid, deviceID)
	}
	if deviceID == gdev.Device {
		deviceID = ""
	}
	h := &Holder{events: make(chan Event, p.o.eventBuffer), deviceID: deviceID}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	g := p.gws[gateway]
	if g == nil {
		key, err := p.keys.Get(gateway)
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		g = newGW(p, gateway, gdev.Device, key)
		p.gws[gateway] = g
		p.wg.Add(1)
		go g.run()
	}
	g.mu.Lock()
	if deviceID != "" {
		d := g.devices[deviceID]
		if d == nil {
			if len(g.devices) >= p.o.maxAttached {
				g.mu.Unlock()
				p.mu.Unlock()
				return nil, fmt.Errorf("%w (%d)", ErrTooManyDevices, p.o.maxAttached)
			}
			d = &device{id: deviceID, holders: map[*Holder]struct{}{}}
			g.devices[deviceID] = d
		}
		if authorization != "" {
			d.auth = authorization
		}
		d.holders[h] = struct{}{}
		h.d = d
	}
	g.holders++
	if g.idle != nil {
		g.idle.Stop()
		g.idle = nil
	}
	g.mu.Unlock()
	p.mu.Unlock()
	h.g = g
	if _, _, err := g.ready(ctx, h.d); err != nil {
		h.Release()
		return nil, err
	}
	return h, nil
}

// Events returns the holder's events (re-attaches, gateway errors about
// the device). It is bounded: events a slow reader misses are dropped.
func (h *Holder) Events() <-chan Event { return h.events }

// Gateway returns the gateway's resource name.
func (h *Holder) Gateway() string { return h.g.name }

// SetAuthorization replaces the device JWT used on the next re-attach.
func (h *Holder) SetAuthorization(token string) {
	if h.d == nil || token == "" {
		return
	}
	h.g.mu.Lock()
	h.d.auth = token
	h.g.mu.Unlock()
}

// Release lets the device and the connection go: the device is detached
// when its last holder goes, the connection closed after the idle timeout
// when its last holder goes. It is idempotent.
func (h *Holder) Release() {
	h.release.Do(func() { h.g.release(h) })
}

// Publish publishes payload QoS 1 to the held device's topic suffix
// ("state", "events" or "events/{subfolder}") and returns once the
// bridge has acknowledged it. A publish the connection lost before its
// acknowledgement is sent again on the next connection.
func (h *Holder) Publish(ctx context.Context, suffix string, payload []byte) error {
	return h.g.publish(ctx, h.d, suffix, payload)
}

// Config is one configuration delivery.
type Config struct {
	Data        []byte
	ReceiveTime time.Time
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
// with ErrClosed. It is idempotent.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, g := range p.gws {
			g.mu.Lock()
			g.shutdownLocked(ErrClosed)
			g.mu.Unlock()
		}
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errConnLost: the connection ended under a call; it waits for the next.
var errConnLost = errors.New("connection lost")
