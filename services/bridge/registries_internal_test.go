package bridge

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

func TestRegistryCache(t *testing.T) {
	c := newRegistryCache(time.Minute)
	now := time.Now()
	key := store.RegistryKey{Project: "p", Location: "l", ID: "r"}
	reg := &store.Registry{Key: key}

	got, gen := c.get(key, now)
	if got != nil {
		t.Fatal("hit in an empty cache")
	}
	c.put(gen, reg, now)
	if got, _ := c.get(key, now.Add(59*time.Second)); got != reg {
		t.Fatal("miss before the TTL")
	}
	if got, _ := c.get(key, now.Add(time.Minute)); got != nil {
		t.Fatal("hit at the TTL")
	}

	// A read that raced an invalidation is not kept.
	_, gen = c.get(key, now)
	c.invalidate(store.RegistryKey{Project: "p", Location: "l", ID: "other"})
	c.put(gen, &store.Registry{Key: key}, now)
	if got, _ := c.get(key, now); got != reg {
		t.Fatal("a read older than an invalidation replaced the entry")
	}
	c.invalidate(key)
	if got, _ := c.get(key, now); got != nil {
		t.Fatal("hit after invalidate")
	}
	_, gen = c.get(key, now)
	c.put(gen, reg, now)
	c.invalidateAll()
	if got, _ := c.get(key, now); got != nil {
		t.Fatal("hit after invalidateAll")
	}

	// Bounded: a full cache starts over.
	c.max = 2
	for _, id := range []string{"a", "b", "c"} {
		_, gen := c.get(key, now)
		c.put(gen, &store.Registry{Key: store.RegistryKey{ID: id}}, now)
	}
	if n := len(c.entries); n > 2 {
		t.Fatalf("%d entries, want at most 2", n)
	}
}

// fakeRegistries serves one registry and counts the reads.
type fakeRegistries struct {
	DeviceStore
	reg   store.Registry
	reads atomic.Int64
}

func (f *fakeRegistries) GetRegistry(_ context.Context, key store.RegistryKey) (*store.Registry, error) {
	f.reads.Add(1)
	r := f.reg
	r.Key = key
	return &r, nil
}

// TestRecheckRegistry: a CONNECT whose registry read raced an announcement
// reads the registry again once registered, and only then.
func TestRecheckRegistry(t *testing.T) {
	st := &fakeRegistries{}
	b := New(slog.New(slog.NewTextHandler(io.Discard, nil)), st, nil, WithRegistryCacheTTL(time.Hour))
	key := store.RegistryKey{Project: "p", Location: "l", ID: "r"}
	gen := b.regs.generation()
	if _, err := b.registry(key); err != nil {
		t.Fatal(err)
	}
	c := &conn{registry: key, regGen: gen}
	if r := b.recheckRegistry(c); r.reason != "" || st.reads.Load() != 1 {
		t.Fatalf("recheck without an announcement: %+v, %d reads", r, st.reads.Load())
	}
	// MQTT disabled and announced between the read and the registration.
	st.reg.MQTTEnabledState = mqttDisabled
	b.regs.invalidate(key)
	if r := b.recheckRegistry(c); r.why != refusedMQTTDisabled || r.reason != errMQTTDisabled || r.code != connackNotAuthorized {
		t.Fatalf("recheck after an announcement: %+v, want refusedMQTTDisabled with CONNACK 5", r)
	}
}
