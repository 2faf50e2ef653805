package hub

import (
	"context"
	"sync"
	"time"
)

// maxVersionBatch bounds the device ids of one admin API lookup (the
// query string carries them all).
const maxVersionBatch = 100

// maxVersionSenders bounds the lookups in flight per registry.
const maxVersionSenders = 4

// versionLookupTimeout bounds one admin API lookup, and a caller's wait for
// its answer (a config then goes out without its version).
const versionLookupTimeout = 5 * time.Second

// configVersions finds which version a config the bridge sent is (MQTT
// carries none) by asking the admin API, in batches: while lookups for a
// registry are in flight, the devices asked for meanwhile wait and go
// together in the next one. A config change reaching a thousand streams
// then costs a few ListDevices calls, not a thousand GetDevice calls, and
// the first asker waits for no timer.
//
// A lookup is only sent after the config it is asked for was received, so
// its answer is that config or a newer one; callers compare the data.
type configVersions struct {
	prov Provisioner
	// ctx ends with stop, cancelling the lookups in flight; wg counts
	// the senders.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	regs   map[string]*registryLookups // by registry resource name
	queued int                         // lookups ever asked (for tests)
}

// registryLookups is one registry's devices waiting for the next lookup,
// and how many goroutines are sending lookups for it.
type registryLookups struct {
	senders int
	pending map[string]*versionAnswer // by device id
}

// versionAnswer is the outcome of one device's lookup, shared by every
// stream that asked for it before it was sent. done closes once set.
type versionAnswer struct {
	done  chan struct{}
	cfg   DeviceConfig
	found bool
	err   error
}

func newConfigVersions(prov Provisioner) *configVersions {
	ctx, cancel := context.WithCancel(context.Background())
	return &configVersions{prov: prov, ctx: ctx, cancel: cancel, regs: make(map[string]*registryLookups)}
}

// lookup returns device id's current config in registry; found is false
// when the admin API does not know the device. It waits at most
// versionLookupTimeout.
func (c *configVersions) lookup(ctx context.Context, registry, id string) (cfg DeviceConfig, found bool, err error) {
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		return DeviceConfig{}, false, c.ctx.Err()
	}
	c.queued++
	r := c.regs[registry]
	if r == nil {
		r = &registryLookups{pending: make(map[string]*versionAnswer)}
		c.regs[registry] = r
	}
	a := r.pending[id]
	if a == nil {
		a = &versionAnswer{done: make(chan struct{})}
		r.pending[id] = a
	}
	if r.senders < maxVersionSenders {
		// A sender ends as soon as nothing is pending; each of its
		// lookups is bounded by versionLookupTimeout, and stop ends it.
		r.senders++
		c.wg.Add(1)
		go c.send(registry, r)
	}
	c.mu.Unlock()
	t := time.NewTimer(versionLookupTimeout)
	defer t.Stop()
	select {
	case <-a.done:
		return a.cfg, a.found, a.err
	case <-ctx.Done():
		return DeviceConfig{}, false, ctx.Err()
	case <-t.C:
		return DeviceConfig{}, false, context.DeadlineExceeded
	}
}

// send looks up registry's pending devices, a batch at a time, until none
// are left.
func (c *configVersions) send(registry string, r *registryLookups) {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		if len(r.pending) == 0 {
			r.senders--
			if r.senders == 0 {
				delete(c.regs, registry)
			}
			c.mu.Unlock()
			return
		}
		batch := make(map[string]*versionAnswer, min(len(r.pending), maxVersionBatch))
		for id, a := range r.pending {
			if len(batch) == maxVersionBatch {
				break
			}
			batch[id] = a
			delete(r.pending, id)
		}
		c.mu.Unlock()

		ids := make([]string, 0, len(batch))
		for id := range batch {
			ids = append(ids, id)
		}
		ctx, cancel := context.WithTimeout(c.ctx, versionLookupTimeout)
		got, err := c.prov.DeviceConfigs(ctx, registry, ids)
		cancel()
		for id, a := range batch {
			a.cfg, a.found = got[id]
			a.err = err
			close(a.done)
		}
	}
}

// stop cancels the lookups in flight and waits for the senders to end;
// later lookups fail at once.
func (c *configVersions) stop() {
	c.mu.Lock()
	c.cancel()
	c.mu.Unlock()
	c.wg.Wait()
}
