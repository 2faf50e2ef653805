package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// gatedConfigs is a Provisioner whose DeviceConfigs calls wait for a gate
// (the first call only, when firstOnly) and record the batches asked.
type gatedConfigs struct {
	Provisioner // only DeviceConfigs is called
	gate        chan struct{}
	firstOnly   bool
	fail        error

	mu      sync.Mutex
	batches [][]string
}

func (p *gatedConfigs) DeviceConfigs(ctx context.Context, registry string, ids []string) (map[string]DeviceConfig, error) {
	p.mu.Lock()
	p.batches = append(p.batches, append([]string(nil), ids...))
	call := len(p.batches)
	p.mu.Unlock()
	if p.gate != nil && (call == 1 || !p.firstOnly) {
		select {
		case <-p.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if p.fail != nil {
		return nil, p.fail
	}
	got := make(map[string]DeviceConfig)
	for _, id := range ids {
		if id != "missing" {
			got[id] = DeviceConfig{Version: int64(call), Data: []byte(registry + "/" + id)}
		}
	}
	return got, nil
}

func (p *gatedConfigs) calls() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.batches...)
}

// waitQueued waits until n lookups were asked of c.
func waitQueued(t *testing.T, c *configVersions, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		q := c.queued
		c.mu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lookups asked, want %d", q, n)
		}
	}
}

// TestConfigVersionsBatches: lookups that arrive while others are in
// flight wait and go together, one id per device, in batches of at most
// maxVersionBatch.
func TestConfigVersionsBatches(t *testing.T) {
	p := &gatedConfigs{gate: make(chan struct{})}
	c := newConfigVersions(p)
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("device-%d", i%150) // each device asked twice
			cfg, found, err := c.lookup(t.Context(), "reg", id)
			if err != nil || !found || string(cfg.Data) != "reg/"+id {
				errs <- fmt.Errorf("lookup(%s) = %+v, %v, %v", id, cfg, found, err)
			}
		})
	}
	wg.Go(func() {
		if _, found, err := c.lookup(t.Context(), "reg", "missing"); found || err != nil {
			errs <- fmt.Errorf("lookup(missing) = %v, %v; want not found", found, err)
		}
	})
	waitQueued(t, c, n+1) // every lookup is waiting: let the admin API answer
	close(p.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	asked := 0
	batches := p.calls()
	for _, b := range batches {
		asked += len(b)
		if len(b) > maxVersionBatch {
			t.Errorf("a batch of %d ids, more than %d", len(b), maxVersionBatch)
		}
	}
	// At most maxVersionSenders calls were in flight while the lookups
	// were asked; every other lookup then waited, one entry per device
	// (151 at most), and went out in two batches. A device is asked again
	// only if asked while a call for it was in flight.
	perDevice := map[string]int{}
	for _, b := range batches {
		for _, id := range b {
			perDevice[id]++
		}
	}
	if len(batches) > maxVersionSenders+2 || len(perDevice) != 151 {
		t.Errorf("%d calls asking %d ids (%d devices) for %d lookups: lookups were not batched", len(batches), asked, len(perDevice), n+1)
	}
	for id, k := range perDevice {
		if k > 2 {
			t.Errorf("device %s asked %d times", id, k)
		}
	}
	c.stop() // waits for the senders, which end once nothing is pending
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.regs) != 0 {
		t.Errorf("%d registries still tracked after every lookup was answered", len(c.regs))
	}
}

// TestConfigVersionsFresh: a lookup asked while one for the same device is
// in flight is answered by a later call (the call in flight may predate the
// config the asker received).
func TestConfigVersionsFresh(t *testing.T) {
	p := &gatedConfigs{gate: make(chan struct{}), firstOnly: true}
	c := newConfigVersions(p)
	defer c.stop()
	first := make(chan int64, 1)
	go func() {
		cfg, _, _ := c.lookup(t.Context(), "reg", "d")
		first <- cfg.Version
	}()
	waitQueued(t, c, 1)
	for len(p.calls()) == 0 {
		time.Sleep(time.Millisecond) // the first call is in flight
	}
	second, _, err := c.lookup(t.Context(), "reg", "d")
	close(p.gate)
	if v := <-first; err != nil || v != 1 || second.Version < 2 {
		t.Errorf("first lookup answered by call %d, second by call %d (%v); want 1 and a later one", v, second.Version, err)
	}
}

func TestConfigVersionsErrorsAndStop(t *testing.T) {
	boom := errors.New("admin API down")
	c := newConfigVersions(&gatedConfigs{fail: boom})
	if _, _, err := c.lookup(t.Context(), "reg", "d"); !errors.Is(err, boom) {
		t.Errorf("lookup with the admin API failing: %v, want %v", err, boom)
	}
	c.stop()

	// A caller that goes away is not held by a slow lookup.
	c = newConfigVersions(&gatedConfigs{gate: make(chan struct{})})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := c.lookup(ctx, "reg", "d"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("lookup past its caller's deadline: %v", err)
	}
	// stop cancels the call in flight and waits for its sender; later
	// lookups fail at once.
	c.stop()
	if _, _, err := c.lookup(t.Context(), "reg", "d"); !errors.Is(err, context.Canceled) {
		t.Errorf("lookup after stop: %v, want context.Canceled", err)
	}
}
