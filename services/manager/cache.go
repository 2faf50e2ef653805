package manager

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// deviceCache keeps devices read by GetDevice for a short time, so that
// admin code polling its devices does not cost a database read each time.
//
// What it may serve stale, and for how long:
//   - changes made through this manager: never; they invalidate the entry
//     before they return;
//   - changes made through another manager instance: until the bus
//     announcement of the change arrives (milliseconds), or ttl without a
//     bus;
//   - the fields the bridges keep (last*Time, state, config acks): up to
//     ttl, which compat-spec allows ("may lag by seconds").
//
// An invalidation that races a read wins: entries read before the latest
// invalidation are not stored (gen).
type deviceCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	gen atomic.Uint64 // bumped by every invalidation

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

// cacheKey is a device ref as a caller names it: by id, or by numId.
type cacheKey struct {
	reg   store.RegistryKey
	id    string
	numID uint64
}

type cacheEntry struct {
	dev     *store.Device // never modified once cached
	expires time.Time
}

func newDeviceCache(ttl time.Duration, max int, now func() time.Time) *deviceCache {
	return &deviceCache{ttl: ttl, max: max, now: now, entries: make(map[cacheKey]cacheEntry)}
}

func refKey(ref store.DeviceRef) cacheKey {
	return cacheKey{reg: ref.Registry, id: ref.ID, numID: ref.NumID}
}

// get returns the cached device for ref, and the generation to hand to put
// after a miss.
func (c *deviceCache) get(ref store.DeviceRef) (*store.Device, uint64) {
	if c == nil {
		return nil, 0
	}
	gen := c.gen.Load()
	c.mu.Lock()
	e, ok := c.entries[refKey(ref)]
	c.mu.Unlock()
	if ok && c.now().Before(e.expires) {
		return e.dev, gen
	}
	return nil, gen
}

// put caches d, read from the store at generation gen, under both of its
// names, unless an invalidation happened since.
func (c *deviceCache) put(gen uint64, d *store.Device) {
	if c == nil {
		return
	}
	e := cacheEntry{dev: d, expires: c.now().Add(c.ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	if len(c.entries)+2 > c.max {
		// Full: drop everything rather than track recency; the cache
		// refills from the next reads.
		clear(c.entries)
	}
	c.entries[cacheKey{reg: d.Registry, id: d.ID}] = e
	c.entries[cacheKey{reg: d.Registry, numID: d.NumID}] = e
}

// invalidate forgets a device under both of its names.
func (c *deviceCache) invalidate(reg store.RegistryKey, id string, numID uint64) {
	if c == nil {
		return
	}
	c.gen.Add(1)
	c.mu.Lock()
	delete(c.entries, cacheKey{reg: reg, id: id})
	delete(c.entries, cacheKey{reg: reg, numID: numID})
	c.mu.Unlock()
}

// invalidateRef forgets the device a write named by ref, under both of its
// names.
func (c *deviceCache) invalidateRef(ref store.DeviceRef) {
	if c == nil {
		return
	}
	c.gen.Add(1)
	c.mu.Lock()
	if e, ok := c.entries[refKey(ref)]; ok {
		delete(c.entries, cacheKey{reg: e.dev.Registry, id: e.dev.ID})
		delete(c.entries, cacheKey{reg: e.dev.Registry, numID: e.dev.NumID})
	}
	delete(c.entries, refKey(ref))
	c.mu.Unlock()
}

// invalidateAll forgets every device (a registry was deleted, or
// announcements may have been missed).
func (c *deviceCache) invalidateAll() {
	if c == nil {
		return
	}
	c.gen.Add(1)
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}
