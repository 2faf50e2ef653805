package hub_test

import (
	"errors"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/hub"
)

// TestKeysSharedFolder: hub replicas sharing a key store folder find the
// keys one of them made, once they need them.
func TestKeysSharedFolder(t *testing.T) {
	dir := t.TempDir()
	a := testutil.Must(hub.NewKeys("", dir))
	b := testutil.Must(hub.NewKeys("", dir))
	const name = "projects/p1/locations/us-central1/registries/reg1/devices/gw-1"
	if _, err := b.Get(name); !errors.Is(err, hub.ErrNoKey) {
		t.Fatalf("before: %v", err)
	}
	g := testutil.Must(a.Generate(name, hub.ES256))
	testutil.Must(a.Commit(g))
	key, err := b.Get(name)
	if err != nil {
		t.Fatalf("the other replica's key: %v", err)
	}
	if key.Name != name || key.Algorithm != hub.ES256 || key.Source != hub.SourceKeyStore {
		t.Fatalf("key %+v", key)
	}
	if len(b.List()) != 1 {
		t.Fatalf("b lists %d keys", len(b.List()))
	}
	if _, err := b.Get("projects/p1/locations/us-central1/registries/reg1/devices/other"); !errors.Is(err, hub.ErrNoKey) {
		t.Fatalf("unknown gateway: %v", err)
	}
}
