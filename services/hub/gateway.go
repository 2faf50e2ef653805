package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// ConnState is the state of a gateway connection.
type ConnState int

// Connection states.
const (
	StateConnecting   ConnState = iota + 1 // first attempt under way
	StateConnected                         // up
	StateReconnecting                      // lost or renewing; backing off
)

// gw is one gateway's connection and everything held on it. run owns the
// MQTT client; everyone else reads it under mu.
type gw struct {
	p    *Pool
	name string // resource name, also the MQTT client id
	id   string // gateway device id
	key  *GatewayKey
	log  *slog.Logger

	ctx    context.Context // cancelled when stop closes
	cancel context.CancelFunc
	stop   chan struct{}

	mu          sync.Mutex
	stopped     bool
	stopErr     error // why: ErrClosed, or ErrGatewayDeleted
	client      paho.Client
	gen         int64 // increases with each connection
	connected   bool
	connDone    chan struct{} // closed when the current connection ends
	state       ConnState
	changed     chan struct{} // closed and replaced on every state change
	refused     error         // the last attempt's CONNACK refusal
	reconnects  int64
	connectTime time.Time
	tokenExp    time.Time
	holders     int
	idle        *time.Timer
	devices     map[string]*device
	topics      map[string]*topicSub
	attachWait  map[string]chan *GatewayError
	token       string
	states      *statePacer // the gateway's own states
}

// device is a device held on a gateway connection.
type device struct {
	id          string
	holders     map[*localHold]struct{}
	auth        string
	attachedGen int64         // the connection it is attached on; 0 none
	counted     bool          // counted in the attached-devices gauge
	attempt     *attempt      // attach under way
	detaching   chan struct{} // non-nil while a detach is being sent
	pubWaiters  map[chan *GatewayError]struct{}
	states      *statePacer
}

// attempt is a single-flight operation (attach, subscribe) that
// concurrent callers wait for.
type attempt struct {
	done chan struct{}
	err  error
}

func newGW(p *Pool, name, id string, key *GatewayKey) *gw {
	ctx, cancel := context.WithCancel(context.Background())
	return &gw{
		p: p, name: name, id: id, key: key,
		log: p.log.With("gateway", name),
		ctx: ctx, cancel: cancel,
		stop:    make(chan struct{}),
		state:   StateConnecting,
		changed: make(chan struct{}),
		devices: map[string]*device{}, topics: map[string]*topicSub{},
		attachWait: map[string]chan *GatewayError{},
		states:     newStatePacer(),
	}
}

func (g *gw) broadcastLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// shutdownLocked ends the run loop; calls still waiting on the gateway
// fail with err.
func (g *gw) shutdownLocked(err error) {
	if g.stopped {
		return
	}
	g.stopped, g.stopErr = true, err
	g.p.stoppingLocked(g.name)
	if g.idle != nil {
		g.idle.Stop()
		g.idle = nil
	}
	close(g.stop)
	g.cancel()
	g.broadcastLocked()
}

// run connects, holds the connection, renews it before the JWT expires and
// reconnects with backoff until stop.
func (g *gw) run() {
	defer g.p.wg.Done()
	defer g.endAll()
	// Before endAll: in a cluster, the lease goes once the connection is
	// closed, so holders that follow the gateway find it free.
	defer g.p.gatewayEnded(g.name)
	backoff := g.p.o.minBackoff
	first := true
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		cl, lost, err := g.connect()
		if err != nil {
			g.p.tel.connectFailed(g.ctx)
			var refusal *refusedError
			isRefusal := errors.As(err, &refusal)
			if isRefusal && g.p.dropIfDeleted(g) {
				return
			}
			g.mu.Lock()
			if isRefusal {
				g.refused = fmt.Errorf("%w: %v", ErrRefused, refusal.err)
			}
			if !first {
				g.state = StateReconnecting
			}
			g.broadcastLocked()
			g.mu.Unlock()
			g.log.Warn("hub: gateway connection failed", "err", err, "retry_in", backoff)
			delay := backoff + rand.N(backoff/2+1)
			backoff = min(2*backoff, g.p.o.maxBackoff)
			t := time.NewTimer(delay)
			select {
			case <-g.stop:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		first = false
		backoff = g.p.o.minBackoff
		g.mu.Lock()
		g.client = cl
		g.gen++
		gen := g.gen
		g.connected = true
		g.connDone = make(chan struct{})
		g.state = StateConnected
		g.refused = nil
		g.connectTime = g.p.o.now()
		if gen > 1 {
			g.reconnects++
		}
		g.broadcastLocked()
		g.mu.Unlock()
		g.p.tel.connected(g.ctx, 1)
		g.log.Debug("hub: gateway connected", "generation", gen)
		if gen > 1 {
			g.p.tel.reconnected(g.ctx)
			g.restoreAll()
		}
		renewIn := g.tokenExp.Sub(g.p.o.now()) - g.p.o.renewBefore
		renew := time.NewTimer(max(renewIn, 0))
		stopping, wasLost := false, false
		select {
		case <-lost:
			wasLost = true
		case <-renew.C:
			g.log.Debug("hub: renewing the gateway JWT")
		case <-g.stop:
			stopping = true
		}
		renew.Stop()
		if stopping && !errors.Is(g.stopReason(), errMoved) {
			// (A gateway that moves keeps its devices attached: the
			// replica that takes it over attaches them again.)
			g.detachAll(cl)
		}
		g.mu.Lock()
		g.connected = false
		g.client = nil
		g.state = StateReconnecting
		close(g.connDone)
		g.broadcastLocked()
		g.mu.Unlock()
		g.p.tel.connected(g.ctx, -1)
		closeClient(cl, 100)
		if stopping {
			return
		}
		if wasLost {
			// The bridge closes the connection of a gateway deleted
			// from its registry: ask before connecting again.
			if g.p.dropIfDeleted(g) {
				return
			}
			g.log.Info("hub: gateway connection lost; reconnecting")
		}
	}
}

// refusedError is a CONNACK refusal: waiting callers fail at once.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }

// connect makes one connection, subscribed to the gateway's errors topic.
func (g *gw) connect() (paho.Client, <-chan struct{}, error) {
	now := g.p.o.now()
	// Sign once per renewal, not per attempt: RS256 costs ~1 ms.
	if g.token == "" || now.After(g.tokenExp.Add(-g.p.o.renewBefore)) {
		tok, err := g.key.Sign(now, now.Add(g.p.o.tokenLifetime))
		if err != nil {
			return nil, nil, err
		}
		g.token, g.tokenExp = tok, now.Add(g.p.o.tokenLifetime)
	}
	lost := make(chan struct{})
	var once sync.Once
	o := paho.NewClientOptions().
		AddBroker(g.p.broker).
		SetClientID(g.name).
		SetUsername("unused").
		SetPassword(g.token).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(g.p.o.connectTimeout).
		SetKeepAlive(g.p.o.keepAlive).
		SetOrderMatters(true).
		SetDefaultPublishHandler(g.route).
		SetCustomOpenConnectionFn(openConn).
		SetConnectionLostHandler(func(paho.Client, error) { once.Do(func() { close(lost) }) })
	if g.p.o.tls != nil {
		o.SetTLSConfig(g.p.o.tls)
	}
	cl := paho.NewClient(o)
	t := cl.Connect()
	if !g.wait(t, g.p.o.connectTimeout+time.Second) {
		closeClient(cl, 0)
		return nil, nil, errors.New("connect timed out")
	}
	if err := t.Error(); err != nil {
		// A refusal fails waiting callers at once, except "server
		// unavailable" (3): the bridge cannot read its database, and the
		// retry will likely get in.
		if ct, ok := t.(*paho.ConnectToken); ok && ct.ReturnCode() != packets.Accepted &&
			ct.ReturnCode() != packets.ErrNetworkError && ct.ReturnCode() != packets.ErrRefusedServerUnavailable {
			return nil, nil, &refusedError{err}
		}
		return nil, nil, err
	}
	// The errors topic first: an attach refusal is only ever told there.
	st := cl.Subscribe("/devices/"+g.id+"/errors", 0, nil)
	if !g.wait(st, g.p.o.connectTimeout) || st.Error() != nil {
		closeClient(cl, 0)
		return nil, nil, fmt.Errorf("subscribe to the errors topic: %v", st.Error())
	}
	return cl, lost, nil
}

// closeClient disconnects cl, giving in-flight packets quiesce ms, and
// returns only once paho's goroutines (comms, router, keepalive) have
// ended, so the run loop that owns the client also owns their end.
// paho's Disconnect returns after its quiesce time while the disconnection
// goes on in the background (and after a lost connection, its cleanup is
// in the background too); a second Disconnect waits for a disconnection
// under way to complete, and returns at once when there is none.
func closeClient(cl paho.Client, quiesce uint) {
	cl.Disconnect(quiesce)
	// Bounded: paho stops its workers in milliseconds; 5 s covers a
	// connect attempt that has to time out first.
	cl.Disconnect(5000)
}

// wait waits for a token, stop or a timeout.
func (g *gw) wait(t paho.Token, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.Done():
		return true
	case <-timer.C:
	case <-g.stop:
	}
	return false
}

// waitConnected returns the current connection, waiting for one.
func (g *gw) waitConnected(ctx context.Context) (paho.Client, int64, chan struct{}, error) {
	for {
		g.mu.Lock()
		if g.stopped {
			err := g.stopErr
			g.mu.Unlock()
			return nil, 0, nil, err
		}
		if g.connected {
			cl, gen, done := g.client, g.gen, g.connDone
			g.mu.Unlock()
			return cl, gen, done, nil
		}
		if g.refused != nil {
			err := g.refused
			g.mu.Unlock()
			return nil, 0, nil, err
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, 0, nil, ctx.Err()
		}
	}
}

// ready waits for a connection with d attached on it (d nil: the gateway
// itself), at most the pool's wait timeout.
func (g *gw) ready(ctx context.Context, d *device) (paho.Client, chan struct{}, error) {
	// The common case, every publish on a held device: connected and
	// attached, nothing to wait for (and no timer to make).
	g.mu.Lock()
	if !g.stopped && g.connected && (d == nil || d.attachedGen == g.gen) {
		cl, done := g.client, g.connDone
		g.mu.Unlock()
		return cl, done, nil
	}
	g.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, g.p.o.waitTimeout)
	defer cancel()
	for {
		cl, gen, done, err := g.waitConnected(wctx)
		if err == nil && d != nil {
			err = g.ensureAttached(wctx, d, cl, gen, done)
			if errors.Is(err, errConnLost) {
				continue
			}
		}
		if err != nil && ctx.Err() == nil && wctx.Err() != nil {
			err = fmt.Errorf("%w: no connection to the bridge after %s", ErrUnavailable, g.p.o.waitTimeout)
		}
		return cl, done, err
	}
}

// ensureAttached attaches d on connection gen, once for all callers.
func (g *gw) ensureAttached(ctx context.Context, d *device, cl paho.Client, gen int64, connDone chan struct{}) error {
	for {
		g.mu.Lock()
		if g.gen != gen || !g.connected {
			g.mu.Unlock()
			return errConnLost
		}
		if d.attachedGen == gen {
			g.mu.Unlock()
			return nil
		}
		if ch := d.detaching; ch != nil {
			g.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if a := d.attempt; a != nil {
			g.mu.Unlock()
			select {
			case <-a.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if a.err != nil {
				return a.err
			}
			continue
		}
		a := &attempt{done: make(chan struct{})}
		d.attempt = a
		auth := d.auth
		w := make(chan *GatewayError, 1)
		g.attachWait[d.id] = w
		g.mu.Unlock()

		a.err = g.sendAttach(ctx, cl, connDone, d.id, auth, w)
		g.mu.Lock()
		if g.attachWait[d.id] == w {
			delete(g.attachWait, d.id)
		}
		d.attempt = nil
		if a.err == nil {
			g.setAttachedLocked(d, gen)
		}
		close(a.done)
		g.mu.Unlock()
		return a.err
	}
}

func (g *gw) sendAttach(ctx context.Context, cl paho.Client, connDone chan struct{}, id, auth string, w chan *GatewayError) error {
	payload, _ := json.Marshal(map[string]string{"authorization": auth})
	_, span := g.p.tel.start(ctx, "hub.attach", g.name, id)
	defer span.End()
	t := cl.Publish("/devices/"+id+"/attach", 1, false, payload)
	timer := time.NewTimer(g.p.o.attachTimeout)
	defer timer.Stop()
	select {
	case <-t.Done():
		if t.Error() != nil {
			return errConnLost
		}
		return nil
	case ge := <-w:
		return &BridgeError{*ge}
	case <-connDone:
		return errConnLost
	case <-timer.C:
		return fmt.Errorf("%w: the bridge did not answer the attach of %s in %s", ErrUnavailable, id, g.p.o.attachTimeout)
	case <-ctx.Done():
		return ctx.Err()
	case <-g.stop:
		return g.stopReason()
	}
}

// stopReason is why the gateway stopped, once g.stop is closed.
func (g *gw) stopReason() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stopErr
}

// publish sends payload QoS 1 to /devices/{device}/{suffix} until the
// bridge acknowledges it, across reconnects.
func (g *gw) publish(ctx context.Context, d *device, suffix string, payload []byte) error {
	id := g.id
	if d != nil {
		id = d.id
	}
	topic := "/devices/" + id + "/" + suffix
	ctx, span := g.p.tel.start(ctx, "hub.publish", g.name, id)
	defer span.End()
	sent := false
	if suffix == "state" {
		pacer := g.states
		if d != nil {
			pacer = d.states
		}
		done, err := pacer.wait(ctx, g.stop, g.stopReason)
		if err != nil {
			return err
		}
		defer func() { done(sent) }()
	}
	for lost := 0; ; lost++ {
		if lost == maxLostSends {
			// A bridge restart costs one send; a message the bridge
			// answers by closing the connection would loop forever.
			return fmt.Errorf("%w (%d times, on %s): for an event, check that the registry has an event notification config", ErrDropped, lost, topic)
		}
		cl, connDone, err := g.ready(ctx, d)
		if err != nil {
			return err
		}
		var w chan *GatewayError
		if d != nil {
			w = make(chan *GatewayError, 1)
			g.mu.Lock()
			if d.pubWaiters == nil {
				d.pubWaiters = map[chan *GatewayError]struct{}{}
			}
			d.pubWaiters[w] = struct{}{}
			g.mu.Unlock()
		}
		t := cl.Publish(topic, 1, false, payload)
		sent = true
		var done bool
		select {
		case <-t.Done():
			if t.Error() == nil {
				done = true
			} else {
				// Lost before the PUBACK: wait for the next connection.
				select {
				case <-connDone:
				case <-ctx.Done():
					err = ctx.Err()
				case <-g.stop:
					err = g.stopReason()
				}
			}
		case <-connDone:
		case ge := <-w:
			err = &BridgeError{*ge}
		case <-ctx.Done():
			err = ctx.Err()
		case <-g.stop:
			err = g.stopReason()
		}
		if d != nil {
			g.mu.Lock()
			delete(d.pubWaiters, w)
			g.mu.Unlock()
		}
		if done {
			g.p.tel.published(g.ctx, suffix)
			return nil
		}
		if err != nil {
			return err
		}
		g.p.tel.resent(g.ctx)
	}
}

// maxLostSends is how many times one QoS 1 message may be sent with the
// connection lost before its PUBACK before the call fails.
const maxLostSends = 4

// release drops a holder.
func (g *gw) release(h *localHold) {
	g.mu.Lock()
	var cl paho.Client
	d := h.d
	if d != nil {
		delete(d.holders, h)
		if len(d.holders) == 0 && d.detaching == nil {
			if g.connected && (d.attachedGen == g.gen || d.attempt != nil) {
				cl = g.client
				d.detaching = make(chan struct{})
				// The bridge forgets the device's subscriptions with the
				// detach: a holder arriving before it is sent must
				// subscribe again.
				for _, ts := range g.topics {
					if ts.deviceID == d.id {
						ts.subscribedGen = 0
					}
				}
			} else {
				g.dropDeviceLocked(d)
			}
			g.clearAttachedLocked(d)
		}
	}
	g.holders--
	if g.holders == 0 && !g.stopped {
		g.idle = time.AfterFunc(g.p.o.idleTimeout, g.idleClose)
	}
	g.mu.Unlock()
	if cl != nil {
		// Sent outside the lock (paho may block); an attach of the same
		// device waits for d.detaching so it goes out after this detach.
		cl.Publish("/devices/"+d.id+"/detach", 1, false, []byte("{}"))
		g.mu.Lock()
		close(d.detaching)
		d.detaching = nil
		if len(d.holders) == 0 {
			g.dropDeviceLocked(d)
		}
		g.mu.Unlock()
	}
}

// dropDeviceLocked forgets a device nobody holds and its topics (the
// bridge forgets its subscriptions when it is detached).
func (g *gw) dropDeviceLocked(d *device) {
	if g.devices[d.id] == d {
		delete(g.devices, d.id)
	}
	for topic, ts := range g.topics {
		if ts.deviceID == d.id {
			ts.endLocked(nil)
			delete(g.topics, topic)
		}
	}
}

// idleClose closes the connection when still nobody holds it.
func (g *gw) idleClose() {
	g.p.mu.Lock()
	defer g.p.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holders != 0 || g.stopped {
		return
	}
	if g.p.gws[g.name] == g {
		delete(g.p.gws, g.name)
	}
	g.log.Debug("hub: closing an idle gateway connection")
	g.shutdownLocked(ErrClosed)
}

// detachAll detaches every attached device before a graceful close, for
// bridges that keep attachments past a disconnect.
func (g *gw) detachAll(cl paho.Client) {
	g.mu.Lock()
	var ids []string
	for id, d := range g.devices {
		if d.attachedGen == g.gen {
			ids = append(ids, id)
		}
	}
	g.mu.Unlock()
	toks := make([]paho.Token, 0, len(ids))
	for _, id := range ids {
		toks = append(toks, cl.Publish("/devices/"+id+"/detach", 1, false, []byte("{}")))
	}
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	for _, t := range toks {
		select {
		case <-t.Done():
		case <-deadline.C:
			return
		}
	}
}

// restoreAll attaches and subscribes again everything held, after a
// reconnect. Each device is restored on its own goroutine so 1,000
// attaches are pipelined.
func (g *gw) restoreAll() {
	g.mu.Lock()
	devs := make([]*device, 0, len(g.devices))
	for _, d := range g.devices {
		devs = append(devs, d)
	}
	g.mu.Unlock()
	g.p.wg.Add(1 + len(devs))
	go func() { defer g.p.wg.Done(); g.restoreTopics(nil) }()
	for _, d := range devs {
		go func() { defer g.p.wg.Done(); g.restoreDevice(d) }()
	}
}

// restoreDevice attaches d again and subscribes its topics again, telling
// its holders.
func (g *gw) restoreDevice(d *device) {
	ctx, cancel := context.WithTimeout(g.ctx, g.p.o.waitTimeout)
	defer cancel()
	_, _, err := g.ready(ctx, d)
	g.mu.Lock()
	if len(d.holders) == 0 || g.stopped {
		g.mu.Unlock()
		return
	}
	if err != nil {
		g.log.Warn("hub: could not attach a device again", "device", d.id, "err", err)
		for h := range d.holders {
			h.sendLocked(Event{Lost: err})
		}
		for _, ts := range g.topics {
			if ts.deviceID == d.id {
				ts.endLocked(err)
			}
		}
		g.mu.Unlock()
		return
	}
	for h := range d.holders {
		h.sendLocked(Event{Reattached: true, Reconnects: g.reconnects})
	}
	g.mu.Unlock()
	g.restoreTopics(d)
}

// restoreTopics subscribes again the topics of d (nil: the gateway's).
func (g *gw) restoreTopics(d *device) {
	id := ""
	if d != nil {
		id = d.id
	}
	g.mu.Lock()
	var tss []*topicSub
	for _, ts := range g.topics {
		if ts.deviceID == id {
			tss = append(tss, ts)
		}
	}
	g.mu.Unlock()
	for _, ts := range tss {
		ctx, cancel := context.WithTimeout(g.ctx, g.p.o.waitTimeout)
		if err := g.subscribe(ctx, ts, d); err != nil && g.ctx.Err() == nil {
			g.log.Warn("hub: could not subscribe again", "topic", ts.topic, "err", err)
			g.mu.Lock()
			ts.endLocked(err)
			g.mu.Unlock()
		}
		cancel()
	}
}

// endAll ends every subscription and hold, with the reason the
// connection closed for good.
func (g *gw) endAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	err := g.stopErr
	for _, ts := range g.topics {
		ts.endLocked(err)
	}
	for _, d := range g.devices {
		g.clearAttachedLocked(d)
		for h := range d.holders {
			h.sendLocked(Event{Lost: err})
		}
	}
}

// setAttachedLocked records d attached on connection gen. The gauge of
// attached devices counts a device once while it is held attached, across
// reconnects: a re-attach after a reconnect does not count it again.
func (g *gw) setAttachedLocked(d *device, gen int64) {
	d.attachedGen = gen
	if !d.counted {
		d.counted = true
		g.p.tel.attached(g.ctx, 1)
	}
}

// clearAttachedLocked records d detached (released, or detached by the
// bridge until it is attached again).
func (g *gw) clearAttachedLocked(d *device) {
	d.attachedGen = 0
	if d.counted {
		d.counted = false
		g.p.tel.attached(g.ctx, -1)
	}
}

// sendLocked passes an event to the hold's Holder without blocking.
func (h *localHold) sendLocked(ev Event) {
	if ev.Lost != nil {
		h.owner.linkLost(h, ev.Lost)
		return
	}
	h.owner.offer(ev)
}

// view snapshots the connection.
func (g *gw) view() GatewayView {
	g.mu.Lock()
	defer g.mu.Unlock()
	v := GatewayView{Gateway: g.name, State: g.state, Reconnects: g.reconnects, Holders: g.holders}
	if g.connected {
		v.ConnectTime, v.TokenExpiry = g.connectTime, g.tokenExp
	}
	for _, d := range g.devices {
		v.Devices = append(v.Devices, DeviceView{ID: d.id, Holders: len(d.holders), Attached: g.connected && d.attachedGen == g.gen})
	}
	sort.Slice(v.Devices, func(i, j int) bool { return v.Devices[i].ID < v.Devices[j].ID })
	return v
}
