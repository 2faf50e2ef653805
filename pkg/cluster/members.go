package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// MembersBucket is the key-value bucket of the live hub replicas.
const MembersBucket = "PASSERELLE_HUB_MEMBERS"

// Member is one live instance as it announces itself.
type Member struct {
	Instance string `json:"instance"`
	// Addr is where the instance serves (a hub replica's API).
	Addr string `json:"addr,omitempty"`
	// Draining: the instance is stopping and takes nothing new.
	Draining bool `json:"draining,omitempty"`
}

// LiveMember is a member as a watcher sees it.
type LiveMember struct {
	Member
	// Since is when this process first saw the member (its own clock).
	Since time.Time
}

// MemberOption configures Members.
type MemberOption func(*memberOptions)

type memberOptions struct {
	bucket string
	ttl    time.Duration
}

// WithMembersBucket names the bucket. Default MembersBucket.
func WithMembersBucket(name string) MemberOption { return func(o *memberOptions) { o.bucket = name } }

// WithMemberTTL sets how long a member outlives its last heartbeat; it
// beats every third of it. Default DefaultLeaseTTL (3 s).
func WithMemberTTL(ttl time.Duration) MemberOption { return func(o *memberOptions) { o.ttl = ttl } }

// Members are the live instances of a service, each announcing itself
// with a heartbeat in a key-value bucket whose entries lapse TTL after
// their last write, and watching the others'. Membership is advisory (it
// balances work); what must be exclusive is guarded by Leases.
type Members struct {
	js       jetstream.JetStream
	log      *slog.Logger
	instance string
	o        memberOptions
	kv       bucketOnce
	view     viewOnce

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	putMu sync.Mutex // one write at a time, each of the current self

	mu      sync.Mutex
	self    Member
	joined  bool
	left    bool
	lastOK  time.Time // last heartbeat stored
	lastErr error
	failing bool
}

// NewMembers returns the membership of instance in a bucket of replicas
// replicas, created on first use.
func NewMembers(js jetstream.JetStream, logger *slog.Logger, instance string, replicas int, opts ...MemberOption) *Members {
	o := memberOptions{bucket: MembersBucket, ttl: DefaultLeaseTTL}
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Members{js: js, log: logger, instance: instance, o: o, ctx: ctx, cancel: cancel,
		self: Member{Instance: instance}}
	m.kv.js = js
	m.kv.cfg = jetstream.KeyValueConfig{
		Bucket:         o.bucket,
		Description:    "Passerelle hub replicas: heartbeats of the live members",
		History:        1,
		TTL:            o.ttl,
		LimitMarkerTTL: markerTTL,
		// Memory: membership is advisory and rebuilt within a heartbeat.
		Storage:  jetstream.MemoryStorage,
		Replicas: max(replicas, 1),
	}
	return m
}

// Instance is this member's id.
func (m *Members) Instance() string { return m.instance }

// Join starts announcing this instance, serving at addr, and watching the
// others. NATS being away is no error: the heartbeat goes on trying (Err
// says so). Join is idempotent.
func (m *Members) Join(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.joined || m.ctx.Err() != nil {
		return
	}
	m.joined = true
	m.self.Addr = addr
	m.view.start(m.ctx, &m.wg, &m.kv, m.log, m.o.ttl+m.o.ttl/3)
	m.wg.Add(1)
	go m.heartbeat()
}

// SetDraining announces that this member drains: the others stop giving
// it work. It returns once the announcement is stored (or ctx ends).
func (m *Members) SetDraining(ctx context.Context) error {
	m.mu.Lock()
	m.self.Draining = true
	m.mu.Unlock()
	return m.put(ctx)
}

// Leave stops the heartbeat and removes this member at once (instead of
// letting it lapse).
func (m *Members) Leave(ctx context.Context) error {
	m.mu.Lock()
	wasJoined := m.joined && !m.left
	m.left = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	if !wasJoined {
		return nil
	}
	kv, err := m.kv.get(ctx)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, escapeKey(m.instance)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	return nil
}

// Close stops the heartbeat and the watch without leaving: the member
// lapses.
func (m *Members) Close() {
	m.cancel()
	m.wg.Wait()
}

// Live returns the live members, sorted by instance. Until the watch has
// read the bucket, it returns none.
func (m *Members) Live() []LiveMember {
	m.mu.Lock()
	v := m.view.v
	m.mu.Unlock()
	if v == nil {
		return nil
	}
	var out []LiveMember
	v.each(func(_ string, value []byte, since time.Time) {
		var mb Member
		if json.Unmarshal(value, &mb) == nil && mb.Instance != "" {
			out = append(out, LiveMember{Member: mb, Since: since})
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
	return out
}

// Changed returns a channel closed at the next change of the members (one
// joins, leaves, lapses or drains); nil before Join.
func (m *Members) Changed() <-chan struct{} {
	m.mu.Lock()
	v := m.view.v
	m.mu.Unlock()
	if v == nil {
		return nil
	}
	return v.changedCh()
}

// Err is nil while this member's heartbeat is stored in time, and says
// why not otherwise (NATS unreachable): the others then see it lapse.
func (m *Members) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !m.joined:
		return errors.New("cluster: not joined")
	case m.lastOK.IsZero() && m.lastErr == nil:
		return errors.New("cluster: first heartbeat under way")
	case time.Since(m.lastOK) > m.o.ttl-m.o.ttl/3:
		return fmt.Errorf("cluster: no heartbeat stored for %s: %v", time.Since(m.lastOK).Round(time.Millisecond), m.lastErr)
	}
	return nil
}

func (m *Members) heartbeat() {
	defer m.wg.Done()
	every := m.o.ttl / 3
	for {
		ctx, cancel := context.WithTimeout(m.ctx, every)
		_ = m.put(ctx)
		cancel()
		t := time.NewTimer(every)
		select {
		case <-m.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// put stores this member as it is now, recording the outcome for Err and
// logging the first failure and the recovery. Writes go one at a time, so
// the last one stored is the newest.
func (m *Members) put(ctx context.Context) error {
	m.putMu.Lock()
	defer m.putMu.Unlock()
	m.mu.Lock()
	value, _ := json.Marshal(m.self)
	m.mu.Unlock()
	kv, err := m.kv.get(ctx)
	if err == nil {
		if _, err = kv.Put(ctx, escapeKey(m.instance), value); err != nil {
			m.kv.failed(err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if m.ctx.Err() == nil && !m.failing {
			m.log.Warn("cluster: cannot store this member's heartbeat", "instance", m.instance, "err", err)
		}
		m.failing, m.lastErr = true, err
		return err
	}
	if m.failing {
		m.log.Info("cluster: storing this member's heartbeat again", "instance", m.instance)
	}
	m.failing, m.lastErr, m.lastOK = false, nil, time.Now()
	return nil
}
