package bridge

import (
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
)

// Option configures a Bridge.
type Option func(*options)

type options struct {
	maxConns          int
	maxPending        int
	maxPendingPerAddr int
	connectTimeout    time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	jwtSkew           time.Duration
	storeTimeout      time.Duration
	publishTimeout    time.Duration
	flushInterval     time.Duration
	configResend      time.Duration
	registryTTL       time.Duration
	stateInterval     time.Duration
	maxAttached       int
	maxInflight       int
	eventsInFlight    int
	workers           int
	acceptBackoffMax  time.Duration
	parkAfter         time.Duration // 0: idle connections keep their goroutine
	keyCache          *deviceauth.KeyCache
	now               func() time.Time
	msgRate           float64
	msgBurst          int
	byteRate          int64
	tracerProvider    trace.TracerProvider
	meterProvider     metric.MeterProvider
	presence          Presence
	drain             time.Duration
	httpRate          float64
	httpBurst         int
	httpConfigWait    time.Duration
	httpMaxConns      int
}

// defaultParkAfter is how long a connection is silent before its
// goroutine hands it to the parker: long enough that a device sending
// every second keeps its goroutine, short enough that an idle fleet
// costs no stacks.
const defaultParkAfter = 2 * time.Second

// Connection limits.
const (
	// DefaultMaxConnections is the connections a bridge holds at once,
	// under the 20,000 open files of our machines.
	DefaultMaxConnections = 19000
	// DefaultMaxPendingPerAddress is the connections one source address
	// (an IPv6 /64) may have waiting to authenticate.
	DefaultMaxPendingPerAddress = 128
)

// Rate limits of compat-spec section 6.
const (
	// DefaultMessageRate is the incoming messages per second allowed on
	// one connection.
	DefaultMessageRate = 100
	// DefaultByteRate is the bytes per second allowed per device, each way.
	DefaultByteRate = 512 << 10
)

// Limits of the HTTP device bridge (compat-spec section 8).
const (
	// DefaultHTTPRequestRate is the requests per second one device may
	// make: 6,000 a minute.
	DefaultHTTPRequestRate = 100
	// DefaultHTTPConfigWait is the longest a getConfig with local_version
	// waits for a newer config.
	DefaultHTTPConfigWait = time.Minute
	// DefaultHTTPMaxConnections is the HTTP bridge's connections at once,
	// per listener, next to the MQTT bridge's within the open-file limit.
	DefaultHTTPMaxConnections = 4096
)

// Defaults, in one place.
func defaultOptions() options {
	return options{
		maxConns:          DefaultMaxConnections,
		maxPendingPerAddr: DefaultMaxPendingPerAddress,
		connectTimeout:    10 * time.Second,
		writeTimeout:      10 * time.Second,
		idleTimeout:       20 * time.Minute,
		jwtSkew:           deviceauth.DefaultJWTSkew,
		storeTimeout:      10 * time.Second,
		publishTimeout:    10 * time.Second,
		flushInterval:     time.Second,
		configResend:      10 * time.Second,
		registryTTL:       10 * time.Second,
		stateInterval:     time.Second,
		maxAttached:       1000,
		maxInflight:       64,
		eventsInFlight:    DefaultEventsInFlight,
		workers:           64,
		acceptBackoffMax:  time.Second,
		parkAfter:         defaultParkAfter,
		now:               time.Now,
		msgRate:           DefaultMessageRate,
		byteRate:          DefaultByteRate,
		httpRate:          DefaultHTTPRequestRate,
		httpConfigWait:    DefaultHTTPConfigWait,
		httpMaxConns:      DefaultHTTPMaxConnections,
	}
}

// WithMaxConnections caps the connections the bridge holds at once, over
// all listeners, authenticated or not; past the cap a new connection is
// closed as soon as it is accepted. Keep it under the process's open-file
// limit: Serve lowers it (and says so in the log) to 95% of that limit,
// leaving the rest to the store, the bus and the process's other files.
// Default DefaultMaxConnections (19,000).
func WithMaxConnections(n int) Option { return func(o *options) { o.maxConns = n } }

// WithMaxPendingConnections caps the connections accepted but not yet
// authenticated (TLS handshake, CONNECT, JWT check), over all listeners;
// past the cap a new connection is closed as soon as it is accepted, and
// the refusal counted (passerelle.bridge.accepts.refused) and logged at
// most once per 10 s. It bounds what silent sockets from many addresses
// can take: the rest of the connection cap stays for authenticated
// devices. 0 (the default): a quarter of the connection cap.
func WithMaxPendingConnections(n int) Option { return func(o *options) { o.maxPending = n } }

// WithMaxPendingPerAddress caps the connections waiting to authenticate
// from one source address (IPv4 address, or IPv6 /64), so that a flood of
// silent sockets from one address cannot exhaust the file limit nor lock
// out devices elsewhere; past it a new connection from that address is
// closed as soon as it is accepted (counted, logged at most once per 10 s
// per address). Only the handshake counts: a site of many devices behind
// one NAT address may hold any number of authenticated connections, and
// in a reconnect storm its devices get in this many at a time (the others
// are closed and retry). Never more than the pending cap. 0 removes the
// limit: do so behind a TCP proxy, where every connection has the proxy's
// address. Default DefaultMaxPendingPerAddress (128).
func WithMaxPendingPerAddress(n int) Option { return func(o *options) { o.maxPendingPerAddr = n } }

// WithWriteTimeout bounds each write to a client: one that does not read
// for that long (its socket buffers full) is disconnected, so it never
// holds up deliveries to others or the shutdown. Default 10 s; 0 leaves
// writes bounded only by the client's keep-alive (1.5 times it).
func WithWriteTimeout(d time.Duration) Option { return func(o *options) { o.writeTimeout = d } }

// WithConnectTimeout bounds the time from accepting a connection (TLS
// handshake included) to its CONNECT packet. Default 10 s.
func WithConnectTimeout(d time.Duration) Option { return func(o *options) { o.connectTimeout = d } }

// WithIdleTimeout closes a connection that sent nothing for this long,
// whatever its keep-alive (compat-spec: 20 minutes). It is enforced
// through the keep-alive deadline (1.5 x keep-alive, refreshed at most
// once a second), so it has a granularity of 1.5 s. Default 20 minutes.
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idleTimeout = d } }

// WithJWTSkew sets the clock skew allowed on a device JWT's iat and exp;
// a connection is closed when exp + skew passes. Default 10 minutes.
func WithJWTSkew(d time.Duration) Option { return func(o *options) { o.jwtSkew = d } }

// WithStoreTimeout bounds each store call. Default 10 s.
func WithStoreTimeout(d time.Duration) Option { return func(o *options) { o.storeTimeout = d } }

// WithPublishTimeout bounds the wait for the bus to accept an event of
// the HTTP bridge. (A QoS 1 event of MQTT is bounded by the bus's own
// bus.Options.PublishTimeout: past it the bridge closes the connection
// without a PUBACK, and the device sends the event again.) Default 10 s.
func WithPublishTimeout(d time.Duration) Option { return func(o *options) { o.publishTimeout = d } }

// DefaultEventsInFlight is the QoS 1 PUBLISHes of one connection in
// flight to the stream at once.
const DefaultEventsInFlight = 32

// WithEventsInFlight sets how many QoS 1 PUBLISHes of one connection may
// wait for the stream at once (pipelined: their PUBACKs go out in order
// as the stream acknowledges them). Past it the bridge stops reading the
// connection until one is acknowledged. Default DefaultEventsInFlight.
func WithEventsInFlight(n int) Option { return func(o *options) { o.eventsInFlight = n } }

// WithFlushInterval sets how often server-set device fields are written to
// the store. Default 1 s.
func WithFlushInterval(d time.Duration) Option { return func(o *options) { o.flushInterval = d } }

// WithConfigResendInterval sets how long a QoS 1 config waits for its
// PUBACK before it is sent again. Default 10 s.
func WithConfigResendInterval(d time.Duration) Option {
	return func(o *options) { o.configResend = d }
}

// WithRegistryCacheTTL sets how long a registry read from the store is
// reused (notification topics, MQTT enabled state). A registry change
// announced on the bus (the manager announces every update and deletion)
// drops the entry at once and is applied to live connections; the TTL is
// the safety net for announcements that never arrive. Default 10 s.
func WithRegistryCacheTTL(d time.Duration) Option { return func(o *options) { o.registryTTL = d } }

// WithMaxAttachedDevices caps the devices attached to one gateway
// connection. Default 1,000.
func WithMaxAttachedDevices(n int) Option { return func(o *options) { o.maxAttached = n } }

// WithKeyCache shares a parsed-key cache (for example with the HTTP
// bridge). Default: a cache of deviceauth.DefaultKeyCacheSize keys.
func WithKeyCache(c *deviceauth.KeyCache) Option { return func(o *options) { o.keyCache = c } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithWorkers bounds the goroutines that deliver configs and react to
// announcements. Default 64.
func WithWorkers(n int) Option { return func(o *options) { o.workers = n } }

// WithMessageRate limits the MQTT packets a connection may send: perSecond
// on average, with bursts of up to burst packets (burst 0: one second's
// worth). Every packet from the device counts except PUBACK (which answers
// the bridge's own messages) and DISCONNECT. Past the limit the connection
// is closed and the device's lastErrorStatus is RESOURCE_EXHAUSTED ("more
// than N messages per second on one connection"). perSecond 0 removes the
// limit. Default DefaultMessageRate (100, compat-spec section 6) with a
// burst of 100.
func WithMessageRate(perSecond float64, burst int) Option {
	return func(o *options) { o.msgRate, o.msgBurst = perSecond, burst }
}

// WithByteRate limits the bytes per second of each device, each way, with
// bursts of one second's worth (at least the largest event, 256 KB plus
// its topic). Incoming: the topic and payload of the device's publishes
// (through a gateway, per attached device); past the limit a direct
// device is disconnected, a proxied device detached with
// GATEWAY_DETACHMENT_DEVICE_ERROR, and lastErrorStatus is
// RESOURCE_EXHAUSTED. Outgoing: configs always go out (they are at most
// one per second and 64 KB) but count against the limit; a command that
// would pass it is refused (SendCommand fails with bus.ErrCommandFailed).
// 0 removes the limit. Default DefaultByteRate (512 KiB/s).
func WithByteRate(bytesPerSecond int64) Option {
	return func(o *options) { o.byteRate = bytesPerSecond }
}

// WithTracerProvider sets where the bridge's spans go (connect, attach,
// detach, and each message hop). Default: the otel global.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// WithMeterProvider sets where the bridge's metrics go. Default: the otel
// global.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// WithPresence makes the bridge one of a cluster: each connection is
// claimed in p when established, and closed, with lastErrorStatus
// ALREADY_EXISTS ("another active connection with the same device id"),
// when a newer connection of the same device or gateway is made on any
// bridge, as one bridge does for two connections of one client id. Ready
// reports p's readiness too. Default: none (the bridge alone).
func WithPresence(p Presence) Option { return func(o *options) { o.presence = p } }

// WithDrain sets the drain period: when Serve's context ends, the bridge
// reports not ready (Ready), stops accepting connections (those not yet
// authenticated are closed, a CONNECT is refused with CONNACK 3), and
// closes its live connections spread evenly over d, so that devices
// reconnect elsewhere without a storm; then it stops as without a drain.
// Nothing is recorded on the devices shed. Default 0: stop at once.
func WithDrain(d time.Duration) Option { return func(o *options) { o.drain = max(d, 0) } }

// WithHTTPRequestRate limits the HTTP bridge's requests of one device
// (publishEvent, setState and getConfig, direct or through a gateway):
// perSecond on average with bursts of burst (0: one second's worth); past
// it a request is answered 429 RESOURCE_EXHAUSTED. perSecond 0 removes the
// limit. Default DefaultHTTPRequestRate (100 a second, 6,000 a minute).
// The byte rate (WithByteRate) and one state a second apply as on MQTT.
func WithHTTPRequestRate(perSecond float64, burst int) Option {
	return func(o *options) { o.httpRate, o.httpBurst = perSecond, burst }
}

// WithHTTPConfigWait bounds how long a getConfig with local_version waits
// for a config newer than that version (a request's X-Server-Timeout
// header, in seconds, may shorten it); then it is answered 504
// DEADLINE_EXCEEDED. Default DefaultHTTPConfigWait (1 minute).
func WithHTTPConfigWait(d time.Duration) Option {
	return func(o *options) { o.httpConfigWait = max(d, 0) }
}

// WithHTTPMaxConnections caps the HTTP bridge's open connections per
// listener (keep-alive ones included); past it a new connection waits in
// the listen backlog until another closes. 0 removes the cap. Default
// DefaultHTTPMaxConnections (4,096).
func WithHTTPMaxConnections(n int) Option {
	return func(o *options) { o.httpMaxConns = max(n, 0) }
}
