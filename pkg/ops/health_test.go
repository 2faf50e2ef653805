package ops

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// clock is a settable clock for the cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log lines from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestReportNamesFailingChecks(t *testing.T) {
	h := NewHealth(testutil.Logger(t))
	if r := h.Report(t.Context()); !r.Ready || len(r.Results) != 0 {
		t.Fatalf("no checks: %+v, want ready", r)
	}
	h.Add("database", func(context.Context) error { return nil })
	h.Add("nats", func(context.Context) error { return errors.New("not connected") })
	r := h.Report(t.Context())
	if r.Ready {
		t.Fatal("ready with a failing check")
	}
	f := r.Failing()
	if len(f) != 1 || f[0].Name != "nats" || f[0].Err.Error() != "not connected" {
		t.Fatalf("failing %+v", f)
	}
	if len(r.Results) != 2 || r.Results[0].Name != "database" || r.Results[0].Err != nil {
		t.Fatalf("results %+v: want database first, passing", r.Results)
	}
}

func TestDrainIsImmediate(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	h := NewHealth(testutil.Logger(t), WithCacheTTL(time.Hour), withClock(c.now))
	h.Add("database", func(context.Context) error { return nil })
	if !h.Report(t.Context()).Ready {
		t.Fatal("not ready before Drain")
	}
	h.Drain()
	// Cached for an hour, yet not ready at once.
	r := h.Report(t.Context())
	if r.Ready || len(r.Results) != 2 || r.Results[0].Name != DrainingCheck || !errors.Is(r.Results[0].Err, ErrDraining) {
		t.Fatalf("after Drain: %+v", r)
	}
	if !h.Draining() {
		t.Error("Draining() false after Drain")
	}
}

// A storm of probes costs one evaluation per cache period.
func TestProbesShareOneEvaluation(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	h := NewHealth(testutil.Logger(t), withClock(c.now))
	var calls atomic.Int64
	release := make(chan struct{})
	h.Add("slow", func(ctx context.Context) error {
		calls.Add(1)
		<-release
		return nil
	})
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !h.Report(t.Context()).Ready {
				t.Error("not ready")
			}
		}()
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		if calls.Load() == 0 {
			return errors.New("the check has not started")
		}
		return nil
	})
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("100 probes ran the check %d times, want 1", n)
	}
	for range 100 {
		h.Report(t.Context())
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("probes within the TTL ran the check %d times, want 1", n)
	}
	c.add(DefaultCacheTTL)
	h.Report(t.Context())
	if n := calls.Load(); n != 2 {
		t.Fatalf("a probe after the TTL: %d runs, want 2", n)
	}
}

// While an evaluation runs, a probe gets the previous results at once.
func TestProbeDoesNotWaitForASlowCheck(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	h := NewHealth(testutil.Logger(t), withClock(c.now), WithCheckTimeout(time.Hour))
	var slow atomic.Bool
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	h.Add("store", func(ctx context.Context) error {
		if slow.Load() {
			started <- struct{}{}
			<-release
			return errors.New("late")
		}
		return nil
	})
	if !h.Report(t.Context()).Ready {
		t.Fatal("first report not ready")
	}
	slow.Store(true)
	c.add(time.Hour)
	go h.Report(context.Background()) // runs the slow evaluation
	<-started
	if r := h.Report(t.Context()); !r.Ready {
		t.Fatalf("a probe during a slow evaluation got %+v, want the previous (ready) results", r)
	}
	close(release)
	testutil.WaitFor(t, 5*time.Second, func() error {
		if h.Report(t.Context()).Ready {
			return errors.New("still the old results")
		}
		return nil
	})
}

func TestCheckTimeout(t *testing.T) {
	h := NewHealth(testutil.Logger(t), WithCheckTimeout(50*time.Millisecond))
	stuck := make(chan struct{})
	defer close(stuck)
	h.Add("honours-ctx", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	h.Add("ignores-ctx", func(context.Context) error { <-stuck; return nil })
	h.Add("panics", func(context.Context) error { panic("boom") })
	r := h.Report(t.Context())
	for i, want := range []string{"did not answer within 50ms", "did not answer within 50ms", "the check panicked: boom"} {
		if err := r.Results[i].Err; err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", r.Results[i].Name, err, want)
		}
	}
}

// A dependency that goes away is logged once, and once when it is back,
// however often the checks run.
func TestChangesAreLoggedOnce(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	var out syncBuffer
	h := NewHealth(slog.New(slog.NewTextHandler(&out, nil)), withClock(c.now))
	var down atomic.Bool
	h.Add("database", func(context.Context) error {
		if down.Load() {
			return errors.New("connection refused")
		}
		return nil
	})
	run := func(n int) {
		for range n {
			h.Report(t.Context())
			c.add(DefaultCacheTTL)
		}
	}
	run(3)
	if s := out.String(); s != "" {
		t.Fatalf("logged while healthy: %s", s)
	}
	down.Store(true)
	run(10)
	if n := strings.Count(out.String(), "check failing"); n != 1 {
		t.Fatalf("%d failure lines for one outage, want 1:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), `check=database err="connection refused"`) {
		t.Errorf("the failure line does not say what failed:\n%s", out.String())
	}
	down.Store(false)
	run(10)
	if n := strings.Count(out.String(), "check passing again"); n != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "failed_for=10s") {
		t.Errorf("the recovery line does not say for how long it failed:\n%s", out.String())
	}
}

// Watch runs the checks when nothing probes, and stops with its context.
func TestWatch(t *testing.T) {
	h := NewHealth(testutil.Logger(t))
	var calls atomic.Int64
	h.Add("x", func(context.Context) error { calls.Add(1); return nil })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { h.Watch(ctx, 10*time.Millisecond); close(done) }()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if calls.Load() < 3 {
			return errors.New("the checks did not run by themselves")
		}
		return nil
	})
	cancel()
	<-done
}
