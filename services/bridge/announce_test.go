package bridge_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// readCounting counts the bridge's GetDevice calls.
type readCounting struct {
	store.Store
	gets atomic.Int64
}

func (s *readCounting) GetDevice(ctx context.Context, ref store.DeviceRef) (*store.Device, error) {
	s.gets.Add(1)
	return s.Store.GetDevice(ctx, ref)
}

// TestAnnouncedConfigNeedsNoRead: a config announcement that carries the
// config is sent to the device as it is, without a store read; one without
// it makes the bridge read the device's config from the store.
func TestAnnouncedConfigNeedsNoRead(t *testing.T) {
	keys(t)
	counting := &readCounting{}
	e := newEnvWrapped(t, func(st store.Store) store.Store { counting.Store = st; return counting })
	dev := e.createDevice("announced", ecKey, nil)
	c := e.connect("announced", ecKey)
	cfgs := newReceived()
	wait(t, c.Subscribe("/devices/announced/config", 1, cfgs.handler))
	if m := cfgs.next(t); string(m.Payload()) != "" {
		t.Fatalf("first config %q", m.Payload())
	}
	ctx := context.Background()
	ann := bus.Announcement{Kind: bus.ConfigChanged, Project: regKey.Project, Location: regKey.Location,
		Registry: regKey.ID, DeviceID: "announced", NumID: dev.NumID}

	// Carrying the config: that is what the device gets (the store still
	// holds version 1), with no read.
	before := counting.gets.Load()
	ann.Config = &bus.AnnouncedConfig{Version: 7, Data: []byte("carried")}
	if err := e.bus.Announce(ctx, ann); err != nil {
		t.Fatal(err)
	}
	if m := cfgs.next(t); string(m.Payload()) != "carried" {
		t.Fatalf("config %q, want the announced one", m.Payload())
	}
	if n := counting.gets.Load() - before; n != 0 {
		t.Errorf("%d store reads for an announcement carrying its config", n)
	}
	// An older version is not sent.
	ann.Config = &bus.AnnouncedConfig{Version: 6, Data: []byte("older")}
	if err := e.bus.Announce(ctx, ann); err != nil {
		t.Fatal(err)
	}

	// Without the config: the bridge reads the store, which has a newer
	// version by now.
	cfg := testutil.Must(e.st.ModifyConfig(ctx, dev.Ref(), store.ConfigUpdate{Data: []byte("stored"), Now: time.Now()}))
	for cfg.Version <= 7 {
		cfg = testutil.Must(e.st.ModifyConfig(ctx, dev.Ref(), store.ConfigUpdate{Data: []byte("stored"), Now: time.Now()}))
	}
	ann.Config = nil
	if err := e.bus.Announce(ctx, ann); err != nil {
		t.Fatal(err)
	}
	if m := cfgs.next(t); string(m.Payload()) != "stored" {
		t.Fatalf("config %q, want the stored one (the older announced one must not be sent)", m.Payload())
	}
	if counting.gets.Load() == before {
		t.Error("no store read for an announcement without its config")
	}
}
