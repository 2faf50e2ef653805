package bridge

import "time"

// bucket is a token bucket refilled lazily from the clock, so that a
// limit costs no goroutine and no timer: 24 bytes per limited thing. It is
// not safe for concurrent use; its owner serialises the calls (the
// connection's read goroutine, or conn.mu).
type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last refill; 0 = never used
}

// take spends n tokens from a bucket that refills at rate per second up
// to burst, and reports whether there were enough. A refused take spends
// nothing. A zero or negative rate means no limit.
func (b *bucket) take(now time.Time, rate, burst, n float64) bool {
	if rate <= 0 {
		return true
	}
	b.refill(now, rate, burst)
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

// spend takes n tokens even when there are not enough, leaving a debt
// that later takes must first repay: for traffic that must go out anyway
// (configs) but should still count against the limit.
func (b *bucket) spend(now time.Time, rate, burst, n float64) {
	if rate <= 0 {
		return
	}
	b.refill(now, rate, burst)
	b.tokens -= n
}

func (b *bucket) refill(now time.Time, rate, burst float64) {
	t := now.UnixNano()
	if b.last == 0 {
		b.tokens, b.last = burst, t
		return
	}
	if t > b.last {
		b.tokens = min(burst, b.tokens+float64(t-b.last)*rate/1e9)
		b.last = t
	}
}

// limits holds the rates of compat-spec section 6 and their bursts, as
// floats ready for bucket.
type limits struct {
	msgRate, msgBurst   float64
	byteRate, byteBurst float64
	httpBurst           float64 // of the HTTP bridge's request rate
}

func newLimits(o *options) limits {
	l := limits{msgRate: o.msgRate, byteRate: float64(o.byteRate)}
	l.msgBurst = float64(o.msgBurst)
	if l.msgBurst <= 0 {
		l.msgBurst = max(l.msgRate, 1)
	}
	l.httpBurst = float64(o.httpBurst)
	if l.httpBurst <= 0 {
		l.httpBurst = max(o.httpRate, 1)
	}
	// A burst under the largest message would refuse that message for
	// ever.
	l.byteBurst = max(l.byteRate, maxEventBytes+maxTopicBytes)
	return l
}

// maxTopicBytes bounds a publish's topic name (an id of 128 bytes,
// "/devices//events/" and a 256-byte subfolder), counted with the payload.
const maxTopicBytes = 512
