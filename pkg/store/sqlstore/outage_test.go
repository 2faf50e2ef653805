package sqlstore_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/store/storetest"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// proxiedPostgres opens a store on a fresh schema of the test PostgreSQL
// through a proxy the test can cut.
func proxiedPostgres(t *testing.T) (*sqlstore.Store, *testutil.Proxy) {
	t.Helper()
	u, err := url.Parse(storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testutil.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	s, err := sqlstore.OpenPostgres(t.Context(), discard(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, proxy
}

// PostgreSQL goes away (the proxy to it is cut) and comes back: while it
// is away Ping and every call fail with ErrUnavailable; once it is back
// the very first calls succeed, though the pool held connections that
// died with the server.
func TestPostgresGoesAwayAndComesBack(t *testing.T) {
	s, proxy := proxiedPostgres(t)
	ctx := t.Context()
	reg := &store.Registry{Key: store.RegistryKey{Project: "p", Location: "l", ID: "outage"}}
	if err := s.CreateRegistry(ctx, reg); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	// Fill the pool with several connections, idle when the server goes.
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.GetRegistry(ctx, reg.Key); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	proxy.Cut()
	if _, err := s.GetRegistry(ctx, reg.Key); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("GetRegistry with the server away: %v, want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping with the server away: %v", err)
	}
	_, err := s.CreateDevice(ctx, &store.Device{Registry: reg.Key, ID: "dev-1"}, time.Now())
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("CreateDevice with the server away: %v", err)
	}

	proxy.Restore()
	for i := range 6 {
		if _, err := s.GetRegistry(ctx, reg.Key); err != nil {
			t.Fatalf("call %d after the server came back: %v", i+1, err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after the server came back: %v", err)
	}
	if _, err := s.CreateDevice(ctx, &store.Device{Registry: reg.Key, ID: "dev-1"}, time.Now()); err != nil {
		t.Errorf("CreateDevice after the server came back: %v", err)
	}
}

// A query PostgreSQL refuses is no outage.
func TestRefusalIsNotUnavailable(t *testing.T) {
	s := openPostgres(t)
	defer s.Close()
	_, err := s.GetRegistry(context.Background(), store.RegistryKey{Project: "p", Location: "l", ID: "none"})
	if !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a missing registry: %v", err)
	}
}
