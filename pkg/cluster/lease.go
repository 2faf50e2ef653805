package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket is the key-value bucket of the hub replicas' gateway leases.
const LeaseBucket = "PASSERELLE_HUB_LEASES"

// DefaultLeaseTTL is how long a lease outlives its last refresh.
const DefaultLeaseTTL = 3 * time.Second

// markerTTL is how long a bucket keeps the marker of a key that lapsed, so
// that watchers learn of the lapse (JetStream's subject delete markers).
const markerTTL = time.Minute

// Errors of leases; test them with errors.Is.
var (
	// ErrHeld: another instance holds the lease (see HeldError).
	ErrHeld = errors.New("cluster: the lease is held by another instance")
	// ErrLeaseLost: a lease could not be refreshed in time, or another
	// instance took it; its holder must stop using what it guards.
	ErrLeaseLost = errors.New("cluster: lease lost")
)

// HeldError is Acquire's error when another instance holds the lease.
type HeldError struct {
	Name   string
	Holder Holding
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("cluster: %s is held by %s", e.Name, e.Holder.Instance)
}

// Unwrap makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Unwrap() error { return ErrHeld }

// Holding is who holds a lease: the instance, and the address it serves
// on (for a hub replica, where the others reach its API).
type Holding struct {
	Instance string `json:"instance"`
	Addr     string `json:"addr,omitempty"`
}

// LeaseOption configures Leases.
type LeaseOption func(*leaseOptions)

type leaseOptions struct {
	bucket string
	ttl    time.Duration
}

// WithLeaseBucket names the bucket. Default LeaseBucket.
func WithLeaseBucket(name string) LeaseOption { return func(o *leaseOptions) { o.bucket = name } }

// WithLeaseTTL sets how long a lease outlives its last refresh. A holder
// refreshes every third of it and gives its lease up when two thirds
// have passed without a refresh. Default DefaultLeaseTTL (3 s).
func WithLeaseTTL(ttl time.Duration) LeaseOption { return func(o *leaseOptions) { o.ttl = ttl } }

// Leases are claims on names, each held by at most one instance at a
// time, kept in a JetStream key-value bucket whose entries lapse TTL after
// their last write. A lease is taken with a create (which fails while
// the key exists) and refreshed with revision-checked updates.
//
// The guarantee: a holder gives its lease up (Lost) no later than two
// thirds of the TTL after it sent its last successful refresh, measured on
// its own monotonic clock. The server lapses the key no earlier than a
// TTL after it stored that refresh, which is after it was sent. So
// another instance can take the lease, through a create that succeeds
// only once the key is gone, no sooner than a third of the TTL (1 s by
// default) after the old holder gave it up. That margin is what covers a
// stalled holder (a GC pause, a stopped process) and clock skew between
// NATS servers; past it, two holders may overlap.
type Leases struct {
	js       jetstream.JetStream
	log      *slog.Logger
	instance string
	replicas int
	o        leaseOptions

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kv     bucketOnce

	mu   sync.Mutex
	held map[string]*Lease // live leases of this instance, by name

	failing atomic.Bool // refreshes are failing (logged once)
	view    viewOnce
}

// NewLeases returns the leases of instance in a bucket of replicas
// replicas, created on first use.
func NewLeases(js jetstream.JetStream, logger *slog.Logger, instance string, replicas int, opts ...LeaseOption) *Leases {
	o := leaseOptions{bucket: LeaseBucket, ttl: DefaultLeaseTTL}
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Leases{js: js, log: logger, instance: instance, replicas: max(replicas, 1), o: o,
		ctx: ctx, cancel: cancel, held: map[string]*Lease{}}
	l.kv.cfg = jetstream.KeyValueConfig{
		Bucket:         o.bucket,
		Description:    "Passerelle hub gateway leases: which replica holds each gateway's MQTT connection",
		History:        1,
		TTL:            o.ttl,
		LimitMarkerTTL: markerTTL,
		// File storage: a lease must survive a restart of the NATS
		// servers, or a new holder could take it while the old one still
		// trusts it.
		Storage:  jetstream.FileStorage,
		Replicas: l.replicas,
	}
	l.kv.js = js
	return l
}

// Instance is the id of the instance these leases are taken for.
func (l *Leases) Instance() string { return l.instance }

// TTL is how long a lease outlives its last refresh.
func (l *Leases) TTL() time.Duration { return l.o.ttl }

// Close stops refreshing the leases held and watching, without releasing
// them: they lapse. Holders see their leases lost.
func (l *Leases) Close() {
	l.cancel()
	l.mu.Lock()
	held := make([]*Lease, 0, len(l.held))
	for _, le := range l.held {
		held = append(held, le)
	}
	l.mu.Unlock()
	for _, le := range held {
		le.lose(fmt.Errorf("%w: the leases were closed", ErrLeaseLost))
	}
	l.wg.Wait()
}

// Acquire takes the lease on name for this instance, recording addr as
// where it serves. It fails with a HeldError when another instance holds
// it. A lease left in the bucket by this instance (a refresh that went
// through after it was given up) is taken back. Watch Lost: once it is
// closed the caller must stop using what the lease guards at once.
func (l *Leases) Acquire(ctx context.Context, name, addr string) (*Lease, error) {
	if err := l.ctx.Err(); err != nil {
		return nil, fmt.Errorf("cluster: the leases are closed")
	}
	kv, err := l.kv.get(ctx)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if _, dup := l.held[name]; dup {
		l.mu.Unlock()
		return nil, &HeldError{Name: name, Holder: Holding{Instance: l.instance, Addr: addr}}
	}
	le := &Lease{l: l, name: name, key: escapeKey(name), lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	l.held[name] = le // reserved: a second Acquire of name fails meanwhile
	l.mu.Unlock()
	le.value, _ = json.Marshal(Holding{Instance: l.instance, Addr: addr})

	sent := time.Now()
	rev, err := kv.Create(ctx, le.key, le.value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		var h Holding
		var e jetstream.KeyValueEntry
		if e, err = kv.Get(ctx, le.key); err == nil {
			if json.Unmarshal(e.Value(), &h) == nil && h.Instance == l.instance {
				// Ours: a refresh that went through after its lease
				// was given up. Nobody else can hold it.
				sent = time.Now()
				rev, err = kv.Update(ctx, le.key, le.value, e.Revision())
			} else {
				err = &HeldError{Name: name, Holder: h}
			}
		} else if errors.Is(err, jetstream.ErrKeyNotFound) {
			err = fmt.Errorf("cluster: %s lapsed while being acquired; try again", name)
		}
	}
	if err != nil {
		l.kv.failed(err)
		l.mu.Lock()
		delete(l.held, name)
		l.mu.Unlock()
		var held *HeldError
		if errors.As(err, &held) {
			return nil, err
		}
		return nil, fmt.Errorf("cluster: acquire %s: %w", name, err)
	}
	le.mu.Lock()
	le.rev = rev
	le.deadline = sent.Add(l.giveUpAfter())
	le.fence = time.AfterFunc(time.Until(le.deadline), le.checkDeadline)
	le.mu.Unlock()
	l.wg.Add(1)
	go le.refresh(kv)
	return le, nil
}

// Get returns who holds name; held is false when nobody does. It reads
// the bucket (possibly a replica a moment behind).
func (l *Leases) Get(ctx context.Context, name string) (h Holding, held bool, err error) {
	kv, err := l.kv.get(ctx)
	if err != nil {
		return Holding{}, false, err
	}
	e, err := kv.Get(ctx, escapeKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Holding{}, false, nil
	}
	if err != nil {
		return Holding{}, false, err
	}
	if err := json.Unmarshal(e.Value(), &h); err != nil {
		return Holding{}, false, fmt.Errorf("cluster: lease %s: %w", name, err)
	}
	return h, true, nil
}

// refreshEvery is the time between refreshes, giveUpAfter the time after
// the last successful refresh was sent when a holder gives its lease up.
func (l *Leases) refreshEvery() time.Duration { return l.o.ttl / 3 }
func (l *Leases) giveUpAfter() time.Duration  { return l.o.ttl - l.o.ttl/3 }

// refreshFailed and refreshed log the first failing refresh and the first
// success after failures, once for all the leases.
func (l *Leases) refreshFailed(name string, err error) {
	if l.ctx.Err() == nil && !l.failing.Swap(true) {
		l.log.Warn("cluster: cannot refresh leases; a lease not refreshed in time is given up", "lease", name, "err", err, "give_up_after", l.giveUpAfter())
	}
}

func (l *Leases) refreshed() {
	if l.failing.Swap(false) {
		l.log.Info("cluster: refreshing leases again")
	}
}

// Lease is one held lease.
type Lease struct {
	l     *Leases
	name  string
	key   string
	value []byte
	lost  chan struct{} // closed once lost
	stop  chan struct{} // closed by Release
	done  chan struct{} // closed when refresh returns

	mu       sync.Mutex
	rev      uint64
	deadline time.Time // when the holder gives the lease up without a refresh
	fence    *time.Timer
	err      error // why it was lost
	stopped  bool
}

// Name is the name the lease is on.
func (le *Lease) Name() string { return le.name }

// Lost is closed when the lease is lost: it could not be refreshed in time
// or another instance holds it. The holder must stop at once.
func (le *Lease) Lost() <-chan struct{} { return le.lost }

// Err says why the lease was lost; nil while it is held.
func (le *Lease) Err() error {
	le.mu.Lock()
	defer le.mu.Unlock()
	return le.err
}

// Release stops refreshing the lease and deletes it, so another instance
// may take it at once, unless the bucket shows it was written by someone
// else since. Release the lease only once what it guards is stopped. It
// is idempotent; after a loss it only tries the delete.
func (le *Lease) Release(ctx context.Context) error {
	le.mu.Lock()
	first := !le.stopped
	le.stopped = true
	le.mu.Unlock()
	if first {
		close(le.stop)
	}
	<-le.done
	le.lose(fmt.Errorf("%w: released", ErrLeaseLost))
	if !first {
		return nil
	}
	le.mu.Lock()
	rev := le.rev
	le.mu.Unlock()
	kv, err := le.l.kv.get(ctx)
	if err != nil {
		return err
	}
	err = kv.Delete(ctx, le.key, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil // lapsed, taken back, or held by another since
	}
	return err
}

// lose marks the lease lost with err (the first reason wins).
func (le *Lease) lose(err error) {
	le.mu.Lock()
	defer le.mu.Unlock()
	if le.err != nil {
		return
	}
	le.err = err
	if le.fence != nil {
		le.fence.Stop()
	}
	close(le.lost)
	le.l.mu.Lock()
	if le.l.held[le.name] == le {
		delete(le.l.held, le.name)
	}
	le.l.mu.Unlock()
}

// checkDeadline runs when the fence timer fires: the lease is lost unless
// a refresh moved the deadline meanwhile.
func (le *Lease) checkDeadline() {
	le.mu.Lock()
	if le.err != nil {
		le.mu.Unlock()
		return
	}
	if left := time.Until(le.deadline); left > 0 {
		le.fence.Reset(left)
		le.mu.Unlock()
		return
	}
	le.mu.Unlock()
	le.lose(fmt.Errorf("%w: not refreshed for %s", ErrLeaseLost, le.l.giveUpAfter()))
}

// refresh updates the lease every third of the TTL until it is lost or
// released. A failed update is retried until the deadline; the fence timer
// gives the lease up at the deadline whatever this loop is doing.
func (le *Lease) refresh(kv jetstream.KeyValue) {
	defer le.l.wg.Done()
	defer close(le.done)
	every := le.l.refreshEvery()
	wait := every
	for {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-le.lost:
			t.Stop()
			return
		case <-le.stop:
			t.Stop()
			return
		case <-le.l.ctx.Done():
			t.Stop()
			return
		}
		le.mu.Lock()
		rev, deadline := le.rev, le.deadline
		le.mu.Unlock()
		sent := time.Now()
		ctx, cancel := context.WithTimeout(le.l.ctx, max(min(every, time.Until(deadline)), 50*time.Millisecond))
		newRev, err := kv.Update(ctx, le.key, le.value, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
			// Someone wrote the key since, or it lapsed: ours only if the
			// write was a refresh of ours that we did not hear back from.
			newRev, err = le.takeBack(ctx, kv)
		}
		cancel()
		if errors.Is(err, ErrLeaseLost) {
			le.lose(err)
			return
		}
		if err != nil {
			le.l.kv.failed(err)
			le.l.refreshFailed(le.name, err)
			wait = every / 4
			continue
		}
		le.l.refreshed()
		le.mu.Lock()
		if le.err == nil {
			le.rev = newRev
			le.deadline = sent.Add(le.l.giveUpAfter())
		}
		le.mu.Unlock()
		wait = every
	}
}

// takeBack reads the key after a revision mismatch: when it holds this
// instance's own value, the update goes on from its revision.
func (le *Lease) takeBack(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	e, err := kv.Get(ctx, le.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return 0, fmt.Errorf("%w: it lapsed", ErrLeaseLost)
	}
	if err != nil {
		return 0, err
	}
	var h Holding
	if json.Unmarshal(e.Value(), &h) != nil || h.Instance != le.l.instance {
		return 0, fmt.Errorf("%w: %s holds it now", ErrLeaseLost, h.Instance)
	}
	return kv.Update(ctx, le.key, le.value, e.Revision())
}

// bucketOnce creates a bucket on first use, retrying on the next use after
// a failure (NATS unreachable at start).
type bucketOnce struct {
	js  jetstream.JetStream
	cfg jetstream.KeyValueConfig

	mu sync.Mutex
	kv jetstream.KeyValue
}

// failed is told of an error using the bucket: when it says the bucket
// is gone (a memory bucket after NATS restarted, a new NATS), the next
// use creates it again.
func (b *bucketOnce) failed(err error) {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, nats.ErrNoResponders) {
		b.mu.Lock()
		b.kv = nil
		b.mu.Unlock()
	}
}

func (b *bucketOnce) get(ctx context.Context) (jetstream.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv != nil {
		return b.kv, nil
	}
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, b.cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: key-value bucket %s: %w", b.cfg.Bucket, err)
	}
	b.kv = kv
	return kv, nil
}

// escapeKey turns a name into a key-value key: bytes other than ASCII
// letters, digits, '-', '_' and '/' become "=XX" (upper-case hex), so a
// key never holds a '.' (a subject token separator) and the mapping is
// one to one.
func escapeKey(name string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '/':
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// unescapeKey reverses escapeKey.
func unescapeKey(key string) (string, bool) {
	if !strings.Contains(key, "=") {
		return key, true
	}
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		if key[i] != '=' {
			b.WriteByte(key[i])
			continue
		}
		if i+2 >= len(key) {
			return "", false
		}
		hi, ok1 := unhex(key[i+1])
		lo, ok2 := unhex(key[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
