package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// DeviceStore is what the bridge needs from the registry data; a
// store.Store provides all of it. RecordActivity carries the batched
// server-set fields and config acknowledgements.
type DeviceStore interface {
	GetRegistry(ctx context.Context, key store.RegistryKey) (*store.Registry, error)
	GetDevice(ctx context.Context, ref store.DeviceRef) (*store.Device, error)
	RecordActivity(ctx context.Context, acts []store.Activity) error
	ListDevices(ctx context.Context, q store.DeviceQuery) ([]*store.Device, error)
	AddState(ctx context.Context, ref store.DeviceRef, s store.DeviceState) error
}

// ErrServing is returned by Serve when it is called a second time.
var ErrServing = errors.New("bridge: Serve was already called")

// Bridge is the MQTT bridge. Create it with New and run it with Serve.
type Bridge struct {
	log   *slog.Logger
	st    DeviceStore
	bus   *bus.Bus
	opts  options
	keys  *deviceauth.KeyCache
	jwt   deviceauth.JWTPolicy
	count atomic.Int64 // connections held, all listeners
	parkN atomic.Int64 // of which parked
	serve atomic.Bool
	phase atomic.Int32 // phaseNew, phaseServing...

	ctx    context.Context // ends when shutdown starts; parent of store calls
	cancel context.CancelFunc

	mu      sync.RWMutex
	conns   map[*conn]struct{} // authenticated connections
	byID    map[string]*conn   // client id -> the connection serving it
	holders map[uint64][]*conn // device numId -> connections serving it: almost always one

	regs *registryCache

	lim            limits
	tel            *instruments
	msgRateMsg     string // lastErrorStatus messages of the rate limits
	byteRateMsg    string
	errByteRateOut error

	fields   *fields
	httpLim  *httpLimits    // the HTTP bridge's per-device rates
	cfgWaits *configWaiters // the HTTP bridge's getConfig waits
	sem      chan struct{}  // bounds background work
	wg       sync.WaitGroup // background work and loops
	flushers goGroup        // PUBACK writers (pubacks)
	// events counts the QoS 1 events sent to the stream and not answered
	// yet (the bus may be sending them again through a stream leader
	// election): Serve waits for them once its context is cancelled,
	// which ends their resends.
	events sync.WaitGroup
}

// New returns a bridge over st and b. b may be nil in tests that do not
// need telemetry or commands.
func New(logger *slog.Logger, st DeviceStore, b *bus.Bus, opts ...Option) *Bridge {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.keyCache == nil {
		o.keyCache = deviceauth.NewKeyCache(0)
	}
	br := &Bridge{
		log: logger, st: st, bus: b, opts: o, keys: o.keyCache,
		jwt:      deviceauth.JWTPolicy{Skew: o.jwtSkew},
		conns:    make(map[*conn]struct{}),
		byID:     make(map[string]*conn),
		holders:  make(map[uint64][]*conn),
		regs:     newRegistryCache(o.registryTTL),
		fields:   newFields(),
		httpLim:  newHTTPLimits(),
		cfgWaits: newConfigWaiters(),
		sem:      make(chan struct{}, max(o.workers, 1)),
	}
	br.lim = newLimits(&o)
	br.msgRateMsg = fmt.Sprintf("more than %g messages per second on one connection", o.msgRate)
	br.byteRateMsg = fmt.Sprintf("more than %d bytes per second from the device", o.byteRate)
	br.errByteRateOut = fmt.Errorf("the device's outgoing limit of %d bytes per second is reached: retry later", o.byteRate)
	tel, err := newInstruments(o.tracerProvider, o.meterProvider)
	if err != nil {
		// Only a bad instrument name fails; the bridge works without.
		logger.Warn("bridge: metrics off", "err", err)
		tel, _ = newInstruments(tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider())
	}
	br.tel = tel
	br.st = newTimedStore(st, tel.storeDur)
	br.ctx, br.cancel = context.WithCancel(context.Background())
	return br
}

// Connections returns the number of connections held (including those
// that have not sent CONNECT yet).
func (b *Bridge) Connections() int { return int(b.count.Load()) }

// Serve runs the bridge on the given listeners until ctx ends, then shuts
// down: it stops accepting, disconnects every client, waits for every
// goroutine it started, writes the pending server-set fields, and returns
// nil. TLS is the caller's: pass tls.NewListener(ln, cfg) for MQTT over
// TLS. Serve closes the listeners.
func (b *Bridge) Serve(ctx context.Context, lis ...net.Listener) error {
	if !b.serve.CompareAndSwap(false, true) {
		return ErrServing
	}
	defer b.cancel()
	defer b.phase.Store(phaseStopped)
	if len(lis) == 0 {
		return errors.New("bridge: Serve needs at least one listener")
	}
	b.opts.maxConns = b.capUnderFileLimit(b.opts.maxConns)
	adm := newAdmission(&b.opts, &b.count, b.log, b.tel)
	ls := make([]*listener, len(lis))
	for i, ln := range lis {
		ls[i] = newListener("mqtt-"+strconv.Itoa(i), ln, b.log, adm, &b.opts)
		ls[i].parkedCount = b.countParked
	}

	var stopAnn func()
	if b.bus != nil {
		stop, err := b.bus.SubscribeAnnouncements(b.onAnnouncement)
		if err != nil {
			for _, ln := range lis {
				_ = ln.Close()
			}
			return fmt.Errorf("bridge: subscribing to announcements: %w", err)
		}
		stopAnn = stop
	}
	loopsDone := make(chan struct{})
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.loop(loopsDone)
	}()

	for _, l := range ls {
		go l.serve(b.serveConn)
		b.log.Info("bridge: serving MQTT", "addr", l.Address(), "max_connections", adm.maxConns,
			"max_pending", adm.maxPending, "max_pending_per_address", adm.perAddr)
	}
	b.phase.Store(phaseServing)

	<-ctx.Done()
	if b.opts.drain > 0 {
		b.drain(ls)
	}
	b.phase.Store(phaseStopped)
	b.log.Info("bridge: shutting down", "connections", b.count.Load())
	if stopAnn != nil {
		stopAnn() // no new work from announcements
	}
	for _, l := range ls {
		l.close() // stops accepting, closes every connection
	}
	for _, l := range ls {
		l.wait() // every connection torn down
	}
	b.cancel()      // the bus sends no event again
	b.events.Wait() // their answers, which may start flushers
	b.flushers.stop()
	close(loopsDone)
	b.wg.Wait()
	// Last flush with a fresh context: the fields of the connections just
	// closed are worth keeping.
	fctx, cancel := context.WithTimeout(context.Background(), b.opts.storeTimeout)
	b.fields.flush(fctx, b.st, b.opts.storeTimeout, b.log.Warn)
	cancel()
	return nil
}

// countParked follows the connections the listeners' parkers hold.
func (b *Bridge) countParked(delta int64) {
	b.parkN.Add(delta)
	b.tel.parkedConns(delta)
}

// parked returns how many connections the parkers hold.
func (b *Bridge) parked() int { return int(b.parkN.Load()) }

// loop runs the periodic work: the field flush and the QoS 1 config
// resends.
func (b *Bridge) loop(done <-chan struct{}) {
	flush := time.NewTicker(b.opts.flushInterval)
	defer flush.Stop()
	resend := time.NewTicker(max(b.opts.configResend/2, 10*time.Millisecond))
	defer resend.Stop()
	for {
		select {
		case <-done:
			return
		case <-flush.C:
			b.fields.flush(b.ctx, b.st, b.opts.storeTimeout, b.log.Warn)
		case <-resend.C:
			b.resendConfigs()
		}
	}
}

// goWork runs f on a bounded pool; it waits for a slot (or shutdown).
func (b *Bridge) goWork(f func()) {
	select {
	case b.sem <- struct{}{}:
	case <-b.ctx.Done():
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() { <-b.sem }()
		f()
	}()
}

func (b *Bridge) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, b.opts.storeTimeout)
}

// The index of devices held.

func (b *Bridge) addHolder(numID uint64, c *conn) {
	b.mu.Lock()
	if hs := b.holders[numID]; !slices.Contains(hs, c) {
		b.holders[numID] = append(hs, c)
	}
	b.mu.Unlock()
}

func (b *Bridge) removeHolder(numID uint64, c *conn) {
	b.mu.Lock()
	hs := b.holders[numID]
	if i := slices.Index(hs, c); i >= 0 {
		hs = slices.Delete(hs, i, i+1)
		if len(hs) == 0 {
			delete(b.holders, numID)
		} else {
			b.holders[numID] = hs
		}
	}
	b.mu.Unlock()
}

func (b *Bridge) holdersOf(numID uint64) []*conn {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return slices.Clone(b.holders[numID])
}

func (b *Bridge) allConns() []*conn {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]*conn, 0, len(b.conns))
	for c := range b.conns {
		out = append(out, c)
	}
	return out
}

// onAnnouncement runs on the bus's announcement goroutine: it only hands
// work to the pool.
func (b *Bridge) onAnnouncement(a bus.Announcement) {
	if a.Kind == bus.Resync {
		b.cfgWaits.wake(0, true)
		b.reapplyAllRegistries()
		for _, c := range b.allConns() {
			b.goWork(func() { c.recheckAll() })
		}
		return
	}
	if a.Kind.IsRegistry() {
		b.onRegistryAnnouncement(a)
		return
	}
	b.cfgWaits.wake(a.NumID, false)
	for _, c := range b.holdersOf(a.NumID) {
		b.goWork(func() { c.onDeviceAnnouncement(a) })
	}
}

func (b *Bridge) resendConfigs() {
	cutoff := b.opts.now().Add(-b.opts.configResend)
	for _, c := range b.allConns() {
		if c.hasStaleConfig(cutoff) {
			b.goWork(func() { c.resendConfigs(cutoff) })
		}
	}
}
