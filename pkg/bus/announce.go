package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/passerelle-iot/passerelle/pkg/resource"
)

// AnnouncementKind says what changed.
type AnnouncementKind string

// The kinds of announcement.
const (
	// ConfigChanged: the device has a new config version (Config).
	ConfigChanged AnnouncementKind = "configChanged"
	// DeviceChanged: the device changed (blocked, credentials, gateway
	// settings...): a bridge holding it re-reads it and may disconnect it.
	DeviceChanged AnnouncementKind = "deviceChanged"
	// DeviceDeleted: the device is gone; a bridge holding it disconnects it.
	DeviceDeleted AnnouncementKind = "deviceDeleted"
	// RegistryChanged: the registry named by Project, Location and
	// Registry changed (MQTT or HTTP enabled state, notification configs,
	// CA certificates...): whoever caches it drops it, and a bridge
	// applies it again to every live connection of that registry.
	RegistryChanged AnnouncementKind = "registryChanged"
	// RegistryDeleted: the registry is gone (it held no devices).
	RegistryDeleted AnnouncementKind = "registryDeleted"
	// Resync is never sent: the Bus hands it to a subscription's handler
	// when announcements may have been lost (the handler fell behind and
	// NATS dropped messages, or the connection to NATS was lost and came
	// back). The bridge must then re-read from the store every device it
	// holds, and forget every registry it cached.
	Resync AnnouncementKind = "resync"
)

// IsRegistry reports whether k is about a registry rather than a device.
func (k AnnouncementKind) IsRegistry() bool { return k == RegistryChanged || k == RegistryDeleted }

// Announcement tells bridges (and other manager instances) that something
// about a device or a registry changed. A device's travels as JSON on
// <ControlPrefix>.announce.<NumID>, and names the device's registry too; a
// registry's on <ControlPrefix>.announce.registry, naming the registry
// (Project, Location, Registry) and no device.
type Announcement struct {
	Kind     AnnouncementKind `json:"kind"`
	Project  string           `json:"project,omitempty"`
	Location string           `json:"location,omitempty"`
	Registry string           `json:"registry,omitempty"`
	DeviceID string           `json:"deviceId,omitempty"`
	NumID    uint64           `json:"numId,string"`
	// Config is the new config of a ConfigChanged, so that the bridge
	// holding the device sends it without reading the store. Nil: the
	// bridge reads it.
	Config *AnnouncedConfig `json:"config,omitempty"`

	// ctx carries the trace context the announcement travelled with.
	ctx context.Context
}

// Context returns a context carrying the trace of the change announced
// (the admin call that made it), for the spans of what a subscriber does
// about it: context.Background when it came without one.
func (a Announcement) Context() context.Context {
	if a.ctx == nil {
		return context.Background()
	}
	return a.ctx
}

// RegistryName returns the full resource name of the announcement's
// registry, projects/{p}/locations/{l}/registries/{r}.
func (a Announcement) RegistryName() string {
	return resource.Registry{Project: a.Project, Location: a.Location, Registry: a.Registry}.Name()
}

// registrySubjectToken ends the subject of registry announcements; device
// announcements end with a decimal number, so the two never meet.
const registrySubjectToken = "registry"

// AnnouncedConfig is a config version carried by an announcement.
type AnnouncedConfig struct {
	Version int64  `json:"version,string"`
	Data    []byte `json:"data"`
}

// Announce sends an announcement to every subscribed bridge and manager.
// It is fire and forget (core NATS, no persistence): a subscriber that
// misses one gets a Resync and re-reads the store. While connected it
// returns once the NATS server has the announcement (a flush), so that a
// read another instance starts after Announce returned sees it (through
// AnnouncementSub.Sync); while reconnecting it leaves it in the
// client's buffer, to go out with the reconnection.
func (b *Bus) Announce(ctx context.Context, a Announcement) error {
	var token string
	switch a.Kind {
	case ConfigChanged, DeviceChanged, DeviceDeleted:
		if a.NumID == 0 {
			return fmt.Errorf("%w: announcement without a device number", ErrInvalid)
		}
		token = strconv.FormatUint(a.NumID, 10)
	case RegistryChanged, RegistryDeleted:
		if a.Project == "" || a.Location == "" || a.Registry == "" {
			return fmt.Errorf("%w: %s announcement without the registry's project, location and id", ErrInvalid, a.Kind)
		}
		if a.NumID != 0 || a.DeviceID != "" || a.Config != nil {
			return fmt.Errorf("%w: %s announcement naming a device", ErrInvalid, a.Kind)
		}
		token = registrySubjectToken
	default:
		return fmt.Errorf("%w: announcement kind %q", ErrInvalid, a.Kind)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("bus: encoding announcement: %w", err)
	}
	subject := b.opts.ControlPrefix + ".announce." + token
	ctx, span := startSpan(ctx, "bus.announce "+string(a.Kind), subject)
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	injectTrace(ctx, m.Header)
	err = b.nc.PublishMsg(m)
	endSpan(span, err)
	if err != nil {
		return fmt.Errorf("bus: announcing on %s: %w", subject, unavailableErr(closedErr(err)))
	}
	if !b.nc.IsConnected() {
		return nil
	}
	fctx, cancel := withDefaultTimeout(ctx, b.opts.PublishTimeout)
	defer cancel()
	if err := b.nc.FlushWithContext(fctx); err != nil {
		return fmt.Errorf("bus: announcing on %s: the server did not confirm: %w", subject, unavailableErr(closedErr(err)))
	}
	return nil
}

// withDefaultTimeout gives ctx a deadline d away when it has none (NATS
// flushes and requests need one).
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// AnnouncementSub is a subscription to announcements (WatchAnnouncements).
type AnnouncementSub struct {
	b      *Bus
	sub    *nats.Subscription
	resync chan struct{} // capacity 1: pending Resync requests collapse into one
	stop   chan struct{}
	done   chan struct{} // closed when the handler's loop has returned
	once   sync.Once

	// What Sync waits for: messages handled (of those NATS delivered,
	// sub.Delivered), Resync requests covered by a handled Resync, and
	// messages NATS dropped that a handled Resync covers.
	handled        atomic.Int64
	resyncAsked    atomic.Uint64
	resyncCovered  atomic.Uint64
	droppedCovered atomic.Int64

	progressMu sync.Mutex
	progress   chan struct{} // closed and replaced after each handled message or Resync
}

func (s *AnnouncementSub) requestResync() {
	s.resyncAsked.Add(1)
	select {
	case s.resync <- struct{}{}:
	default:
	}
}

// progressed wakes the Sync callers waiting on s.
func (s *AnnouncementSub) progressed() {
	s.progressMu.Lock()
	close(s.progress)
	s.progress = make(chan struct{})
	s.progressMu.Unlock()
}

func (s *AnnouncementSub) progressCh() <-chan struct{} {
	s.progressMu.Lock()
	defer s.progressMu.Unlock()
	return s.progress
}

// Stop unsubscribes and returns once the handler has returned for the
// last time; it must not be called from the handler. Calling it again
// does nothing.
func (s *AnnouncementSub) Stop() {
	s.once.Do(func() {
		s.b.annMu.Lock()
		delete(s.b.annSubs, s.sub)
		s.b.annMu.Unlock()
		_ = s.sub.Unsubscribe()
		close(s.stop)
		<-s.done
	})
}

// Sync returns once the handler has handled every announcement the NATS
// server had sent to this connection when the call began. Since Announce
// returns only once the server has an announcement, a manager that calls
// it before serving from a cache sees every change another instance
// finished before the read began (through one NATS server; across a
// cluster, an announcement still crossing a route between two servers may
// arrive just after).
//
// It returns an error wrapping ErrUnavailable when announcements may have
// been lost and the Resync that follows is not handled yet (the
// connection is down, was re-established a moment ago, or NATS dropped
// messages for a slow handler), and ctx's error when ctx ends first:
// either way the caller must read the store. Without a deadline on ctx it
// waits at most Options.PublishTimeout. It costs a round trip to the NATS
// server.
func (s *AnnouncementSub) Sync(ctx context.Context) error {
	b := s.b
	if err := b.Ready(ctx); err != nil {
		return err
	}
	seen := b.reconnects.Load()
	if b.nc.Stats().Reconnects != seen {
		return fmt.Errorf("%w: reconnected to NATS a moment ago; announcements may have been lost", ErrUnavailable)
	}
	ctx, cancel := withDefaultTimeout(ctx, b.opts.PublishTimeout)
	defer cancel()
	// Every message the server sent before its answer to this flush is in
	// the subscription's channel once it returns: the client reads both
	// on one connection, in order.
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("bus: syncing announcements: %w", unavailableErr(closedErr(err)))
	}
	if err := s.waitHandled(ctx); err != nil {
		return err
	}
	if b.nc.Stats().Reconnects != seen {
		return fmt.Errorf("%w: the connection to NATS was re-established meanwhile; announcements may have been lost", ErrUnavailable)
	}
	return nil
}

// waitHandled waits until the handler has handled what NATS delivered to
// the subscription so far, and the Resyncs asked so far.
func (s *AnnouncementSub) waitHandled(ctx context.Context) error {
	delivered, err := s.sub.Delivered()
	if err != nil {
		return ErrClosed // stopped
	}
	asked := s.resyncAsked.Load()
	for {
		progress := s.progressCh()
		if dropped, err := s.sub.Dropped(); err == nil && int64(dropped) > s.droppedCovered.Load() {
			return fmt.Errorf("%w: NATS dropped announcements for a slow handler; a Resync is due", ErrUnavailable)
		}
		if s.handled.Load() >= delivered && s.resyncCovered.Load() >= asked {
			return nil
		}
		select {
		case <-progress:
		case <-s.stop:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("bus: syncing announcements: %w", ctx.Err())
		}
	}
}

// SubscribeAnnouncements is WatchAnnouncements for callers that need only
// to stop the subscription: stop is the subscription's Stop.
func (b *Bus) SubscribeAnnouncements(handler func(Announcement)) (stop func(), err error) {
	s, err := b.WatchAnnouncements(handler)
	if err != nil {
		return nil, err
	}
	return s.Stop, nil
}

// WatchAnnouncements calls handler for every announcement, in order, on
// one goroutine per subscription. Up to Options.AnnouncementBuffer
// announcements wait for the handler; past that NATS drops them (a "slow
// consumer") and the handler then receives an Announcement of kind Resync,
// as it does after a reconnection to NATS. The handler should not block
// long. Close stops every subscription too.
func (b *Bus) WatchAnnouncements(handler func(Announcement)) (*AnnouncementSub, error) {
	ch := make(chan *nats.Msg, b.opts.AnnouncementBuffer)
	s := &AnnouncementSub{b: b, resync: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), progress: make(chan struct{})}
	b.annMu.Lock()
	select {
	case <-b.closed:
		b.annMu.Unlock()
		return nil, ErrClosed
	default:
	}
	sub, err := b.nc.ChanSubscribe(b.opts.ControlPrefix+".announce.*", ch)
	if err != nil {
		b.annMu.Unlock()
		return nil, fmt.Errorf("bus: subscribing to announcements: %w", closedErr(err))
	}
	s.sub = sub
	b.annSubs[sub] = s
	b.wg.Add(1)
	b.annMu.Unlock()
	if err := b.nc.Flush(); err != nil {
		b.logger.Warn("bus: flushing an announcement subscription", "err", err)
	}

	go func() {
		defer b.wg.Done()
		defer close(s.done)
		for {
			select {
			case m := <-ch:
				var a Announcement
				if err := json.Unmarshal(m.Data, &a); err != nil {
					b.logger.Warn("bus: dropping an unreadable announcement", "subject", m.Subject, "err", err)
				} else {
					if len(m.Header) > 0 {
						a.ctx = extractTrace(context.Background(), m.Header)
					}
					handler(a)
				}
				s.handled.Add(1)
				s.progressed()
			case <-s.resync:
				asked := s.resyncAsked.Load()
				dropped, _ := sub.Dropped()
				handler(Announcement{Kind: Resync})
				s.resyncCovered.Store(asked)
				s.droppedCovered.Store(int64(dropped))
				s.progressed()
			case <-s.stop:
				return
			case <-b.closed:
				return
			}
		}
	}()
	return s, nil
}

// closedErr maps the client's "connection closed" to ErrClosed.
func closedErr(err error) error {
	if err == nats.ErrConnectionClosed || err == nats.ErrConnectionDraining {
		return fmt.Errorf("%w (%v)", ErrClosed, err)
	}
	return err
}
