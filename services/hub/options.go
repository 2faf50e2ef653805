package hub

import (
	"crypto/tls"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Limits of the bridge (compat-spec sections 6 and 7).
const (
	// MaxAttachedDevices is the most devices one gateway connection may
	// have attached.
	MaxAttachedDevices = 1000
	// MaxStateBytes is the largest state payload.
	MaxStateBytes = 64 << 10
	// MaxEventBytes is the largest telemetry event payload.
	MaxEventBytes = 256 << 10
	// StateInterval is the least time between two states of one device
	// (the bridge detaches a proxied device that sends them faster): the
	// pool holds a state back until that long after the bridge
	// acknowledged the device's previous one.
	StateInterval = time.Second
)

// PoolOption configures a Pool.
type PoolOption func(*poolOptions)

type poolOptions struct {
	tls            *tls.Config
	tokenLifetime  time.Duration
	renewBefore    time.Duration
	idleTimeout    time.Duration
	connectTimeout time.Duration
	waitTimeout    time.Duration
	attachTimeout  time.Duration
	minBackoff     time.Duration
	maxBackoff     time.Duration
	maxAttached    int
	commandBuffer  int
	eventBuffer    int
	keepAlive      time.Duration
	gatewayCheck   GatewayChecker
	replicas       *Replicas
	now            func() time.Time
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
}

func defaultPoolOptions() poolOptions {
	return poolOptions{
		tokenLifetime:  time.Hour,
		renewBefore:    5 * time.Minute,
		idleTimeout:    30 * time.Second,
		connectTimeout: 10 * time.Second,
		waitTimeout:    30 * time.Second,
		attachTimeout:  10 * time.Second,
		minBackoff:     100 * time.Millisecond,
		maxBackoff:     30 * time.Second,
		maxAttached:    MaxAttachedDevices,
		commandBuffer:  64,
		eventBuffer:    64,
		keepAlive:      60 * time.Second,
		now:            time.Now,
	}
}

// WithBridgeTLS connects to the bridge over TLS with cfg (nil: plain
// MQTT). Default: plain MQTT.
func WithBridgeTLS(cfg *tls.Config) PoolOption { return func(o *poolOptions) { o.tls = cfg } }

// WithTokenLifetime sets the lifetime of the gateway JWTs the hub signs
// and how long before expiry the connection is renewed with a fresh one.
// Default 1 hour, renewed 5 minutes before; renewBefore is capped at half
// the lifetime.
func WithTokenLifetime(lifetime, renewBefore time.Duration) PoolOption {
	return func(o *poolOptions) { o.tokenLifetime, o.renewBefore = lifetime, renewBefore }
}

// WithIdleTimeout sets how long a gateway connection nobody holds stays
// open. Default 30 s.
func WithIdleTimeout(d time.Duration) PoolOption { return func(o *poolOptions) { o.idleTimeout = d } }

// WithWaitTimeout bounds how long a call waits for its gateway connection
// (first connection or reconnection) before failing with ErrUnavailable.
// Default 30 s.
func WithWaitTimeout(d time.Duration) PoolOption { return func(o *poolOptions) { o.waitTimeout = d } }

// WithAttachTimeout bounds the wait for the bridge to answer an attach.
// Default 10 s.
func WithAttachTimeout(d time.Duration) PoolOption {
	return func(o *poolOptions) { o.attachTimeout = d }
}

// WithBackoff sets the reconnect backoff: it starts at min, doubles on
// each failure up to max, and each wait has up to 50% jitter added.
// Default 100 ms to 30 s.
func WithBackoff(minDelay, maxDelay time.Duration) PoolOption {
	return func(o *poolOptions) { o.minBackoff, o.maxBackoff = minDelay, maxDelay }
}

// WithMaxAttachedDevices caps the devices attached per gateway connection.
// Default MaxAttachedDevices (1,000, as on the bridge).
func WithMaxAttachedDevices(n int) PoolOption { return func(o *poolOptions) { o.maxAttached = n } }

// WithCommandBuffer sets how many commands a command subscriber may have
// unread before it is ended with ErrSlowConsumer. Default 64.
func WithCommandBuffer(n int) PoolOption { return func(o *poolOptions) { o.commandBuffer = n } }

// WithGatewayCheck has the pool ask c whether a gateway still exists when
// the bridge loses or refuses its connection, before connecting again. A
// gateway that no longer exists is dropped at once: its calls end with
// ErrGatewayDeleted, its key is forgotten (when the pool's KeyResolver is
// a KeyForgetter, as Keys is) and it is not connected again. When c gives
// no answer the pool reconnects as without it. Default: no check (a
// deleted gateway is retried with backoff while anyone holds it, and for
// the idle timeout after).
func WithGatewayCheck(c GatewayChecker) PoolOption {
	return func(o *poolOptions) { o.gatewayCheck = c }
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) PoolOption { return func(o *poolOptions) { o.now = now } }

// WithPoolTracerProvider sets where MQTT publish and receipt spans go.
// Default: the otel global.
func WithPoolTracerProvider(tp trace.TracerProvider) PoolOption {
	return func(o *poolOptions) { o.tracerProvider = tp }
}

// WithPoolMeterProvider sets where the pool's metrics go. Default: the
// otel global.
func WithPoolMeterProvider(mp metric.MeterProvider) PoolOption {
	return func(o *poolOptions) { o.meterProvider = mp }
}
