package hub

import (
	"context"
	"sync"
	"time"
)

// maxVersionBatch bounds the device ids of one admin API lookup (the
// query string carries them all).
const maxVersionBatch = 100

// versionLookupTimeout bounds one admin API lookup.
const versionLookupTimeout = 5 * time.Second

// configVersions finds which version a config the bridge sent is (MQTT
// carries none) by asking the admin API, batching: while a lookup for a
// registry is in flight, the devices asked for meanwhile wait and go
// together in the next one. A config change reaching a thousand streams
// then costs a few ListDevices calls, not a thousand GetDevice calls, and
// the first asker waits for no timer.
//
// A lookup is only sent after the config it is asked for was received, so
// its answer is that config or a newer one; callers compare the data.
type configVersions struct {
	prov Provisioner

	mu   sync.Mutex
	regs map[string]*registryLookups // by registry resource name
}

// registryLookups is one registry's devices waiting for the next lookup,
// and whether a goroutine is sending lookups for it.
type registryLookups struct {
	running bool
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
	return &configVersions{prov: prov, regs: make(map[string]*registryLookups)}
}

// lookup returns device id's current config in registry; found is false
// when the admin API does not know the device.
func (c *configVersions) lookup(ctx context.Context, registry, id string) (cfg DeviceConfig, found bool, err error) {
	c.mu.Lock()
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
	if !r.running {
		// The sender ends as soon as nothing is pending; each of its
		// lookups is bounded by versionLookupTimeout.
		r.running = true
		go c.send(registry, r)
	}
	c.mu.Unlock()
	select {
	case <-a.done:
		return a.cfg, a.found, a.err
	case <-ctx.Done():
		return DeviceConfig{}, false, ctx.Err()
	}
}

// send looks up registry's pending devices, a batch at a time, until none
// are left.
func (c *configVersions) send(registry string, r *registryLookups) {
	for {
		c.mu.Lock()
		if len(r.pending) == 0 {
			r.running = false
			delete(c.regs, registry)
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
		ctx, cancel := context.WithTimeout(context.Background(), versionLookupTimeout)
		got, err := c.prov.DeviceConfigs(ctx, registry, ids)
		cancel()
		for id, a := range batch {
			a.cfg, a.found = got[id]
			a.err = err
			close(a.done)
		}
	}
}
