package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passerelle-iot/passerelle/pkg/cluster"
)

// Replicas is what a Pool needs to be one replica of a hub cluster: the
// replicas share NATS and nothing else.
type Replicas struct {
	// Leases guard the gateways' connections: a replica opens a
	// gateway's connection only while it holds the gateway's lease
	// (cluster.NewLeases on the shared NATS, this replica's instance id).
	Leases *cluster.Leases
	// Members are the live replicas (cluster.NewMembers, the same
	// instance id): gateways are balanced over them.
	Members *cluster.Members
	// Advertise is the host:port at which the other replicas reach this
	// replica's Hub API, to relay calls for the gateways it holds.
	Advertise string
	// PeerTLS dials the other replicas over TLS; nil: plaintext.
	PeerTLS *tls.Config
	// Settle is how long a replica must have been seen before gateways
	// are given to it (a replica that comes and goes takes none).
	// Default 5 s.
	Settle time.Duration
}

// WithReplicas makes the pool one replica of several. Any replica serves
// any call: a gateway's MQTT connection is held by the one replica that
// holds its lease, and the others relay their calls for it to that one
// over its Hub API (forwarding the caller's authorization). A gateway
// whose lease is free goes to the replica that rendezvous hashing prefers
// among the live, settled, non-draining replicas; gateways move, one at a
// time, to where they are preferred as replicas come and go, and away
// from a replica that drains. When the holder dies, its lease lapses (3 s
// after its last refresh) and the gateway is taken over where its callers
// are: calls wait, then go on (devices attached again, subscriptions made
// again, unacknowledged publishes sent again). Default: the pool is alone.
func WithReplicas(r Replicas) PoolOption { return func(o *poolOptions) { o.replicas = &r } }

// errNoOwner: no replica could take the gateway in time (NATS away, every
// replica draining or unreachable).
var errNoOwner = errors.New("no hub replica could take the gateway's connection")

// balanceEvery is how often a replica looks for a gateway to hand over;
// it hands over at most one at a time.
const balanceEvery = 500 * time.Millisecond

// replicaSet is a Pool's part in a cluster: the leases it holds, the
// relays to the other replicas, the balance.
type replicaSet struct {
	p       *Pool
	log     *slog.Logger
	leases  *cluster.Leases
	view    *cluster.LeaseView
	members *cluster.Members
	self    string
	addr    string
	settle  time.Duration
	dial    []grpc.DialOption

	mu        sync.Mutex
	owned     map[string]*ownership // gateways whose lease this replica holds
	acquiring map[string]*attempt   // leases being acquired, single flight
	remotes   map[*remoteLink]struct{}
	conns     map[string]*grpc.ClientConn // to the other replicas, by address
	suspects  map[string]*suspicion       // replicas found unreachable
	keyless   map[string]time.Time        // gateway + "\x00" + replica: holds no key for it, until when
	draining  bool
	closed    bool
}

// ownership is one gateway whose lease this replica holds. Its pool
// connection exists only while ownership does: the pool asks admit
// before it opens one, and tells stopping and ended.
type ownership struct {
	lease   *cluster.Lease
	since   time.Time
	leaving bool          // the connection is stopping: no new one until ended
	done    chan struct{} // closed once the lease is released
}

func newReplicaSet(p *Pool, r Replicas) *replicaSet {
	settle := r.Settle
	if settle <= 0 {
		settle = 5 * time.Second
	}
	creds := insecure.NewCredentials()
	if r.PeerTLS != nil {
		creds = credentials.NewTLS(r.PeerTLS)
	}
	var otelOpts []otelgrpc.Option
	if p.o.tracerProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithTracerProvider(p.o.tracerProvider))
	}
	if p.o.meterProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithMeterProvider(p.o.meterProvider))
	}
	rs := &replicaSet{
		p: p, log: p.log.With("instance", r.Leases.Instance()),
		leases: r.Leases, view: r.Leases.View(), members: r.Members,
		self: r.Leases.Instance(), addr: r.Advertise, settle: settle,
		dial: []grpc.DialOption{
			grpc.WithTransportCredentials(creds),
			// Relays carry the caller's trace context.
			grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOpts...)),
		},
		owned: map[string]*ownership{}, acquiring: map[string]*attempt{},
		remotes: map[*remoteLink]struct{}{}, conns: map[string]*grpc.ClientConn{},
		suspects: map[string]*suspicion{}, keyless: map[string]time.Time{},
	}
	r.Members.Join(r.Advertise)
	return rs
}

// start runs the replica's background loops on the pool's goroutines.
func (r *replicaSet) start() {
	r.p.goOwned(r.balance)
	r.p.goOwned(r.followLeases)
}

// admit is the pool's question before it opens gateway's connection (under
// the pool's lock): only while this replica owns the gateway.
func (r *replicaSet) admit(gateway string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.owned[gateway]; o != nil && !o.leaving {
		return nil
	}
	return errMoved
}

// stopping is told by the pool when it stops gateway's connection (under
// its locks): no connection is opened again until ended.
func (r *replicaSet) stopping(gateway string) {
	r.mu.Lock()
	if o := r.owned[gateway]; o != nil {
		o.leaving = true
	}
	r.mu.Unlock()
}

// ended is told once gateway's connection is closed (its run loop has
// returned): the lease is released, for another replica to take at once.
func (r *replicaSet) ended(gateway string) {
	r.mu.Lock()
	o := r.owned[gateway]
	if o == nil {
		r.mu.Unlock()
		return
	}
	o.leaving = true
	r.mu.Unlock()
	r.release(gateway, o)
}

// release releases o's lease (its connection is closed or never opened)
// and forgets it.
func (r *replicaSet) release(gateway string, o *ownership) {
	ctx, cancel := context.WithTimeout(context.Background(), r.leases.TTL())
	err := o.lease.Release(ctx)
	cancel()
	if err != nil {
		r.log.Debug("hub: could not release a gateway's lease; it lapses", "gateway", gateway, "err", err)
	}
	r.mu.Lock()
	if r.owned[gateway] == o {
		delete(r.owned, gateway)
		close(o.done)
	}
	r.mu.Unlock()
}

// evict stops o's gateway connection for a move (lost lease, hand over):
// its holders here follow the gateway; its lease is released once the
// connection is closed.
func (r *replicaSet) evict(gateway string, o *ownership) {
	p := r.p
	p.mu.Lock()
	r.mu.Lock()
	if r.owned[gateway] != o || o.leaving {
		// Gone, or its connection is already stopping: ended releases it.
		r.mu.Unlock()
		p.mu.Unlock()
		return
	}
	o.leaving = true
	r.mu.Unlock()
	g := p.gws[gateway]
	if g != nil {
		delete(p.gws, gateway)
		g.mu.Lock()
		g.shutdownLocked(errMoved)
		g.mu.Unlock()
	}
	p.mu.Unlock()
	if g == nil {
		// Never connected: nothing to wait for.
		r.release(gateway, o)
	}
}

// watchLease closes the gateway's connection the moment its lease is lost.
func (r *replicaSet) watchLease(gateway string, o *ownership) {
	select {
	case <-o.lease.Lost():
	case <-o.done:
		return
	}
	r.mu.Lock()
	current := r.owned[gateway] == o && !o.leaving
	r.mu.Unlock()
	if current {
		r.log.Warn("hub: lost a gateway's lease; closing its connection", "gateway", gateway, "err", o.lease.Err())
		r.evict(gateway, o)
	}
}

// link finds h a link: the pool's connection when this replica holds the
// gateway (or takes it), else a relay to the replica that holds it (or is
// preferred for it). It waits, at most the pool's wait timeout, while the
// gateway moves.
func (r *replicaSet) link(ctx context.Context, h *Holder) (link, error) {
	wctx, cancel := context.WithTimeout(ctx, r.p.o.waitTimeout)
	defer cancel()
	backoff := 10 * time.Millisecond
	for {
		l, err := r.try(wctx, h)
		if err == nil || !errors.Is(err, errMoved) || h.relayed {
			return l, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-r.view.Changed():
		case <-r.members.Changed():
		case <-wctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w within %s (%v)", errNoOwner, r.p.o.waitTimeout, err)
		}
		t.Stop()
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// try is one attempt of link; errMoved means "not now, try again".
func (r *replicaSet) try(ctx context.Context, h *Holder) (link, error) {
	gateway := h.gateway
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if o := r.owned[gateway]; o != nil {
		leaving := o.leaving
		r.mu.Unlock()
		if leaving {
			return nil, errMoved
		}
		return r.p.holdLocalLink(ctx, h)
	}
	draining := r.draining
	r.mu.Unlock()

	holding, held, synced := r.view.Holder(gateway)
	if !synced {
		var err error
		if holding, held, err = r.leases.Get(ctx, gateway); err != nil {
			return nil, fmt.Errorf("%w: cannot read the gateway's lease: %v", errMoved, err)
		}
	}
	switch {
	case held && (holding.Instance == r.self || h.relayed || r.suspect(holding.Instance)):
		// This replica's own lease, not owned any more, is one it just
		// released (the view has not seen the release yet) or gave up
		// (it lapses): wait, as for a relayed call whose gateway is held
		// elsewhere, or a holder that cannot be reached.
		return nil, errMoved
	case held:
		return r.relay(ctx, h, holding, false)
	case h.relayed:
		// Sent here to take the gateway.
		if draining {
			return nil, errMoved
		}
		return r.acquireLocal(ctx, h)
	}
	pref, ok := r.preferred(gateway)
	if !ok || pref.Instance == r.self {
		return r.acquireLocal(ctx, h)
	}
	return r.relay(ctx, h, cluster.Holding{Instance: pref.Instance, Addr: pref.Addr}, true)
}

// acquireLocal takes the gateway's lease and holds h on this pool.
func (r *replicaSet) acquireLocal(ctx context.Context, h *Holder) (link, error) {
	if _, err := r.p.keys.Get(h.gateway); err != nil {
		if errors.Is(err, ErrNoKey) && !h.relayed && r.hasKey(h.gateway, r.self) {
			if others := r.withKey(h.gateway, r.candidates()); len(others) > 0 && !(len(others) == 1 && others[0].Instance == r.self) {
				// Another replica may hold the key: let it take the gateway.
				r.lacksKey(h.gateway, r.self)
				return nil, fmt.Errorf("%w: %v", errMoved, err)
			}
		}
		return nil, err
	}
	if _, err := r.acquire(ctx, h.gateway); err != nil {
		return nil, err
	}
	l, err := r.p.holdLocalLink(ctx, h)
	if err != nil && !errors.Is(err, errMoved) {
		r.releaseIfUnused(h.gateway)
	}
	return l, err
}

// acquire takes the lease of gateway, once for all concurrent callers.
func (r *replicaSet) acquire(ctx context.Context, gateway string) (*ownership, error) {
	for {
		r.mu.Lock()
		if o := r.owned[gateway]; o != nil {
			r.mu.Unlock()
			if o.leaving {
				return nil, errMoved
			}
			return o, nil
		}
		if a := r.acquiring[gateway]; a != nil {
			r.mu.Unlock()
			select {
			case <-a.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if a.err != nil {
				return nil, a.err
			}
			continue
		}
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		a := &attempt{done: make(chan struct{})}
		r.acquiring[gateway] = a
		r.mu.Unlock()

		lease, err := r.leases.Acquire(ctx, gateway, r.addr)
		var held *cluster.HeldError
		switch {
		case errors.As(err, &held):
			err = fmt.Errorf("%w: %s holds it", errMoved, held.Holder.Instance)
		case err != nil && ctx.Err() == nil:
			err = fmt.Errorf("%w: %v", errMoved, err)
		}
		var o *ownership
		r.mu.Lock()
		delete(r.acquiring, gateway)
		if err == nil && r.closed {
			err = ErrClosed
		}
		if err == nil {
			o = &ownership{lease: lease, since: time.Now(), done: make(chan struct{})}
			r.owned[gateway] = o
		}
		a.err = err
		close(a.done)
		r.mu.Unlock()
		if o != nil && !r.p.goOwned(func() { r.watchLease(gateway, o) }) {
			err = ErrClosed
			r.release(gateway, o)
		}
		if err != nil {
			if lease != nil && o == nil {
				_ = lease.Release(context.Background())
			}
			return nil, err
		}
		r.log.Debug("hub: took a gateway's lease", "gateway", gateway)
		return o, nil
	}
}

// releaseIfUnused releases the lease of gateway when this replica owns it
// but has no connection for it (the hold that took it failed).
func (r *replicaSet) releaseIfUnused(gateway string) {
	r.p.mu.Lock()
	_, connected := r.p.gws[gateway]
	r.mu.Lock()
	o := r.owned[gateway]
	unused := o != nil && !o.leaving && !connected
	if unused {
		o.leaving = true
	}
	r.mu.Unlock()
	r.p.mu.Unlock()
	if unused {
		r.release(gateway, o)
	}
}

// suspicion is a replica found unreachable: it gets no gateway until
// then. Each failure in a row doubles the time, from a lease's TTL (by
// then a dead replica's leases and membership have lapsed) to a minute
// (a live replica that cannot be reached, say a wrong --advertise-addr,
// would otherwise be handed its gateways again and again).
type suspicion struct {
	until   time.Time
	strikes int
}

// suspect reports whether instance was found unreachable lately.
func (r *replicaSet) suspect(instance string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.suspects[instance]
	return s != nil && time.Now().Before(s.until)
}

// distrust marks instance unreachable.
func (r *replicaSet) distrust(instance string) {
	r.mu.Lock()
	s := r.suspects[instance]
	if s == nil {
		s = &suspicion{}
		r.suspects[instance] = s
	}
	if time.Now().Before(s.until) {
		r.mu.Unlock()
		return // one failure, seen by several calls
	}
	s.strikes++
	d := min(r.leases.TTL()<<min(s.strikes-1, 10), time.Minute)
	s.until = time.Now().Add(d)
	strikes := s.strikes
	r.mu.Unlock()
	if strikes == 1 {
		// A replica that died: its membership lapses meanwhile.
		r.log.Info("hub: cannot reach a hub replica; it gets no gateway for a while", "peer", instance, "for", d)
	} else {
		r.log.Warn("hub: still cannot reach a hub replica that says it is alive; check its --advertise-addr", "peer", instance, "for", d)
	}
}

// trust forgets that instance was found unreachable (a relay to it
// worked).
func (r *replicaSet) trust(instance string) {
	r.mu.Lock()
	if len(r.suspects) > 0 {
		delete(r.suspects, instance)
	}
	r.mu.Unlock()
}

// lacksKey notes that instance holds no key for gateway (a cluster whose
// replicas do not share their key store): it is not given the gateway
// for a minute.
func (r *replicaSet) lacksKey(gateway, instance string) {
	k := gateway + "\x00" + instance
	r.mu.Lock()
	_, known := r.keyless[k]
	r.keyless[k] = time.Now().Add(time.Minute)
	r.mu.Unlock()
	if !known {
		r.log.Info("hub: a replica holds no key for a gateway: another takes it (give every replica every key: a shared key store folder, the same gateways file)",
			"gateway", gateway, "peer", instance)
	}
}

// hasKey reports whether instance may hold gateway's key (it did not say
// it holds none lately).
func (r *replicaSet) hasKey(gateway, instance string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := gateway + "\x00" + instance
	until, ok := r.keyless[k]
	if ok && time.Now().After(until) {
		delete(r.keyless, k)
		return true
	}
	return !ok
}

// conn returns the client connection to the replica at addr.
func (r *replicaSet) conn(addr string) (*grpc.ClientConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if c := r.conns[addr]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient(addr, r.dial...)
	if err != nil {
		return nil, fmt.Errorf("hub replica at %s: %w", addr, err)
	}
	r.conns[addr] = c
	return c, nil
}

// followLeases breaks the relays whose gateway is no longer held by the
// replica they relay to (it died, lost its lease, handed the gateway
// over): their holders follow the gateway.
func (r *replicaSet) followLeases() {
	for {
		leases, members := r.view.Changed(), r.members.Changed()
		r.checkRemotes()
		select {
		case <-r.p.ctx.Done():
			return
		case <-leases:
		case <-members:
		case <-time.After(r.leases.TTL()):
			// Entries age out of the view without a change.
		}
	}
}

func (r *replicaSet) checkRemotes() {
	live := map[string]bool{}
	for _, m := range r.members.Live() {
		live[m.Instance] = true
	}
	r.mu.Lock()
	var broken []*remoteLink
	for l := range r.remotes {
		h, held, synced := r.view.Holder(l.h.gateway)
		if !synced {
			continue
		}
		switch {
		case held && h.Instance == l.target.Instance:
			l.sawHeld = true
		case held, l.sawHeld, len(live) > 0 && !live[l.target.Instance]:
			broken = append(broken, l)
		}
	}
	r.mu.Unlock()
	for _, l := range broken {
		l.breakOff(errMoved)
	}
}

// ready is nil while this replica can prove its leases (its heartbeat is
// stored in time).
func (r *replicaSet) ready() error {
	if err := r.members.Err(); err != nil {
		return fmt.Errorf("the hub cannot reach NATS: %w", err)
	}
	return nil
}

// ownedGateways returns the gateways this replica holds, sorted.
func (r *replicaSet) ownedGateways() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.owned))
	for g, o := range r.owned {
		if !o.leaving {
			out = append(out, g)
		}
	}
	sort.Strings(out)
	return out
}

// closeRemotes ends every relay with err (the pool is closing).
func (r *replicaSet) closeRemotes(err error) {
	r.mu.Lock()
	r.closed = true
	ls := make([]*remoteLink, 0, len(r.remotes))
	for l := range r.remotes {
		ls = append(ls, l)
	}
	r.mu.Unlock()
	for _, l := range ls {
		l.breakOff(err)
	}
}

// close releases what is left once the pool's goroutines are done: leases
// of gateways never connected, the membership, the connections to the
// other replicas.
func (r *replicaSet) close(ctx context.Context) {
	r.mu.Lock()
	r.closed = true
	owned := r.owned
	r.owned = map[string]*ownership{}
	conns := r.conns
	r.conns = map[string]*grpc.ClientConn{}
	r.mu.Unlock()
	for g, o := range owned {
		if err := o.lease.Release(ctx); err != nil {
			r.log.Debug("hub: could not release a gateway's lease; it lapses", "gateway", g, "err", err)
		}
		close(o.done)
	}
	if err := r.members.Leave(ctx); err != nil {
		r.log.Debug("hub: could not leave the members; this replica lapses", "err", err)
	}
	for _, c := range conns {
		_ = c.Close()
	}
}
