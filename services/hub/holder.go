package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/passerelle-iot/passerelle/pkg/resource"
)

// link is what a Holder holds its gateway through: a connection of this
// pool (localHold), or a relay to the hub replica that holds the
// gateway's connection (remoteLink). A link whose gateway moved to
// another replica fails its calls with errMoved, and the Holder moves to
// a new link.
type link interface {
	publish(ctx context.Context, suffix string, payload []byte) error
	subscribeConfig(ctx context.Context) (configFeed, error)
	subscribeCommands(ctx context.Context) (commandFeed, error)
	setAuthorization(token string)
	release()
	// abandon drops the link after a move: calls still in flight on it
	// fail with errMoved (and are sent again on the next link).
	abandon()
}

// configFeed and commandFeed are a link's subscriptions.
type configFeed interface {
	next(ctx context.Context) (Config, error)
	close()
}

type commandFeed interface {
	next(ctx context.Context) (Command, error)
	close()
}

// errMoved: the gateway's connection moved to another hub replica (or is
// moving): the call goes on through the new owner.
var errMoved = errors.New("the gateway's connection moved to another hub replica")

// Holder keeps a gateway connection open and, for a device, the device
// attached, wherever the connection is: on this hub or, in a cluster, on
// the replica that holds the gateway (see WithReplicas). When the
// connection moves between replicas, the Holder follows it: it attaches
// the device again, subscribes again and sends again what was not
// acknowledged; its caller sees a delay. Release it when done.
type Holder struct {
	p         *Pool
	gateway   string // resource name
	gatewayID string // the gateway's device id
	deviceID  string // "" for the gateway itself
	events    chan Event
	// ctx carries the caller's values (trace, metadata) to relayed
	// calls and moves; Release cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	// relayed: the call came from another replica, to be served here or
	// not at all (it is never relayed again).
	relayed bool
	// brief: held for one call (PublishEvent). A relay of it needs no
	// Attach stream of its own: the relayed call holds the device on the
	// owner for as long as it lasts.
	brief bool

	mu       sync.Mutex
	auth     string
	link     link          // nil while moving
	changed  chan struct{} // closed and replaced when link changes
	err      error         // the hold is over: every call fails with it
	released bool
	reported int64 // the last Reattached count told
}

// Hold opens (or shares) the connection of gateway and, when deviceID is
// not empty, attaches the device (refcounted) with the device JWT
// authorization (may be empty). It returns once the connection is up and
// the bridge has accepted the attach. In a cluster, the connection is the
// one of the replica that holds the gateway, reached through it.
func (p *Pool) Hold(ctx context.Context, gateway, deviceID, authorization string) (*Holder, error) {
	return p.hold(ctx, gateway, deviceID, authorization, false)
}

// holdBrief is Hold for a single call (see Holder.brief).
func (p *Pool) holdBrief(ctx context.Context, gateway, deviceID, authorization string) (*Holder, error) {
	return p.hold(ctx, gateway, deviceID, authorization, true)
}

func (p *Pool) hold(ctx context.Context, gateway, deviceID, authorization string, brief bool) (*Holder, error) {
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
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &Holder{
		p: p, gateway: gateway, gatewayID: gdev.Device, deviceID: deviceID,
		events: make(chan Event, p.o.eventBuffer), ctx: hctx, cancel: cancel,
		relayed: isRelayed(ctx), brief: brief, auth: authorization, changed: make(chan struct{}),
	}
	l, err := p.linkFor(ctx, h)
	if err != nil {
		cancel()
		return nil, err
	}
	h.mu.Lock()
	h.link = l
	h.mu.Unlock()
	return h, nil
}

// linkFor finds h a link: on this pool's connection, or (in a cluster)
// through the replica that holds the gateway.
func (p *Pool) linkFor(ctx context.Context, h *Holder) (link, error) {
	if p.rep != nil {
		return p.rep.link(ctx, h)
	}
	return p.holdLocalLink(ctx, h)
}

// holdLocalLink is holdLocal as a link (never a typed nil).
func (p *Pool) holdLocalLink(ctx context.Context, h *Holder) (link, error) {
	h.mu.Lock()
	auth := h.auth
	h.mu.Unlock()
	lh, err := p.holdLocal(ctx, h, auth)
	if err != nil {
		return nil, err
	}
	return lh, nil
}

// Events returns the holder's events (re-attaches, gateway errors about
// the device). It is bounded: events a slow reader misses are dropped.
func (h *Holder) Events() <-chan Event { return h.events }

// Gateway returns the gateway's resource name.
func (h *Holder) Gateway() string { return h.gateway }

// SetAuthorization replaces the device JWT used on the next re-attach.
func (h *Holder) SetAuthorization(token string) {
	if h.deviceID == "" || token == "" {
		return
	}
	h.mu.Lock()
	h.auth = token
	l := h.link
	h.mu.Unlock()
	if l != nil {
		l.setAuthorization(token)
	}
}

// Release lets the device and the connection go: the device is detached
// when its last holder goes, the connection closed after the idle timeout
// when its last holder goes. It is idempotent.
func (h *Holder) Release() {
	h.mu.Lock()
	if h.released {
		h.mu.Unlock()
		return
	}
	h.released = true
	l := h.link
	h.link = nil
	h.broadcastLocked()
	h.mu.Unlock()
	h.cancel()
	if l != nil {
		l.release()
	}
}

// Publish publishes payload QoS 1 to the held device's topic suffix
// ("state", "events" or "events/{subfolder}") and returns once the
// bridge has acknowledged it. A publish the connection lost before its
// acknowledgement is sent again on the next connection, wherever it is.
// A state waits until StateInterval after the device's previous one.
func (h *Holder) Publish(ctx context.Context, suffix string, payload []byte) error {
	for {
		l, err := h.current(ctx)
		if err != nil {
			return err
		}
		err = l.publish(ctx, suffix, payload)
		if h.movable(err) {
			h.moved(l)
			continue
		}
		return err
	}
}

func (h *Holder) broadcastLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// current returns the holder's link, waiting while it moves.
func (h *Holder) current(ctx context.Context) (link, error) {
	for {
		h.mu.Lock()
		switch {
		case h.err != nil:
			err := h.err
			h.mu.Unlock()
			return nil, err
		case h.released:
			h.mu.Unlock()
			return nil, ErrClosed
		case h.link != nil:
			l := h.link
			h.mu.Unlock()
			return l, nil
		}
		ch := h.changed
		h.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// movable reports whether err means the holder should move to the
// gateway's new owner. A relayed hold never moves: the replica that
// relayed it does.
func (h *Holder) movable(err error) bool {
	return err != nil && errors.Is(err, errMoved) && h.p.rep != nil && !h.relayed
}

// linkLost is told by a link that it ended with err: a move (the holder
// follows the gateway), or the end of the hold, told to Events. It may be
// called under the link's locks: it takes none of them.
func (h *Holder) linkLost(l link, err error) {
	if h.movable(err) {
		h.moved(l)
		return
	}
	h.offer(Event{Lost: err})
}

// moved drops link l, when it is still the holder's, and finds a new one
// in the background.
func (h *Holder) moved(l link) {
	h.mu.Lock()
	if h.link != l || h.released || h.err != nil {
		h.mu.Unlock()
		return
	}
	h.link = nil
	h.broadcastLocked()
	h.mu.Unlock()
	if !h.p.goOwned(func() { h.follow(l) }) {
		h.fail(ErrClosed)
		l.release()
	}
}

// follow abandons the old link and links the holder again, for at most
// the pool's wait timeout.
func (h *Holder) follow(old link) {
	old.abandon()
	ctx, cancel := context.WithTimeout(h.ctx, h.p.o.waitTimeout)
	stop := context.AfterFunc(h.p.ctx, cancel)
	nl, err := h.p.linkFor(ctx, h)
	stop()
	if err != nil && ctx.Err() != nil && h.ctx.Err() == nil {
		if h.p.ctx.Err() != nil {
			err = ErrClosed
		} else {
			err = fmt.Errorf("%w within %s", errNoOwner, h.p.o.waitTimeout)
		}
	}
	cancel()
	h.mu.Lock()
	if h.released {
		h.mu.Unlock()
		if nl != nil {
			nl.release()
		}
		return
	}
	if err != nil {
		h.mu.Unlock()
		h.fail(err)
		return
	}
	h.link = nl
	h.broadcastLocked()
	h.mu.Unlock()
	if h.deviceID != "" {
		h.offer(Event{Reattached: true})
	}
}

// fail ends the hold with err: calls fail with it, Events tells it.
func (h *Holder) fail(err error) {
	h.mu.Lock()
	if h.err == nil {
		h.err = err
		h.broadcastLocked()
	}
	h.mu.Unlock()
	h.offer(Event{Lost: err})
}

// offer passes an event to Events without blocking: a slow reader loses
// it. Lost events are never dropped: they replace what is queued.
// Reattached counts only grow, across moves.
func (h *Holder) offer(ev Event) {
	if ev.Reattached {
		h.mu.Lock()
		h.reported = max(h.reported+1, ev.Reconnects)
		ev.Reconnects = h.reported
		h.mu.Unlock()
	}
	select {
	case h.events <- ev:
		return
	default:
	}
	if ev.Lost == nil {
		h.p.tel.dropped(h.p.ctx, "event")
		return
	}
	for {
		select {
		case <-h.events:
		default:
		}
		select {
		case h.events <- ev:
			return
		default:
		}
	}
}

// ConfigSubscription receives a device's configs, newest only: a version
// not read before the next arrives is skipped. It follows its Holder when
// the gateway's connection moves, and does not deliver again the config
// it delivered last.
type ConfigSubscription struct {
	h *Holder

	mu     sync.Mutex
	feed   configFeed
	link   link // the feed's
	closed bool

	last         *Config // the last one Next returned (Next's own)
	resubscribed bool    // the feed is new since last
}

// SubscribeConfig subscribes to the held device's configs: the current
// one comes first.
func (h *Holder) SubscribeConfig(ctx context.Context) (*ConfigSubscription, error) {
	s := &ConfigSubscription{h: h}
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *ConfigSubscription) open(ctx context.Context) error {
	for {
		l, err := s.h.current(ctx)
		if err != nil {
			return err
		}
		f, err := l.subscribeConfig(ctx)
		if s.h.movable(err) {
			s.h.moved(l)
			continue
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			f.close()
			return ErrClosed
		}
		s.feed, s.link = f, l
		s.mu.Unlock()
		return nil
	}
}

// Next returns the next config, waiting for it.
func (s *ConfigSubscription) Next(ctx context.Context) (Config, error) {
	for {
		s.mu.Lock()
		f, l, closed := s.feed, s.link, s.closed
		s.mu.Unlock()
		if closed {
			return Config{}, ErrClosed
		}
		if f == nil {
			if err := s.open(ctx); err != nil {
				return Config{}, err
			}
			s.resubscribed = true
			continue
		}
		c, err := f.next(ctx)
		if s.h.movable(err) {
			s.drop(f)
			s.h.moved(l)
			continue
		}
		if err != nil {
			return Config{}, err
		}
		if s.resubscribed {
			s.resubscribed = false
			if s.last != nil && sameConfig(*s.last, c) {
				continue // the new owner's first delivery, already told
			}
		}
		s.last = &c
		return c, nil
	}
}

// drop forgets feed f after a move.
func (s *ConfigSubscription) drop(f configFeed) {
	s.mu.Lock()
	if s.feed == f {
		s.feed, s.link = nil, nil
	}
	s.mu.Unlock()
	f.close()
}

// Close ends the subscription.
func (s *ConfigSubscription) Close() {
	s.mu.Lock()
	s.closed = true
	f := s.feed
	s.feed, s.link = nil, nil
	s.mu.Unlock()
	if f != nil {
		f.close()
	}
}

// sameConfig: by version when both have one, else by data.
func sameConfig(a, b Config) bool {
	if a.Version != 0 && b.Version != 0 {
		return a.Version == b.Version
	}
	return bytes.Equal(a.Data, b.Data)
}

// CommandSubscription receives a device's commands through a bounded
// buffer; a subscriber that lets it fill is ended with ErrSlowConsumer.
// It follows its Holder when the gateway's connection moves (commands sent
// while it moves reach no one, as while a gateway reconnects).
type CommandSubscription struct {
	h *Holder

	mu     sync.Mutex
	feed   commandFeed
	link   link
	closed bool
}

// SubscribeCommands subscribes to the held device's commands.
func (h *Holder) SubscribeCommands(ctx context.Context) (*CommandSubscription, error) {
	s := &CommandSubscription{h: h}
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *CommandSubscription) open(ctx context.Context) error {
	for {
		l, err := s.h.current(ctx)
		if err != nil {
			return err
		}
		f, err := l.subscribeCommands(ctx)
		if s.h.movable(err) {
			s.h.moved(l)
			continue
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			f.close()
			return ErrClosed
		}
		s.feed, s.link = f, l
		s.mu.Unlock()
		return nil
	}
}

// Next returns the next command, waiting for it.
func (s *CommandSubscription) Next(ctx context.Context) (Command, error) {
	for {
		s.mu.Lock()
		f, l, closed := s.feed, s.link, s.closed
		s.mu.Unlock()
		if closed {
			return Command{}, ErrClosed
		}
		if f == nil {
			if err := s.open(ctx); err != nil {
				return Command{}, err
			}
			continue
		}
		c, err := f.next(ctx)
		if s.h.movable(err) {
			s.mu.Lock()
			if s.feed == f {
				s.feed, s.link = nil, nil
			}
			s.mu.Unlock()
			f.close()
			s.h.moved(l)
			continue
		}
		return c, err
	}
}

// Close ends the subscription.
func (s *CommandSubscription) Close() {
	s.mu.Lock()
	s.closed = true
	f := s.feed
	s.feed, s.link = nil, nil
	s.mu.Unlock()
	if f != nil {
		f.close()
	}
}
