// Package ops is what an operator, a load balancer or an orchestrator asks
// of a Passerelle process, apart from the ports it serves devices and
// callers on:
//
//   - Health: named readiness checks (the database answers, the bus is
//     connected, a service is serving and not draining), run with a short
//     timeout, their results cached briefly so that a storm of probes
//     costs one evaluation, and every change of a check logged once (a
//     dependency going away, then coming back), whether anyone probes or
//     not (Watch).
//   - Server: the operator HTTP address (--ops-addr) with /healthz (the
//     process is alive) and /readyz (every check passes; 503 with a JSON
//     body naming each failing check and why). Handle adds more handlers
//     to the same address (/metrics, /debug/pprof).
//   - SignalContext: the first SIGINT or SIGTERM starts a graceful stop, a
//     second one stops the process at once.
package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Check reports whether one thing a process needs works: nil when it does,
// otherwise an error saying what is wrong, written for an operator ("the
// database at 10.0.0.5:5432 does not answer: connection refused"). ctx
// carries the check timeout.
type Check func(ctx context.Context) error

// Readier is a service that can say whether it takes traffic: not before
// it serves, not while it drains, not when its store or bus is unreachable.
type Readier interface {
	Ready(ctx context.Context) error
}

// ErrDraining is the error of the "draining" result once Drain was called.
var ErrDraining = errors.New("the process is stopping: it takes no new connections or calls")

// DrainingCheck names the result Report adds once Drain was called.
const DrainingCheck = "draining"

// Defaults of the Health options.
const (
	DefaultCheckTimeout = 2 * time.Second
	DefaultCacheTTL     = time.Second
	DefaultWatchEvery   = time.Second
)

// Result is the outcome of one named check.
type Result struct {
	Name string
	Err  error // nil: the check passed
	// Degraded marks a check added with AddDegraded: its failure is
	// reported, not counted against readiness.
	Degraded bool
}

// Report is the outcome of every check, in the order they were added.
type Report struct {
	Ready   bool
	Results []Result
	// At is when the checks ran.
	At time.Time
}

// Failing returns the failed results that make the process not ready.
func (r Report) Failing() []Result { return r.failed(false) }

// DegradedResults returns the failed results of AddDegraded checks.
func (r Report) DegradedResults() []Result { return r.failed(true) }

func (r Report) failed(degraded bool) []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Err != nil && res.Degraded == degraded {
			out = append(out, res)
		}
	}
	return out
}

// Health holds a process's readiness checks. Its methods are safe for
// concurrent use.
type Health struct {
	logger  *slog.Logger
	timeout time.Duration
	ttl     time.Duration
	now     func() time.Time

	draining atomic.Bool

	mu      sync.Mutex
	checks  []namedCheck
	last    *Report       // the latest evaluation; nil before the first
	running chan struct{} // closed when the evaluation in progress ends; nil when none runs
	down    map[string]downState
}

type namedCheck struct {
	name     string
	check    Check
	degraded bool
}

// downState is what Health remembers of a failing check, to log its
// failure once and its recovery once.
type downState struct {
	since time.Time
}

// HealthOption configures a Health.
type HealthOption func(*Health)

// WithCheckTimeout bounds each check's run; a check still running then
// fails with "did not answer within ...". Default: DefaultCheckTimeout
// (2 s).
func WithCheckTimeout(d time.Duration) HealthOption {
	return func(h *Health) {
		if d > 0 {
			h.timeout = d
		}
	}
}

// WithCacheTTL sets how long a Report is reused before the checks run
// again. Default: DefaultCacheTTL (1 s).
func WithCacheTTL(d time.Duration) HealthOption {
	return func(h *Health) {
		if d > 0 {
			h.ttl = d
		}
	}
}

// withClock sets the clock, for tests.
func withClock(now func() time.Time) HealthOption { return func(h *Health) { h.now = now } }

// NewHealth returns a Health with no checks: ready until checks are added
// or Drain is called.
func NewHealth(logger *slog.Logger, opts ...HealthOption) *Health {
	h := &Health{logger: logger, timeout: DefaultCheckTimeout, ttl: DefaultCacheTTL, now: time.Now, down: map[string]downState{}}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Add registers a check under name ("database", "nats", "bridge"). Names
// should be unique; they key the JSON body of /readyz.
func (h *Health) Add(name string, check Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, namedCheck{name: name, check: check})
	h.last = nil // the next Report runs the new check too
}

// AddDegraded registers a check that is reported (in /readyz's body, and
// in the log when it changes) but does not make the process unready: for
// a dependency every replica shares, whose loss would turn them all unready
// at once while each still does part of its work. A bridge's JetStream is
// one: without it no event can be acknowledged, but devices still connect
// and get their configs and commands, and no other bridge would do better.
func (h *Health) AddDegraded(name string, check Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, namedCheck{name: name, check: check, degraded: true})
	h.last = nil
}

// AddReadier registers r.Ready under name.
func (h *Health) AddReadier(name string, r Readier) { h.Add(name, r.Ready) }

// Drain turns readiness off for good, at once: every Report from now on
// fails with a "draining" result, whatever the checks say. A process calls
// it when it starts to stop, so that a load balancer stops sending before
// the listeners close.
func (h *Health) Drain() {
	if h.draining.CompareAndSwap(false, true) {
		h.logger.Info("ops: draining: /readyz answers 503 from now on")
	}
}

// Draining reports whether Drain was called.
func (h *Health) Draining() bool { return h.draining.Load() }

// Report returns the checks' results, running them when the last results
// are older than the cache TTL. While an evaluation runs, callers get the
// previous results at once rather than wait (only the first evaluation is
// waited for), so a probe never waits longer than the check timeout and
// usually not at all.
func (h *Health) Report(ctx context.Context) Report {
	r := h.report(ctx, h.ttl)
	if h.draining.Load() {
		r.Ready = false
		r.Results = append([]Result{{Name: DrainingCheck, Err: ErrDraining}}, r.Results...)
	}
	return r
}

// report returns the last results when they are younger than maxAge, and
// runs the checks otherwise (or hands out the previous results while
// another caller runs them).
func (h *Health) report(ctx context.Context, maxAge time.Duration) Report {
	h.mu.Lock()
	if h.last != nil && h.now().Sub(h.last.At) < maxAge {
		r := *h.last
		h.mu.Unlock()
		return r
	}
	if h.running != nil {
		wait := h.running
		if h.last != nil {
			r := *h.last
			h.mu.Unlock()
			return r
		}
		h.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return Report{Results: []Result{{Name: "checks", Err: ctx.Err()}}, At: h.now()}
		}
		return h.report(ctx, maxAge)
	}
	done := make(chan struct{})
	h.running = done
	checks := append([]namedCheck(nil), h.checks...)
	h.mu.Unlock()

	// The evaluation is shared: it must not end with the one caller that
	// happened to start it.
	r := h.evaluate(context.WithoutCancel(ctx), checks)

	h.mu.Lock()
	h.last = &r
	h.running = nil
	h.logChanges(r)
	h.mu.Unlock()
	close(done)
	return r
}

// evaluate runs every check at once, each bounded by the timeout.
func (h *Health) evaluate(ctx context.Context, checks []namedCheck) Report {
	r := Report{Ready: true, Results: make([]Result, len(checks)), At: h.now()}
	var wg sync.WaitGroup
	for i, c := range checks {
		r.Results[i].Name = c.name
		r.Results[i].Degraded = c.degraded
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Results[i].Err = h.run(ctx, c)
		}()
	}
	wg.Wait()
	r.Ready = len(r.Failing()) == 0
	return r
}

// run runs one check within the timeout. A check that ignores its context
// is left to finish on its own goroutine: its result is dropped.
func (h *Health) run(ctx context.Context, c namedCheck) error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				errc <- fmt.Errorf("the check panicked: %v", p)
			}
		}()
		errc <- c.check(ctx)
	}()
	select {
	case err := <-errc:
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return fmt.Errorf("did not answer within %s", h.timeout)
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("did not answer within %s", h.timeout)
	}
}

// logChanges logs each check that started failing, once, and each that
// passes again, once. Called with mu held.
func (h *Health) logChanges(r Report) {
	for _, res := range r.Results {
		st, wasDown := h.down[res.Name]
		switch {
		case res.Err != nil && !wasDown:
			h.down[res.Name] = downState{since: r.At}
			what := "not ready"
			if res.Degraded {
				what = "degraded"
			}
			h.logger.Warn("ops: "+what+": "+res.Name+" check failing", "check", res.Name, "err", res.Err)
		case res.Err == nil && wasDown:
			delete(h.down, res.Name)
			h.logger.Info("ops: "+res.Name+" check passing again", "check", res.Name, "failed_for", r.At.Sub(st.since).Round(time.Millisecond))
		}
	}
}

// Watch runs the checks every interval (DefaultWatchEvery when interval is
// not positive) until ctx ends, so that a dependency that goes away is
// logged within an interval, and logged back, even when nothing probes
// /readyz. It returns when ctx ends.
func (h *Health) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchEvery
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// Results a probe made less than half an interval ago will do.
		h.report(ctx, interval/2)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
