package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The bucket's stream and subjects, which the watch reads directly: the
// key-value watcher of nats.go could not be stopped reliably while its
// consumer was being reset.
const (
	presenceStream  = "KV_" + PresenceBucket
	presenceSubject = "$KV." + PresenceBucket + "."
)

// startWatch reads the bucket from revision from on, with an ordered
// consumer of the new JetStream API, whose handler applies each change.
func (p *Presence) startWatch(ctx context.Context, from uint64) (jetstream.ConsumeContext, jetstream.Consumer, error) {
	cons, err := p.js.OrderedConsumer(ctx, presenceStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{presenceSubject + ">"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    max(from, 1),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: watching the %s bucket: %w", PresenceBucket, err)
	}
	cc, err := cons.Consume(p.onMsg, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		p.log.Debug("presence: watching the bucket", "err", err)
	}))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: watching the %s bucket: %w", PresenceBucket, err)
	}
	return cc, cons, nil
}

// watch owns the consumer of the bucket. A consumer that ends under it
// (the connection closed) or stalls while the bucket moves on (lost with
// a NATS server: the client library would only notice after seconds) is
// started again from the last revision delivered, and every claim is
// checked, as changes may have been missed.
func (p *Presence) watch(cc jetstream.ConsumeContext) {
	defer p.wg.Done()
	for {
		closed := cc.Closed()
		select {
		case <-p.ctx.Done():
			cc.Stop()
			<-closed
			return
		case <-p.restart:
			cc.Stop()
			<-closed
		case <-closed:
		}
		p.mu.Lock()
		from := p.delivered + 1
		p.mu.Unlock()
		backoff := 100 * time.Millisecond
		for {
			var cons jetstream.Consumer
			var err error
			if cc, cons, err = p.startWatch(p.ctx, from); err == nil {
				p.mu.Lock()
				p.cons = cons
				p.recheckAllLocked()
				p.mu.Unlock()
				break
			}
			p.mu.Lock()
			p.setDegradedLocked(err)
			p.mu.Unlock()
			t := time.NewTimer(backoff)
			select {
			case <-p.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// onMsg reads one change of the bucket.
func (p *Presence) onMsg(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil || !strings.HasPrefix(m.Subject(), presenceSubject) {
		return
	}
	put := m.Headers().Get("KV-Operation") == "" && m.Headers().Get(jetstream.MarkerReasonHeader) == ""
	p.onEntry(strings.TrimPrefix(m.Subject(), presenceSubject), meta.Sequence.Stream, put, m.Data())
}

// onEntry applies a change of the bucket to a key held here: claims older
// than a live record yield to it; a record that is not ours while we
// hold the client (released, older, deleted by hand) has ours written
// over it.
func (p *Presence) onEntry(key string, rev uint64, put bool, value []byte) {
	p.mu.Lock()
	p.delivered = max(p.delivered, rev)
	if r, ok := p.recent[key]; !ok || rev > r.rev {
		if !ok && len(p.recent) >= maxRecent {
			for k := range p.recent { // an arbitrary one
				delete(p.recent, k)
				break
			}
		}
		p.recent[key] = recentEntry{rev: rev, put: put, value: append([]byte(nil), value...)}
	}
	ks := p.keys[key]
	if ks == nil || rev <= ks.seen {
		p.mu.Unlock()
		return
	}
	ks.seen = rev
	ks.mine = nil
	var lost []func()
	if rec, err := decodeRecord(value); err == nil && put && !rec.Released {
		if rec.Instance == p.instance {
			ks.mine = &rec
		}
		lost = ks.loseOlderLocked(rec, nil)
	}
	if n := ks.newest(); n != nil && (ks.mine == nil || !ks.mine.same(n.rec)) {
		p.enqueueLocked(key, ks)
	}
	p.forgetLocked(key, ks)
	p.mu.Unlock()
	for _, f := range lost {
		f()
	}
}

// recheckAllLocked queues every key held here: after an outage or a
// restarted watch, changes may have been missed, and claims made meanwhile
// wait to be written. It returns how many keys it queued.
func (p *Presence) recheckAllLocked() int {
	n := 0
	for key, ks := range p.keys {
		if len(ks.claims) > 0 || ks.mine != nil {
			p.enqueueLocked(key, ks)
			n++
		}
	}
	return n
}

// probe asks JetStream for the bucket's state, every probeHealthy while
// it answers and every probeDegraded while it does not. When it answers
// again, or the connection was re-established since the last probe (a
// short outage, unseen otherwise), every claim is checked.
func (p *Presence) probe() {
	defer p.wg.Done()
	nc := p.js.Conn()
	reconnects := nc.Stats().Reconnects
	t := time.NewTimer(p.o.probeHealthy)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		err := nats.ErrConnectionReconnecting
		ctx, cancel := context.WithTimeout(p.ctx, p.o.opTimeout)
		if nc.IsConnected() { // else a request waits out its timeout
			_, err = p.kv.Status(ctx)
		}
		recreated := false
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			// Deleted by hand, or lost with a server's storage.
			if _, err = p.createBucket(ctx); err == nil {
				recreated = true
			}
		}
		cancel()
		stalled := err == nil && p.watchStalled()
		r := nc.Stats().Reconnects
		p.mu.Lock()
		next := p.o.probeHealthy
		if stalled {
			select {
			case p.restart <- struct{}{}:
				p.log.Info("presence: the watch of the bucket stalled; starting it again", "from_revision", p.delivered+1)
			default:
			}
		}
		switch {
		case err != nil:
			p.setDegradedLocked(err)
			next = p.o.probeDegraded
		case p.degraded || r != reconnects || recreated:
			var down time.Duration
			if p.degraded {
				down = time.Since(p.since).Round(time.Millisecond)
			}
			p.degraded = false
			if recreated {
				for _, ks := range p.keys {
					ks.seen, ks.mine = 0, nil // revisions start again
				}
				clear(p.recent)
				p.delivered, p.probedDelivered, p.probedPending = 0, 0, 0
			}
			n := p.recheckAllLocked()
			p.log.Info("presence: JetStream answers; checking every claim held", "clients", n, "down_for", down,
				"reconnected", r != reconnects, "bucket_recreated", recreated)
			p.cond.Broadcast()
		}
		p.mu.Unlock()
		reconnects = r
		t.Reset(next)
	}
}

// watchStalled reports whether the bucket's consumer is gone, or has had
// changes pending since the last probe without delivering any.
func (p *Presence) watchStalled() bool {
	p.mu.Lock()
	cons := p.cons
	p.mu.Unlock()
	if cons == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.o.opTimeout)
	ci, err := cons.Info(ctx)
	cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.ctx.Err() != nil {
			return false
		}
		p.log.Debug("presence: reading the watch's consumer", "err", err)
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	}
	stalled := p.probedPending > 0 && ci.NumPending > 0 && p.delivered == p.probedDelivered
	p.probedPending, p.probedDelivered = ci.NumPending, p.delivered
	return stalled
}
