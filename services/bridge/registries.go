package bridge

import (
	"errors"
	"sync"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// Registry rules (compat-spec section 2), kept here for every protocol
// front end of the bridge.

// mqttDisabled is iotpb.MqttState MQTT_DISABLED; UNSPECIFIED counts as
// enabled.
const mqttDisabled = 2

// mqttEnabled reports whether devices of reg may use MQTT.
func mqttEnabled(reg *store.Registry) bool { return reg.MQTTEnabledState != mqttDisabled }

// errMQTTDisabled is the lastErrorStatus message of a connection closed
// because its registry's MQTT was disabled, and the log reason of a refused
// CONNECT.
const errMQTTDisabled = "MQTT is disabled on the registry"

// eventTopic is the Pub/Sub topic of an event: the first notification
// config whose subfolder matches, or the catch-all; "" when none does.
func eventTopic(reg *store.Registry, subFolder string) string {
	for _, n := range reg.EventNotificationConfigs {
		if n.SubfolderMatches == "" || n.SubfolderMatches == subFolder {
			return n.PubsubTopicName
		}
	}
	return ""
}

// registryCache keeps registries read from the store. An entry lives for
// ttl, a safety net for announcements that never arrive; a registry
// announcement drops its entry at once, and a Resync drops them all. A read
// from the store that raced an invalidation is not kept (gen), so a stale
// registry never outlives the announcement of its change.
type registryCache struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	gen     uint64 // bumped by every invalidation
	entries map[store.RegistryKey]regEntry
}

type regEntry struct {
	reg *store.Registry // never modified once cached
	at  time.Time
}

// maxCachedRegistries bounds the cache; registries are few.
const maxCachedRegistries = 10000

func newRegistryCache(ttl time.Duration) *registryCache {
	return &registryCache{ttl: ttl, max: maxCachedRegistries, entries: make(map[store.RegistryKey]regEntry)}
}

// get returns the cached registry, if fresh at now, and the generation to
// hand to put after a miss.
func (c *registryCache) get(key store.RegistryKey, now time.Time) (*store.Registry, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok && now.Sub(e.at) < c.ttl {
		return e.reg, c.gen
	}
	return nil, c.gen
}

// stale returns the cached registry however old it is: what the bridge
// serves while the store cannot be reached (no change can be made to it
// meanwhile, and an announced change has dropped the entry).
func (c *registryCache) stale(key store.RegistryKey) *store.Registry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[key].reg
}

// put caches reg, read at generation gen, unless an invalidation happened
// since.
func (c *registryCache) put(gen uint64, reg *store.Registry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[reg.Key] = regEntry{reg: reg, at: now}
}

// generation returns the number of invalidations so far.
func (c *registryCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *registryCache) invalidate(key store.RegistryKey) {
	c.mu.Lock()
	c.gen++
	delete(c.entries, key)
	c.mu.Unlock()
}

func (c *registryCache) invalidateAll() {
	c.mu.Lock()
	c.gen++
	clear(c.entries)
	c.mu.Unlock()
}

// registry returns a registry, from the cache or the store. While the
// store is unreachable an expired entry is served, so that connected
// devices keep sending telemetry through a database outage.
func (b *Bridge) registry(key store.RegistryKey) (*store.Registry, error) {
	now := b.opts.now()
	reg, gen := b.regs.get(key, now)
	if reg != nil {
		return reg, nil
	}
	ctx, cancel := b.storeCtx()
	defer cancel()
	reg, err := b.st.GetRegistry(ctx, key)
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			if old := b.regs.stale(key); old != nil {
				return old, nil
			}
		}
		return nil, err
	}
	b.regs.put(gen, reg, now)
	return reg, nil
}

func announcedRegistry(a bus.Announcement) store.RegistryKey {
	return store.RegistryKey{Project: a.Project, Location: a.Location, ID: a.Registry}
}

// onRegistryAnnouncement runs on the bus's announcement goroutine: the
// cached registry is dropped before any other announcement is handled, and
// its application to live connections goes to the pool.
func (b *Bridge) onRegistryAnnouncement(a bus.Announcement) {
	key := announcedRegistry(a)
	b.regs.invalidate(key)
	b.goWork(func() { b.applyRegistry(key) })
}

// reapplyAllRegistries follows a Resync: every registry with a live
// connection is read again and applied.
func (b *Bridge) reapplyAllRegistries() {
	b.regs.invalidateAll()
	seen := make(map[store.RegistryKey]bool)
	for _, c := range b.allConns() {
		if !seen[c.registry] {
			seen[c.registry] = true
			key := c.registry
			b.goWork(func() { b.applyRegistry(key) })
		}
	}
}

// applyRegistry reads a registry again and applies it to the live
// connections of its devices: with MQTT disabled (or the registry gone)
// they are closed, with the reason in the device's lastErrorStatus. The
// other fields (notification configs) need nothing more: each message
// reads the registry through the cache, which now holds the new one. A
// bridge that serves no device of the registry reads nothing (in a
// cluster, every bridge hears every announcement).
func (b *Bridge) applyRegistry(key store.RegistryKey) {
	var conns []*conn
	for _, c := range b.allConns() {
		if c.registry == key {
			conns = append(conns, c)
		}
	}
	if len(conns) == 0 {
		return
	}
	reg, err := b.registry(key) // also refills the cache for the next message
	var code int32
	var reason string
	switch {
	case errors.Is(err, store.ErrNotFound):
		code, reason = codeNotFound, "the registry was deleted"
	case err != nil:
		// The cache entry is gone: the next CONNECT and message read the
		// store again; live connections keep their state until the next
		// announcement or Resync.
		b.log.Warn("bridge: re-reading a registry after its announcement", "registry", key.ID, "project", key.Project, "err", err)
		return
	case !mqttEnabled(reg):
		code, reason = codeFailedPrecondition, errMQTTDisabled
	default:
		return
	}
	for _, c := range conns {
		c.close(code, reason)
	}
}
