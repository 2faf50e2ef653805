package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseView is a local copy of who holds which lease, kept up to date by a
// watch on the bucket. Reading it costs no round trip; it may be a moment
// behind the bucket.
type LeaseView struct{ v *kvView }

// View returns the leases' view, watching the bucket from the first call
// until Close.
func (l *Leases) View() *LeaseView {
	return &LeaseView{l.view.start(l.ctx, &l.wg, &l.kv, l.log, l.o.ttl+l.o.ttl/3)}
}

// Holder returns who holds name. synced is false until the watch has read
// the bucket once (or while it re-reads it after losing NATS): held is then
// unknown. An entry not refreshed for longer than the TTL and a third
// reads as not held, whatever the watch saw last.
func (v *LeaseView) Holder(name string) (h Holding, held, synced bool) {
	val, _, ok, synced := v.v.get(escapeKey(name))
	if !ok || json.Unmarshal(val, &h) != nil {
		return Holding{}, false, synced
	}
	return h, true, synced
}

// Changed returns a channel closed at the next change of a lease's holder
// (not at refreshes).
func (v *LeaseView) Changed() <-chan struct{} { return v.v.changedCh() }

// viewOnce starts one kvView.
type viewOnce struct {
	once sync.Once
	v    *kvView
}

func (o *viewOnce) start(ctx context.Context, wg *sync.WaitGroup, b *bucketOnce, log *slog.Logger, stale time.Duration) *kvView {
	o.once.Do(func() {
		o.v = &kvView{entries: map[string]*viewEntry{}, changed: make(chan struct{}), stale: stale}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.v.run(ctx, b, log)
		}()
	})
	return o.v
}

// kvView is a local copy of a bucket's keys, kept by a watch. Entries not
// written for stale read as gone: a lapse the watch missed (NATS away for
// longer than the bucket keeps its markers) cannot linger.
type kvView struct {
	stale time.Duration

	mu      sync.Mutex
	entries map[string]*viewEntry
	synced  bool
	changed chan struct{} // closed and replaced at every change
}

type viewEntry struct {
	value     []byte
	written   time.Time // when the watch last saw it written (local clock)
	since     time.Time // when the watch first saw it (local clock)
	confirmed bool      // seen since the current watch began
}

func (v *kvView) get(key string) (value []byte, since time.Time, ok, synced bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.entries[key]
	if e == nil || time.Since(e.written) > v.stale {
		return nil, time.Time{}, false, v.synced
	}
	return e.value, e.since, true, v.synced
}

// each calls f for every live entry, under the view's lock.
func (v *kvView) each(f func(key string, value []byte, since time.Time)) (synced bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for k, e := range v.entries {
		if time.Since(e.written) <= v.stale {
			f(k, e.value, e.since)
		}
	}
	return v.synced
}

func (v *kvView) changedCh() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.changed
}

func (v *kvView) broadcastLocked() {
	close(v.changed)
	v.changed = make(chan struct{})
}

// run watches the bucket until ctx ends, watching again a second after
// the watch ends (NATS closed the connection, the bucket could not be
// made).
func (v *kvView) run(ctx context.Context, b *bucketOnce, log *slog.Logger) {
	for {
		kv, err := b.get(ctx)
		var created time.Time
		if err == nil {
			created, err = bucketCreated(ctx, kv)
		}
		if err == nil {
			var w jetstream.KeyWatcher
			if w, err = kv.WatchAll(ctx); err == nil {
				v.consume(ctx, w, func() bool {
					c, err := bucketCreated(ctx, kv)
					return err == nil && !c.Equal(created)
				})
				_ = w.Stop()
			}
		}
		if err != nil {
			b.failed(err)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Debug("cluster: cannot watch a bucket; trying again", "bucket", b.cfg.Bucket, "err", err)
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// bucketCreated is when the bucket's stream was made: a bucket made again
// (a memory bucket after its NATS restarted) has another.
func bucketCreated(ctx context.Context, kv jetstream.KeyValue) (time.Time, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
		return bs.StreamInfo().Created, nil
	}
	return time.Time{}, nil
}

// consume applies w's updates until it ends, or until the bucket turns
// out to have been made again while the watch heard nothing (remade asks
// that): the watch of the old bucket would never hear from the new one.
func (v *kvView) consume(ctx context.Context, w jetstream.KeyWatcher, remade func() bool) {
	v.mu.Lock()
	v.synced = false
	for _, e := range v.entries {
		e.confirmed = false
	}
	v.mu.Unlock()
	check := time.NewTicker(v.stale)
	defer check.Stop()
	heard := time.Now()
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case e, ok = <-w.Updates():
			if !ok {
				return
			}
		case <-check.C:
			if time.Since(heard) >= v.stale && remade() {
				return
			}
			continue
		case <-ctx.Done():
			return
		}
		now := time.Now()
		heard = now
		v.mu.Lock()
		switch {
		case e == nil: // the initial values are in
			for k, old := range v.entries {
				if !old.confirmed {
					delete(v.entries, k)
				}
			}
			v.synced = true
			v.broadcastLocked()
		case e.Operation() == jetstream.KeyValuePut:
			old := v.entries[e.Key()]
			switch {
			case old == nil || now.Sub(old.written) > v.stale:
				v.entries[e.Key()] = &viewEntry{value: e.Value(), written: now, since: now, confirmed: true}
				v.broadcastLocked()
			case string(old.value) != string(e.Value()):
				old.value, old.written, old.confirmed = e.Value(), now, true
				v.broadcastLocked()
			default:
				old.written, old.confirmed = now, true
			}
		default: // deleted, purged or lapsed
			if _, had := v.entries[e.Key()]; had {
				delete(v.entries, e.Key())
				v.broadcastLocked()
			}
		}
		v.mu.Unlock()
	}
}
