package hub

import (
	"context"
	"hash/fnv"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/cluster"
)

// Balance: each gateway has one preferred replica, by rendezvous hashing
// of its name over the candidates (live, not draining, not found
// unreachable, and seen for the settle time; all live ones while none
// is settled, as when a cluster starts). Every replica computes the same
// from the same members, so a free gateway goes to its preferred replica
// wherever the call for it arrives, and a replica hands a gateway it
// holds to the preferred one, one at a time, once the gateway has been
// held for the settle time. Only a change of the members moves a gateway,
// and a replica must stay for the settle time to get any: no flapping.

// candidates returns the replicas gateways may go to now.
func (r *replicaSet) candidates() []cluster.LiveMember {
	r.mu.Lock()
	draining := r.draining
	r.mu.Unlock()
	now := time.Now()
	var all, settled []cluster.LiveMember
	for _, m := range r.members.Live() {
		if m.Draining || (m.Instance == r.self && draining) || r.suspect(m.Instance) {
			continue
		}
		all = append(all, m)
		if now.Sub(m.Since) >= r.settle {
			settled = append(settled, m)
		}
	}
	if len(settled) > 0 {
		return settled
	}
	return all
}

// preferred returns gateway's preferred replica; ok is false when there is
// no candidate (this replica is alone and draining, or cut off).
func (r *replicaSet) preferred(gateway string) (cluster.LiveMember, bool) {
	return rendezvous(gateway, r.withKey(gateway, r.candidates()))
}

// withKey drops from ms the replicas that said they hold no key for
// gateway.
func (r *replicaSet) withKey(gateway string, ms []cluster.LiveMember) []cluster.LiveMember {
	out := ms[:0:0]
	for _, m := range ms {
		if r.hasKey(gateway, m.Instance) {
			out = append(out, m)
		}
	}
	return out
}

// rendezvous returns the member with the highest score for name.
func rendezvous(name string, ms []cluster.LiveMember) (best cluster.LiveMember, ok bool) {
	var bestScore uint64
	for _, m := range ms {
		if s := score(m.Instance, name); !ok || s > bestScore || (s == bestScore && m.Instance < best.Instance) {
			best, bestScore, ok = m, s, true
		}
	}
	return best, ok
}

// score hashes an instance and a name together (FNV-1a, then a 64-bit
// finalizer so that close names spread).
func score(instance, name string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(instance))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(name))
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// balance hands over, one at a time, the gateways this replica holds that
// another replica is preferred for, until the pool closes.
func (r *replicaSet) balance() {
	t := time.NewTicker(balanceEvery)
	defer t.Stop()
	for {
		select {
		case <-r.p.ctx.Done():
			return
		case <-t.C:
		}
		if gateway, o, ok := r.toHandOver(); ok {
			r.log.Info("hub: handing a gateway over to its preferred replica", "gateway", gateway)
			r.handOver(r.p.ctx, gateway, o)
		}
	}
}

// toHandOver picks a gateway to hand over, if any.
func (r *replicaSet) toHandOver() (string, *ownership, bool) {
	cands := r.candidates()
	if len(cands) < 2 {
		return "", nil, false
	}
	for _, gateway := range r.ownedGateways() {
		r.mu.Lock()
		o := r.owned[gateway]
		r.mu.Unlock()
		if o == nil || time.Since(o.since) < r.settle {
			continue
		}
		if pref, ok := rendezvous(gateway, r.withKey(gateway, cands)); ok && pref.Instance != r.self {
			return gateway, o, true
		}
	}
	return "", nil, false
}

// handOver stops o's connection (its lease is released once it is
// closed) and waits for the release, or ctx.
func (r *replicaSet) handOver(ctx context.Context, gateway string, o *ownership) {
	r.evict(gateway, o)
	select {
	case <-o.done:
	case <-ctx.Done():
	}
}

// drain hands over every gateway this replica holds, spread over period,
// and takes none any more: other replicas are preferred from now on
// (SetDraining tells them). It returns once all are handed over, or ctx
// ends.
func (r *replicaSet) drain(ctx context.Context, period time.Duration) {
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
	if err := r.members.SetDraining(ctx); err != nil {
		r.log.Warn("hub: could not tell the other replicas that this one drains", "err", err)
	}
	gateways := r.ownedGateways()
	if len(gateways) == 0 {
		return
	}
	r.log.Info("hub: draining: handing the gateways over", "gateways", len(gateways), "period", period)
	start := time.Now()
	step := period / time.Duration(len(gateways))
	for i, gateway := range gateways {
		if i > 0 {
			t := time.NewTimer(time.Until(start.Add(step * time.Duration(i))))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		r.mu.Lock()
		o := r.owned[gateway]
		r.mu.Unlock()
		if o != nil {
			r.handOver(ctx, gateway, o)
		}
	}
}
