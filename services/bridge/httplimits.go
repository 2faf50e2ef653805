package bridge

import (
	"fmt"
	"sync"
	"time"
)

// httpLimits holds the HTTP bridge's per-device rates (compat-spec
// sections 6 and 8): requests (6,000 a minute by default), incoming bytes
// (the MQTT byte rate) and one state a second. A device's entry is
// dropped once idle long enough for its buckets to be full again, so the
// map holds the devices of the last few seconds.
type httpLimits struct {
	mu      sync.Mutex
	devs    map[uint64]*httpDevLimits
	sweepAt int
}

type httpDevLimits struct {
	reqs, bytes bucket
	lastState   time.Time
	used        time.Time
}

// httpIdleDrop is how long an idle device's limits are kept: past it,
// its buckets would be full and its state interval over.
const httpIdleDrop = 5 * time.Second

func newHTTPLimits() *httpLimits {
	return &httpLimits{devs: make(map[uint64]*httpDevLimits), sweepAt: 1024}
}

// admit spends one request and n bytes of numID's rates, and the state
// interval when state; it answers RESOURCE_EXHAUSTED past any of them.
func (l *httpLimits) admit(b *Bridge, numID uint64, n int, state bool) *httpError {
	now := b.opts.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.devs[numID]
	if d == nil {
		if len(l.devs) >= l.sweepAt {
			l.sweepLocked(now)
		}
		d = &httpDevLimits{}
		l.devs[numID] = d
	}
	d.used = now
	if !d.reqs.take(now, b.opts.httpRate, b.lim.httpBurst, 1) {
		b.tel.rateLimited(kindMessages)
		return httpErr(codeResourceExhausted, fmt.Sprintf("more than %g requests per minute from the device: retry later", b.opts.httpRate*60))
	}
	if n > 0 && !d.bytes.take(now, b.lim.byteRate, b.lim.byteBurst, float64(n)) {
		b.tel.rateLimited(kindBytesIn)
		return httpErr(codeResourceExhausted, b.byteRateMsg+": retry later")
	}
	if state {
		if !d.lastState.IsZero() && now.Sub(d.lastState) < b.opts.stateInterval {
			return httpErr(codeResourceExhausted, "more than one state update per second: retry later")
		}
		d.lastState = now
	}
	return nil
}

func (l *httpLimits) sweepLocked(now time.Time) {
	for id, d := range l.devs {
		if now.Sub(d.used) > httpIdleDrop {
			delete(l.devs, id)
		}
	}
	l.sweepAt = max(2*len(l.devs), 1024)
}

// configWaiters are the getConfig requests waiting for a newer config, by
// device numId; an announcement about the device wakes them, and they
// read the store again.
type configWaiters struct {
	mu sync.Mutex
	m  map[uint64]map[chan struct{}]struct{}
}

func newConfigWaiters() *configWaiters {
	return &configWaiters{m: make(map[uint64]map[chan struct{}]struct{})}
}

// add registers a waiter for numID; done unregisters it.
func (w *configWaiters) add(numID uint64) (wake <-chan struct{}, done func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	set := w.m[numID]
	if set == nil {
		set = make(map[chan struct{}]struct{}, 1)
		w.m[numID] = set
	}
	set[ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(set, ch)
		if len(set) == 0 {
			delete(w.m, numID)
		}
		w.mu.Unlock()
	}
}

// wake wakes the waiters of numID; all of them when all.
func (w *configWaiters) wake(numID uint64, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !all {
		wakeAll(w.m[numID])
		return
	}
	for _, set := range w.m {
		wakeAll(set)
	}
}

func wakeAll(set map[chan struct{}]struct{}) {
	for ch := range set {
		select {
		case ch <- struct{}{}:
		default: // already woken
		}
	}
}
