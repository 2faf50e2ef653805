package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// slowConfigs is a Provisioner whose DeviceConfigs takes a while and
// records the batches it was asked.
type slowConfigs struct {
	Provisioner // only DeviceConfigs is called
	delay       time.Duration
	fail        error

	mu      sync.Mutex
	batches [][]string
}

func (p *slowConfigs) DeviceConfigs(ctx context.Context, registry string, ids []string) (map[string]DeviceConfig, error) {
	p.mu.Lock()
	p.batches = append(p.batches, append([]string(nil), ids...))
	p.mu.Unlock()
	select {
	case <-time.After(p.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if p.fail != nil {
		return nil, p.fail
	}
	got := make(map[string]DeviceConfig)
	for _, id := range ids {
		if id != "missing" {
			got[id] = DeviceConfig{Version: int64(len(id)), Data: []byte(registry + "/" + id)}
		}
	}
	return got, nil
}

func TestConfigVersionsBatches(t *testing.T) {
	p := &slowConfigs{delay: 50 * time.Millisecond}
	c := newConfigVersions(p)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("device-%d", i%150) // some devices asked twice
			cfg, found, err := c.lookup(t.Context(), "reg", id)
			if err != nil || !found || string(cfg.Data) != "reg/"+id || cfg.Version != int64(len(id)) {
				errs <- fmt.Errorf("lookup(%s) = %+v, %v, %v", id, cfg, found, err)
			}
		})
	}
	wg.Go(func() {
		if _, found, err := c.lookup(t.Context(), "reg", "missing"); found || err != nil {
			errs <- fmt.Errorf("lookup(missing) = %v, %v; want not found", found, err)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	asked := 0
	for _, b := range p.batches {
		asked += len(b)
		if len(b) > maxVersionBatch {
			t.Errorf("a batch of %d ids, more than %d", len(b), maxVersionBatch)
		}
	}
	// The first lookup goes alone; the rest wait for it and go together.
	if len(p.batches) > 5 {
		t.Errorf("%d admin API calls for %d lookups, want a few batches", len(p.batches), n+1)
	}
	if asked > 151+len(p.batches) {
		t.Errorf("%d ids asked for 151 devices: waiting lookups of one device were not shared", asked)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.regs) != 0 {
		t.Errorf("%d registries still tracked after every lookup was answered", len(c.regs))
	}
}

func TestConfigVersionsErrors(t *testing.T) {
	boom := errors.New("admin API down")
	c := newConfigVersions(&slowConfigs{fail: boom})
	if _, _, err := c.lookup(t.Context(), "reg", "d"); !errors.Is(err, boom) {
		t.Errorf("lookup with the admin API failing: %v, want %v", err, boom)
	}
	// A caller that goes away is not held by a slow lookup.
	c = newConfigVersions(&slowConfigs{delay: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := c.lookup(ctx, "reg", "d"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("lookup past its caller's deadline: %v", err)
	}
}
