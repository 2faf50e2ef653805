package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// work writes claims and releases, one key at a time per worker.
func (p *Presence) work() {
	defer p.wg.Done()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for !p.stopped && (len(p.queue) == 0 || p.degraded) {
			p.cond.Wait()
		}
		if p.stopped {
			return
		}
		key := p.queue[0]
		p.queue[0] = ""
		p.queue = p.queue[1:]
		if len(p.queue) == 0 {
			p.queue = nil // let the array go after a storm
		}
		ks := p.keys[key]
		if ks == nil {
			continue
		}
		ks.queued, ks.busy = false, true
		p.busy++
		want := ks.newest()
		var wantRec *PresenceRecord
		if want != nil {
			r := want.rec
			wantRec = &r
		}
		mine, seen := ks.mine, ks.seen
		recent, hasRecent := p.recent[key]
		p.mu.Unlock()

		var res syncResult
		var err error
		done := false
		if hasRecent && wantRec != nil {
			res, done, err = p.syncFromRecent(key, *wantRec, recent)
		}
		if !done && err == nil {
			res, err = p.sync(key, wantRec, mine, seen)
		}

		p.mu.Lock()
		p.busy--
		ks.busy = false
		var lost []func()
		switch {
		case err != nil:
			p.setDegradedLocked(err)
			// Checked again, with every other key, once JetStream answers.
		case res.rev >= ks.seen:
			ks.seen = res.rev
			ks.mine = res.mine
			if res.current != nil {
				lost = ks.loseOlderLocked(*res.current, lost)
			}
		}
		if ks.again {
			ks.again = false
			p.enqueueLocked(key, ks)
		}
		p.forgetLocked(key, ks)
		if p.closing {
			p.idle.Broadcast() // Close waits for the queue to empty
		}
		if len(lost) > 0 {
			p.mu.Unlock()
			for _, f := range lost {
				f()
			}
			p.mu.Lock()
		}
	}
}

// syncResult is what a worker learnt of a key: the record now in the
// bucket (current, nil when none is known), at revision rev, and whether
// it is ours (mine).
type syncResult struct {
	current *PresenceRecord
	mine    *PresenceRecord
	rev     uint64
}

// maxSyncRounds bounds the compare-and-set retries of one sync: each
// retry means another process wrote the key meanwhile, and the next round
// reads what it wrote.
const maxSyncRounds = 8

// sync makes the bucket agree with this process on key: want is the
// newest connection held here (nil: none), mine the record of ours the
// bucket held when last seen. It never writes over a newer live record,
// and marks ours released only if it is still there (revision check).
func (p *Presence) sync(key string, want, mine *PresenceRecord, seen uint64) (syncResult, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.o.opTimeout)
	defer cancel()
	if want == nil {
		if mine == nil || mine.Released {
			return syncResult{mine: mine, rev: seen}, nil
		}
		rel := *mine
		rel.Released = true
		rev, err := p.kv.Update(ctx, key, encodeRecord(rel), seen)
		switch {
		case err == nil:
			return syncResult{current: &rel, mine: nil, rev: rev}, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			// A later connection wrote it: nothing of ours to release.
			return syncResult{rev: seen}, nil
		}
		return syncResult{}, err
	}
	for range maxSyncRounds {
		e, err := p.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			rev, err := p.kv.Create(ctx, key, encodeRecord(*want))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			if err != nil {
				return syncResult{}, err
			}
			return syncResult{current: want, mine: want, rev: rev}, nil
		}
		if err != nil {
			return syncResult{}, err
		}
		cur, derr := decodeRecord(e.Value())
		switch {
		case derr == nil && cur.same(*want):
			return syncResult{current: want, mine: want, rev: e.Revision()}, nil
		case derr == nil && !cur.Released && cur.newer(*want):
			// A later connection holds the client: ours yields.
			return syncResult{current: &cur, rev: e.Revision()}, nil
		}
		// Missing, released, older or unreadable: ours replaces it.
		rev, err := p.kv.Update(ctx, key, encodeRecord(*want), e.Revision())
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return syncResult{}, err
		}
		return syncResult{current: want, mine: want, rev: rev}, nil
	}
	// Another process kept writing the key: its watcher and ours settle
	// it; the key is checked again on the next change.
	return syncResult{rev: seen}, nil
}

// syncFromRecent writes the claim want against the last change of key
// the watch saw, in one round trip; done is false when that change was
// not the last one any more (the write found another revision), and sync
// then reads the record.
func (p *Presence) syncFromRecent(key string, want PresenceRecord, r recentEntry) (res syncResult, done bool, err error) {
	if r.put {
		if cur, derr := decodeRecord(r.value); derr == nil {
			switch {
			case cur.same(want):
				return syncResult{current: &want, mine: &want, rev: r.rev}, true, nil
			case !cur.Released && cur.newer(want):
				return syncResult{current: &cur, rev: r.rev}, true, nil
			}
		}
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.o.opTimeout)
	defer cancel()
	rev, err := p.kv.Update(ctx, key, encodeRecord(want), r.rev)
	switch {
	case err == nil:
		return syncResult{current: &want, mine: &want, rev: rev}, true, nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return syncResult{}, false, nil
	}
	return syncResult{}, false, err
}

func encodeRecord(r PresenceRecord) []byte {
	b, _ := json.Marshal(r) // a struct of plain fields always encodes
	return b
}

func decodeRecord(b []byte) (PresenceRecord, error) {
	var r PresenceRecord
	err := json.Unmarshal(b, &r)
	return r, err
}

// setDegradedLocked marks JetStream unreachable (logged once per outage):
// workers wait for the probe to see it back.
func (p *Presence) setDegradedLocked(err error) {
	if p.degraded || p.stopped {
		return
	}
	p.degraded = true
	p.since = time.Now()
	p.idle.Broadcast() // Close does not wait for an unreachable JetStream
	p.log.Warn("presence: JetStream does not answer; connections are kept and recorded when it is back", "err", err)
}
