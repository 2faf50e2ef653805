package manager

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// deviceCache keeps devices read by GetDevice for a short time, so that
// admin code polling its devices does not cost a database read each time.
//
// What it may serve stale, and for how long:
//   - changes made through this manager: never; they invalidate the entry
//     before they return;
//   - changes made through another manager instance: never when both
//     share one NATS server (the writer's announcement reaches the server
//     before its call returns, and a hit waits until this instance has
//     handled every announcement the server sent it: cachedDevice); on a
//     NATS cluster, for as long as an announcement takes to cross a route
//     between two servers (well under a millisecond on a LAN); without a
//     bus, up to ttl;
//   - the fields the bridges keep (last*Time, state, config acks): up to
//     ttl, which compat-spec allows ("may lag by seconds").
//
// While announcements may have been lost (the bus is disconnected, or
// reconnected and its Resync is not handled yet) nothing is served from
// it.
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

// announcementWatcher is the part of the bus (bus.Bus) that lets the cache
// confirm it has handled every announcement sent before a call.
type announcementWatcher interface {
	WatchAnnouncements(handler func(bus.Announcement)) (*bus.AnnouncementSub, error)
}

// cachedDevice returns the cached device for ref when it may be served,
// and the generation to hand to put after a miss. With a bus, a hit is
// served only after the subscription confirms that every announcement the
// NATS server sent before this call has been handled: a change another
// manager made before the call began has invalidated the entry by then.
// When it cannot confirm (disconnected, a Resync due, no answer in time),
// the call reads the store.
func (m *deviceManager) cachedDevice(ctx context.Context, ref store.DeviceRef) (*store.Device, uint64) {
	d, gen := m.cache.get(ref)
	if d == nil || m.annSync == nil {
		return d, gen
	}
	sctx, cancel := context.WithTimeout(ctx, cacheSyncTimeout)
	defer cancel()
	if err := m.annSync.Sync(sctx); err != nil {
		m.logger.DebugContext(ctx, "device cache: announcements not confirmed, reading the store", "err", err)
		_, gen = m.cache.get(ref)
		return nil, gen
	}
	// Entries the handled announcements invalidated are gone now.
	return m.cache.get(ref)
}

// cacheSyncTimeout bounds the wait for the bus before a cache hit; past it
// the store is read instead.
const cacheSyncTimeout = 250 * time.Millisecond
