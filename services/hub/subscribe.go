package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func configTopic(id string) string   { return "/devices/" + id + "/config" }
func commandsTopic(id string) string { return "/devices/" + id + "/commands/#" }

// topicSub is one MQTT subscription of a gateway connection, shared by
// every subscriber of that topic.
type topicSub struct {
	topic         string
	deviceID      string // "" for the gateway's own topics
	isConfig      bool
	subscribedGen int64
	attempt       *attempt
	latest        *Config // config topics: the newest delivery
	resubscribed  bool    // the bridge resends the config on a new SUBSCRIBE
	cfgSubs       map[*localConfigSub]struct{}
	cmdSubs       map[*localCommandSub]struct{}
}

func (ts *topicSub) offerConfigLocked(c Config) {
	if ts.resubscribed {
		ts.resubscribed = false
		if ts.latest != nil && bytes.Equal(ts.latest.Data, c.Data) {
			// The bridge's resend of what subscribers already have.
			return
		}
	}
	ts.latest = &c
	for s := range ts.cfgSubs {
		s.offer(c)
	}
}

func (ts *topicSub) offerCommandLocked(c Command) {
	for s := range ts.cmdSubs {
		select {
		case s.ch <- c:
		default:
			// A slow command subscriber is ended, never waited for.
			s.end(fmt.Errorf("%w: more than %d commands unread", ErrSlowConsumer, cap(s.ch)))
			delete(ts.cmdSubs, s)
		}
	}
}

// endLocked ends every subscriber (err nil: the subscription is over
// because its holder went).
func (ts *topicSub) endLocked(err error) {
	if err == nil {
		err = ErrClosed
	}
	for s := range ts.cfgSubs {
		s.end(err)
	}
	for s := range ts.cmdSubs {
		s.end(err)
	}
	clear(ts.cfgSubs)
	clear(ts.cmdSubs)
}

// subscribe makes sure ts is subscribed on the current connection (with
// its device attached), once for all callers.
func (g *gw) subscribe(ctx context.Context, ts *topicSub, d *device) error {
	for {
		cl, connDone, err := g.ready(ctx, d)
		if err != nil {
			return err
		}
		g.mu.Lock()
		gen := g.gen
		if !g.connected {
			g.mu.Unlock()
			continue
		}
		if ts.subscribedGen == gen {
			g.mu.Unlock()
			return nil
		}
		if a := ts.attempt; a != nil {
			g.mu.Unlock()
			select {
			case <-a.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if a.err != nil && !errors.Is(a.err, errConnLost) {
				return a.err
			}
			continue
		}
		a := &attempt{done: make(chan struct{})}
		ts.attempt = a
		if ts.latest != nil {
			ts.resubscribed = true
		}
		g.mu.Unlock()
		a.err = g.sendSubscribe(ctx, cl, connDone, ts.topic)
		g.mu.Lock()
		ts.attempt = nil
		if a.err == nil && g.gen == gen {
			ts.subscribedGen = gen
		}
		close(a.done)
		g.mu.Unlock()
		if errors.Is(a.err, errConnLost) {
			continue
		}
		return a.err
	}
}

func (g *gw) sendSubscribe(ctx context.Context, cl paho.Client, connDone chan struct{}, topic string) error {
	t := cl.Subscribe(topic, 1, nil)
	select {
	case <-t.Done():
		if t.Error() != nil {
			return errConnLost
		}
		if st, ok := t.(*paho.SubscribeToken); ok {
			if code := st.Result()[topic]; code >= 0x80 {
				return fmt.Errorf("%w: the bridge refused the subscription to %s", ErrRefused, topic)
			}
		}
		return nil
	case <-connDone:
		return errConnLost
	case <-ctx.Done():
		return ctx.Err()
	case <-g.stop:
		return g.stopReason()
	}
}

// topicLocked returns (making it) the topicSub of topic.
func (g *gw) topicLocked(topic, deviceID string, isConfig bool) *topicSub {
	ts := g.topics[topic]
	if ts == nil {
		ts = &topicSub{topic: topic, deviceID: deviceID, isConfig: isConfig,
			cfgSubs: map[*localConfigSub]struct{}{}, cmdSubs: map[*localCommandSub]struct{}{}}
		g.topics[topic] = ts
	}
	return ts
}

// localConfigSub receives a device's configs from this pool's connection,
// newest only: a version not read before the next arrives is skipped.
type localConfigSub struct {
	g      *gw
	ts     *topicSub
	notify chan struct{}
	done   chan struct{}

	mu     sync.Mutex
	latest *Config
	err    error
	once   sync.Once
}

func (s *localConfigSub) offer(c Config) {
	s.mu.Lock()
	s.latest = &c
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *localConfigSub) end(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
	})
}

// next returns the next config, waiting for it.
func (s *localConfigSub) next(ctx context.Context) (Config, error) {
	for {
		s.mu.Lock()
		if c := s.latest; c != nil {
			s.latest = nil
			s.mu.Unlock()
			return *c, nil
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-s.done:
			s.mu.Lock()
			err := s.err
			s.mu.Unlock()
			return Config{}, err
		case <-ctx.Done():
			return Config{}, ctx.Err()
		}
	}
}

// close ends the subscription.
func (s *localConfigSub) close() {
	s.g.mu.Lock()
	delete(s.ts.cfgSubs, s)
	s.g.mu.Unlock()
	s.end(ErrClosed)
}

// subscribeConfig subscribes to the held device's configs: the current
// one comes first.
func (h *localHold) subscribeConfig(ctx context.Context) (configFeed, error) {
	id := h.g.id
	if h.d != nil {
		id = h.d.id
	}
	s := &localConfigSub{g: h.g, notify: make(chan struct{}, 1), done: make(chan struct{})}
	h.g.mu.Lock()
	ts := h.g.topicLocked(configTopic(id), h.owner.deviceID, true)
	s.ts = ts
	ts.cfgSubs[s] = struct{}{}
	if ts.latest != nil {
		s.offer(*ts.latest)
	}
	h.g.mu.Unlock()
	if err := h.g.subscribe(ctx, ts, h.d); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// localCommandSub receives a device's commands from this pool's connection
// through a bounded buffer; a subscriber that lets it fill is ended with
// ErrSlowConsumer.
type localCommandSub struct {
	g    *gw
	ts   *topicSub
	ch   chan Command
	done chan struct{}

	mu   sync.Mutex
	err  error
	once sync.Once
}

func (s *localCommandSub) end(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
	})
}

// next returns the next command, waiting for it.
func (s *localCommandSub) next(ctx context.Context) (Command, error) {
	select {
	case <-s.done:
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		return Command{}, err
	default:
	}
	select {
	case c := <-s.ch:
		return c, nil
	case <-s.done:
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		return Command{}, err
	case <-ctx.Done():
		return Command{}, ctx.Err()
	}
}

// close ends the subscription.
func (s *localCommandSub) close() {
	s.g.mu.Lock()
	delete(s.ts.cmdSubs, s)
	s.g.mu.Unlock()
	s.end(ErrClosed)
}

// subscribeCommands subscribes to the held device's commands.
func (h *localHold) subscribeCommands(ctx context.Context) (commandFeed, error) {
	id := h.g.id
	if h.d != nil {
		id = h.d.id
	}
	s := &localCommandSub{g: h.g, ch: make(chan Command, h.g.p.o.commandBuffer), done: make(chan struct{})}
	h.g.mu.Lock()
	ts := h.g.topicLocked(commandsTopic(id), h.owner.deviceID, false)
	s.ts = ts
	ts.cmdSubs[s] = struct{}{}
	h.g.mu.Unlock()
	if err := h.g.subscribe(ctx, ts, h.d); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}
