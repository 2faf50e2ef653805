package bridge_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// registryOutage fails GetRegistry with store.ErrUnavailable while down.
type registryOutage struct {
	store.Store
	down atomic.Bool
}

func (s *registryOutage) GetRegistry(ctx context.Context, key store.RegistryKey) (*store.Registry, error) {
	if s.down.Load() {
		return nil, fmt.Errorf("sqlstore postgres: %w: connection refused", store.ErrUnavailable)
	}
	return s.Store.GetRegistry(ctx, key)
}

// A device connected when the database goes away keeps sending events:
// the bridge serves its registry from the cache, however old, while the
// store is unreachable.
func TestEventsFlowThroughADatabaseOutage(t *testing.T) {
	keys(t)
	outage := &registryOutage{}
	e := newEnvWrapped(t, func(st store.Store) store.Store { outage.Store = st; return outage },
		bridge.WithRegistryCacheTTL(1)) // every read after the first is a refresh
	e.createDevice("through", ecKey, nil)
	c := e.connect("through", ecKey)
	wait(t, c.Publish("/devices/through/events", 1, false, []byte("before")))

	outage.down.Store(true)
	for i := range 3 {
		wait(t, c.Publish("/devices/through/events", 1, false, []byte(fmt.Sprintf("during-%d", i))))
	}
	m, err := e.lastNotification(eventsTopic)
	if err != nil || string(m.Data) != "during-2" {
		t.Fatalf("last event stored %v %v, want during-2", m, err)
	}
	if !c.IsConnectionOpen() {
		t.Error("the device was disconnected during the outage")
	}
}
