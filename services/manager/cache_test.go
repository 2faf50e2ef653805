package manager

import (
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

func TestDeviceCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newDeviceCache(time.Second, 6, func() time.Time { return now })
	reg := store.RegistryKey{Project: "p", Location: "l", ID: "r"}
	d := &store.Device{Registry: reg, ID: "dev", NumID: 42}
	byID := store.DeviceRef{Registry: reg, ID: "dev"}
	byNum := store.DeviceRef{Registry: reg, NumID: 42}

	got, gen := c.get(byID)
	if got != nil {
		t.Fatal("hit in an empty cache")
	}
	c.put(gen, d)
	for _, ref := range []store.DeviceRef{byID, byNum} {
		if got, _ := c.get(ref); got != d {
			t.Fatalf("get(%+v) missed after put", ref)
		}
	}

	// A write by numId forgets the id name too.
	c.invalidateRef(byNum)
	if got, _ := c.get(byID); got != nil {
		t.Fatal("hit by id after invalidating by numId")
	}

	// A read that raced an invalidation is not stored.
	_, gen = c.get(byID)
	c.invalidate(reg, "other", 7)
	c.put(gen, d)
	if got, _ := c.get(byID); got != nil {
		t.Fatal("stored a read older than an invalidation")
	}

	// Entries expire.
	_, gen = c.get(byID)
	c.put(gen, d)
	now = now.Add(time.Second)
	if got, _ := c.get(byID); got != nil {
		t.Fatal("hit after the ttl")
	}

	// A full cache starts over instead of growing.
	for i := range 10 {
		_, gen := c.get(byID)
		c.put(gen, &store.Device{Registry: reg, ID: "d" + string(rune('a'+i)), NumID: uint64(100 + i)})
	}
	if n := len(c.entries); n > 6 {
		t.Fatalf("cache holds %d entries, bound is 6", n)
	}

	var nilCache *deviceCache // the cache turned off
	if got, _ := nilCache.get(byID); got != nil {
		t.Fatal("nil cache hit")
	}
	nilCache.put(0, d)
	nilCache.invalidateRef(byID)
	nilCache.invalidateAll()
}
