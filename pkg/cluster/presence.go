package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/bus"
)

// PresenceBucket is the JetStream key-value bucket of presence records:
// one key per client (a bridge uses the connecting device's or gateway's
// numId), whose value names the connection that holds it.
//
// Its stream keeps one value per key (history 1) in files, replicated as
// asked, and drops values untouched for PresenceTTL: a record only
// matters while its connection is being made or taken over, so an old one
// (a deleted device's, a dead process's) can go.
const PresenceBucket = "PASSERELLE_PRESENCE"

// PresenceTTL is how long the bucket keeps a record nobody rewrote.
// Losing a live connection's record does no harm: any newer connection of
// the client writes its own, which the holder sees.
const PresenceTTL = 24 * time.Hour

// ErrClosed is returned by Claim once the Presence is closed.
var ErrClosed = errors.New("cluster: closed")

// PresenceRecord is the value of a presence key: the connection of a
// client that was made last, anywhere in the cluster.
type PresenceRecord struct {
	// Instance is the process that holds (or held) the connection.
	Instance string `json:"instance"`
	// Conn tells apart the connections of one instance.
	Conn uint64 `json:"conn"`
	// At is when the connection was made, by the instance's clock.
	At time.Time `json:"at"`
	// Released: the connection ended. A released record never stands in
	// the way of a new connection, but an older connection that did not
	// know of it yet still yields to it.
	Released bool `json:"released,omitempty"`
}

// newer reports whether r is a later connection than o: the later
// connect time, and for the same time the greater instance, then
// connection. Arrival order in the bucket says nothing: a bridge under
// load may write a connect seconds after it happened.
func (r PresenceRecord) newer(o PresenceRecord) bool {
	if !r.At.Equal(o.At) {
		return r.At.After(o.At)
	}
	if r.Instance != o.Instance {
		return r.Instance > o.Instance
	}
	return r.Conn > o.Conn
}

func (r PresenceRecord) same(o PresenceRecord) bool {
	return r.Instance == o.Instance && r.Conn == o.Conn
}

// Presence keeps one connection per client across the processes that
// share a NATS cluster: each process claims the clients it holds, and a
// process whose connection for a client is older than another's claim
// anywhere is told to close it. It is the one-connection-per-device rule
// of Cloud IoT Core's bridge, across bridges.
//
// A claim is written to PresenceBucket after compare-and-set against the
// record there: over a released record, a missing one or an older one it
// is written; against a newer live one it loses at once. So the record of
// a client only moves to later connections, and every process watching
// the bucket sees, for each client it holds, a record at least as new as
// the newest connection: the holder of any older connection closes it.
// When two connects race, the newer one (by its process's clock) survives
// and exactly one does; processes' clocks must agree to well under the
// time a device takes to reconnect (NTP does).
//
// Nothing is written synchronously with a claim: a bounded set of workers
// records claims and releases in the background, with one round trip to
// read the record and one to write it. While JetStream is unreachable,
// claims wait; when it is back (a reconnection, or a NATS cluster split
// that healed), every claim held is checked and written again, so that
// connections made on both sides of a split end within a probe interval
// and a round trip of the heal. Every process sees every claim: it costs
// a map lookup for a client the process does not hold, and the watch is
// flow-controlled by JetStream, so a reconnect storm is read at the pace
// the process can take, never buffered without bound.
//
// A process that dies leaves its records behind; they never delay a
// reconnect elsewhere, as the new connection is later.
type Presence struct {
	log      *slog.Logger
	kv       jetstream.KeyValue
	js       jetstream.JetStream
	instance string
	replicas int
	o        presenceOptions

	nextConn atomic.Uint64

	mu       sync.Mutex
	cond     *sync.Cond // workers wait on it for work, health or the end
	idle     *sync.Cond // Close waits on it for the queue to empty
	keys     map[string]*presenceKey
	recent   map[string]recentEntry // the last change seen of any key, bounded
	queue    []string               // keys waiting for a worker, each once (presenceKey.queued)
	busy     int                    // workers in a round trip
	degraded bool                   // JetStream unreachable: workers wait
	since    time.Time
	closing  bool // Close called: no new claims
	stopped  bool // workers end

	// The watch: its consumer, the highest revision it delivered, what
	// the last probe saw of it (changes pending, highest delivered), and
	// the request to start it again.
	cons                                      jetstream.Consumer
	delivered, probedDelivered, probedPending uint64
	restart                                   chan struct{} // capacity 1

	ctx    context.Context // ends when Close gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// presenceKey is what this process knows of one client.
type presenceKey struct {
	claims []*presenceClaim // live connections held here, any order
	mine   *PresenceRecord  // the bucket's record when it is ours, else nil
	seen   uint64           // the highest revision of the key known here
	queued bool
	busy   bool // a worker is syncing it
	again  bool // changed while busy: queue again after
}

// recentEntry is the last change of a key the watch delivered, kept for
// any key (held here or not), so that a claim can compare-and-set in one
// round trip, without reading the record first. A stale one costs a
// failed write and a read: correctness rests on the revision check.
type recentEntry struct {
	rev   uint64
	put   bool
	value []byte
}

// maxRecent bounds the recent changes kept (about 200 bytes each); past
// it an arbitrary one makes room for each new key, and a claim of a key
// no longer kept reads the record before it writes.
const maxRecent = 1 << 16

type presenceClaim struct {
	key  string
	rec  PresenceRecord
	lost func()
	done bool // released, or lost
}

type presenceOptions struct {
	workers       int
	opTimeout     time.Duration
	probeHealthy  time.Duration
	probeDegraded time.Duration
	closeTimeout  time.Duration
}

// PresenceOption configures NewPresence.
type PresenceOption func(*presenceOptions)

// WithPresenceWorkers sets how many claims and releases are written at
// once. Default 16.
func WithPresenceWorkers(n int) PresenceOption {
	return func(o *presenceOptions) { o.workers = max(n, 1) }
}

// WithPresenceProbe sets how often JetStream is probed while it answers
// (healthy) and while it does not (degraded). They bound the time from a
// heal to the check of every claim, and the time to notice a watch that
// stalled (two healthy probes). Defaults 500 ms and 200 ms.
func WithPresenceProbe(healthy, degraded time.Duration) PresenceOption {
	return func(o *presenceOptions) { o.probeHealthy, o.probeDegraded = healthy, degraded }
}

// WithPresenceCloseTimeout bounds how long Close waits to write the
// releases of the connections closed before it. Default 3 s.
func WithPresenceCloseTimeout(d time.Duration) PresenceOption {
	return func(o *presenceOptions) { o.closeTimeout = d }
}

// NewPresence creates or updates PresenceBucket with the given replica
// count and starts watching it; instance names this process in its
// records (NewInstanceID). Close stops it.
func NewPresence(ctx context.Context, logger *slog.Logger, js jetstream.JetStream, instance string, replicas int, opts ...PresenceOption) (*Presence, error) {
	if err := CheckInstanceID(instance); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	o := presenceOptions{
		workers:       16,
		opTimeout:     2 * time.Second,
		probeHealthy:  500 * time.Millisecond,
		probeDegraded: 200 * time.Millisecond,
		closeTimeout:  3 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	p := &Presence{
		log: logger.With("component", "presence"), js: js, instance: instance, replicas: max(replicas, 1), o: o,
		keys: make(map[string]*presenceKey), recent: make(map[string]recentEntry), restart: make(chan struct{}, 1),
	}
	p.cond = sync.NewCond(&p.mu)
	p.idle = sync.NewCond(&p.mu)
	kv, err := p.createBucket(ctx)
	if err != nil {
		return nil, err
	}
	p.kv = kv
	// The watch starts after the bucket's last revision (from a
	// sequence, not "new": a consumer reset before the first change would
	// start at "new" again, and miss what came between).
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: reading the %s bucket's state: %w", PresenceBucket, err)
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
		p.delivered = bs.StreamInfo().State.LastSeq
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	cc, cons, err := p.startWatch(ctx, p.delivered+1)
	if err != nil {
		p.cancel()
		return nil, err
	}
	p.cons = cons
	p.wg.Add(2 + o.workers)
	go p.watch(cc)
	go p.probe()
	for range o.workers {
		go p.work()
	}
	return p, nil
}

// bucketSetupTimeout bounds how long createBucket waits for a JetStream
// cluster that has just started (as the bus does for its stream), and
// bucketAttemptTimeout each attempt: a cluster drops the requests it gets
// while it elects a leader, unanswered.
const (
	bucketSetupTimeout   = 30 * time.Second
	bucketAttemptTimeout = 5 * time.Second
)

func (p *Presence) createBucket(ctx context.Context) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, bucketSetupTimeout)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, bucketAttemptTimeout)
		kv, err := p.js.CreateOrUpdateKeyValue(actx, jetstream.KeyValueConfig{
			Bucket:      PresenceBucket,
			Description: "Passerelle: the process holding each client's connection",
			History:     1,
			TTL:         PresenceTTL,
			Storage:     jetstream.FileStorage,
			Replicas:    p.replicas,
		})
		acancel()
		if err == nil {
			return kv, nil
		}
		if !bus.TransientSetupError(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("cluster: creating or updating the %s bucket (%d replicas): %w", PresenceBucket, p.replicas, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Instance returns the id this process writes in its records.
func (p *Presence) Instance() string { return p.instance }

// Claim records that this process holds a connection of the client key,
// made at at. lost is called once (on a goroutine of the Presence, which
// it must not hold up) if a newer connection of the same client exists,
// here or in another process: the caller then closes its connection.
// release ends the claim when the connection ends, whatever the reason;
// it may be called more than once, and after lost. The claim is written in
// the background: Claim never waits for NATS.
//
// The key must be a valid key-value key ([-/_=.a-zA-Z0-9]+, not starting
// or ending with '.').
func (p *Presence) Claim(key string, at time.Time, lost func()) (release func(), err error) {
	if !validKey(key) {
		return nil, fmt.Errorf("cluster: %q is not a valid presence key", key)
	}
	c := &presenceClaim{key: key, lost: lost,
		rec: PresenceRecord{Instance: p.instance, Conn: p.nextConn.Add(1), At: at.UTC()}}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return nil, ErrClosed
	}
	ks := p.keys[key]
	if ks == nil {
		ks = &presenceKey{}
		p.keys[key] = ks
	}
	ks.claims = append(ks.claims, c)
	p.enqueueLocked(key, ks)
	return func() { p.release(c) }, nil
}

func (p *Presence) release(c *presenceClaim) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	ks := p.keys[c.key]
	if ks == nil {
		return
	}
	ks.removeClaim(c)
	// The worker marks our record released, or writes the claim that is
	// now the newest here.
	p.enqueueLocked(c.key, ks)
}

func (ks *presenceKey) removeClaim(c *presenceClaim) {
	for i, x := range ks.claims {
		if x == c {
			ks.claims = append(ks.claims[:i], ks.claims[i+1:]...)
			return
		}
	}
}

// newest returns the latest live claim held here, or nil.
func (ks *presenceKey) newest() *presenceClaim {
	var best *presenceClaim
	for _, c := range ks.claims {
		if best == nil || c.rec.newer(best.rec) {
			best = c
		}
	}
	return best
}

// loseOlderLocked ends every claim here older than rec (except rec's own)
// and returns their lost callbacks, to be called without the lock.
func (ks *presenceKey) loseOlderLocked(rec PresenceRecord, lost []func()) []func() {
	kept := ks.claims[:0]
	for _, c := range ks.claims {
		if !c.rec.same(rec) && rec.newer(c.rec) {
			c.done = true
			if c.lost != nil {
				lost = append(lost, c.lost)
			}
			continue
		}
		kept = append(kept, c)
	}
	clear(ks.claims[len(kept):])
	ks.claims = kept
	return lost
}

func (p *Presence) enqueueLocked(key string, ks *presenceKey) {
	if ks.busy {
		ks.again = true
		return
	}
	if !ks.queued {
		ks.queued = true
		p.queue = append(p.queue, key)
		p.cond.Signal()
	}
}

// forgetLocked drops what is known of a key that needs nothing more.
func (p *Presence) forgetLocked(key string, ks *presenceKey) {
	if len(ks.claims) == 0 && ks.mine == nil && !ks.queued && !ks.busy {
		delete(p.keys, key)
	}
}

// Ready reports whether claims are being recorded: an error while
// JetStream does not answer (the connections held are kept, and their
// claims written when it is back), or once closed.
func (p *Presence) Ready(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closing:
		return ErrClosed
	case p.degraded:
		return fmt.Errorf("presence: JetStream has not answered since %s; %d clients wait to be recorded",
			p.since.Format(time.RFC3339), len(p.keys))
	}
	return nil
}

// Holder returns the record of the client key in the bucket: the latest
// connection made anywhere (Released once it ended), or found false.
func (p *Presence) Holder(ctx context.Context, key string) (rec PresenceRecord, found bool, err error) {
	e, err := p.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("cluster: reading presence of %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, false, fmt.Errorf("cluster: presence record of %s: %w", key, err)
	}
	return rec, true, nil
}

// Pending returns how many clients have claims or releases not yet
// written.
func (p *Presence) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.busy
	for _, ks := range p.keys {
		if ks.queued {
			n++
		}
	}
	return n
}

// Close stops claims, waits (at most the close timeout) for the releases
// and claims not yet written, and stops the watch. It does not close the
// NATS connection. Calling it again does nothing.
func (p *Presence) Close() error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return nil
	}
	p.closing = true
	deadline := time.Now().Add(p.o.closeTimeout)
	timer := time.AfterFunc(p.o.closeTimeout, func() {
		p.mu.Lock()
		p.idle.Broadcast()
		p.mu.Unlock()
	})
	for (len(p.queue) > 0 || p.busy > 0) && !p.degraded && time.Now().Before(deadline) {
		p.idle.Wait()
	}
	timer.Stop()
	left := len(p.queue) + p.busy
	p.stopped = true
	p.cond.Broadcast()
	p.mu.Unlock()
	if left > 0 {
		p.log.Warn("presence: closing with records not written; they expire or yield to any newer connection", "clients", left)
	}
	p.cancel()
	p.wg.Wait()
	return nil
}

// validKey is the key-value store's rule for keys.
func validKey(k string) bool {
	if k == "" || k[0] == '.' || k[len(k)-1] == '.' {
		return false
	}
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case c == '-' || c == '/' || c == '_' || c == '=' || c == '.':
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		default:
			return false
		}
	}
	return true
}
