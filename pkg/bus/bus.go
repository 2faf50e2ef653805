// Package bus is Passerelle's message bus, built on NATS. It carries three
// kinds of traffic between the parts of Passerelle (see design.md,
// "Contracts between the parts"):
//
//   - Telemetry events and state notifications, published by the bridges
//     into a JetStream stream, durably, where any NATS client can consume
//     them (PublishNotification, PublishNotificationAsync).
//   - Announcements from the manager to the bridges (and to other manager
//     instances): a device's config changed, a device changed (blocked,
//     credentials...) or was deleted, a registry changed or was deleted
//     (Announce, SubscribeAnnouncements). Core NATS, fire and forget.
//   - Commands from the manager to the one bridge instance that holds a
//     device's connection (SendCommand, HandleCommands). Core NATS
//     request/reply, so the manager learns at once whether a bridge holds
//     the device.
//
// # Names on the wire
//
// With the default Options (the README copies this section):
//
//	iot.pubsub.<project>.<topic>   telemetry events and state notifications, one
//	                               subject per Pub/Sub topic "projects/<project>/topics/<topic>"
//	PASSERELLE_PUBSUB              the JetStream stream capturing iot.pubsub.>
//	                               (file storage, limits retention: by default 7 days, 1 GiB,
//	                               discard old; see StreamLimits)
//	passerelle.announce.<numId>    announcements for a device (JSON, see Announcement)
//	passerelle.announce.registry   announcements for a registry (JSON, see Announcement)
//	passerelle.command.<numId>     commands for a device (request/reply)
//
// In <project> and <topic>, every byte other than ASCII letters, digits and
// "-_~+:" is percent-encoded (upper-case hex) so that a name never splits
// into two subject tokens nor reads as a wildcard: "." is "%2E" and "%"
// itself is "%25", so the mapping is one to one. TopicSubject gives the
// subject of a topic.
//
// Each stored message's payload is the device's bytes, unchanged. Its NATS
// headers carry the Cloud IoT attributes under their Cloud IoT names,
// "deviceId", "deviceNumId", "deviceRegistryId", "deviceRegistryLocation",
// "projectId", "subFolder" and "gatewayId" (headers with an empty value are
// left out), plus "iot-kind": "event" or "state", and (but for
// PublishNotificationAtMostOnce's QoS 0 events, never sent again) a
// "Nats-Msg-Id" of its own: a publish sent again (a stream leader
// election, a reconnection to another server) is stored once, within the
// stream's duplicate window of twice Options.PublishTimeout. The Pub/Sub
// API shows no "Nats-" header
// as an attribute. To follow a registry's events with the nats CLI:
//
//	nats stream view PASSERELLE_PUBSUB
//	nats consumer add PASSERELLE_PUBSUB my-app --filter 'iot.pubsub.my-project.my-topic' --pull --ack explicit
//	nats consumer next PASSERELLE_PUBSUB my-app --count 10
//
// # Servers
//
// With an empty Options.URL, Open starts a NATS server with JetStream inside
// the process, storing in Options.DataDir, reachable only through in-process
// connections unless Options.ListenAddr asks for a TCP listener. With a URL,
// Open connects to that server or cluster, which must run JetStream
// (nats-server -js), and creates or updates the stream there.
//
// # Replicas
//
// The stream (and the key-value buckets of pkg/cluster, through Replicas)
// keeps Options.Replicas copies; 0 picks: 1 on the embedded server and on
// a single external server, 3 on a cluster (a server that names its
// cluster). JetStream acknowledges a publish only once a majority of the
// replicas hold it (the stream leader answers when it applies the
// committed Raft entry), so a PUBACK that waits for the acknowledgement
// means the replicated write is done. A stream made with another count is
// updated to this one; a count the servers cannot place is an error that
// says so.
//
// # Outages
//
// The connection reconnects for ever, once a second, to any server of the
// URL list or the cluster; a dead server is noticed within about 15 s
// (pings every 5 s, 2 unanswered), a closed connection at once. While it
// is down, Ready reports it, publishes wait in the client's buffer (8 MiB)
// for the reconnection until their deadline, and their errors wrap
// ErrUnavailable: nothing unacknowledged is reported as stored. A publish
// left unanswered (the stream electing a new leader after a server died)
// is sent again every 2 s within its deadline. Commands fail at once while
// disconnected. Announcement subscribers get a Resync after the
// reconnection.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/passerelle-iot/passerelle/pkg/datadir"
)

// Errors returned by the bus; test them with errors.Is.
var (
	// ErrNotConnected: no bridge holds the device, so a command cannot be
	// delivered (the manager answers FAILED_PRECONDITION).
	ErrNotConnected = errors.New("bus: device is not connected")
	// ErrCommandFailed wraps the error a bridge's command handler returned.
	ErrCommandFailed = errors.New("bus: command failed")
	// ErrInvalidTopic: a Pub/Sub topic name that is not
	// "projects/{project}/topics/{topic}" with a valid topic id.
	ErrInvalidTopic = errors.New("bus: invalid Pub/Sub topic name")
	// ErrInvalid: another invalid argument (kind, device number...).
	ErrInvalid = errors.New("bus: invalid argument")
	// ErrClosed: the Bus was closed.
	ErrClosed = errors.New("bus: closed")
	// ErrUnavailable: NATS is unreachable or JetStream did not answer in
	// time (the connection is reconnecting, the stream has no leader):
	// what was asked may not have happened. Retry later.
	ErrUnavailable = errors.New("NATS or JetStream unavailable")
)

// Options configure Open. The zero value of every field but DataDir (or
// URL) is a usable default; defaults live in withDefaults.
type Options struct {
	// URL of an external NATS server or cluster, for example
	// "nats://h1:4222,nats://h2:4222". Empty: start an embedded server.
	URL string
	// DataDir is the embedded server's JetStream storage folder (for
	// example <data-dir>/nats). Required when URL is empty.
	DataDir string
	// ListenAddr makes the embedded server also accept TCP clients on this
	// address ("127.0.0.1:4222"; port 0 picks a free one). Empty, the
	// default: in-process connections only, so an embedded server never
	// collides with a NATS server already running on 4222.
	ListenAddr string
	// SyncAlways makes the embedded server fsync each stored message
	// before acknowledging it (survives power loss, ~5,000 fsyncs/s on our
	// disks). Default false: a stored message survives a crash of the
	// process, and the server fsyncs every 2 minutes.
	SyncAlways bool
	// Name is the NATS connection name (shown by the server). Default
	// "passerelle".
	Name string
	// Replicas is how many copies of the stream JetStream keeps (and of
	// the buckets of pkg/cluster, see Bus.Replicas), at most 5. 0, the
	// default, picks: 1 on the embedded server and on a single external
	// server, 3 on a cluster.
	Replicas int
	// SetupTimeout bounds how long Open waits for JetStream to become
	// available (a cluster electing its leaders just after it started)
	// and the stream to be placed. Default 30 s.
	SetupTimeout time.Duration

	// StreamName is the JetStream stream's name. Default
	// "PASSERELLE_PUBSUB".
	StreamName string
	// SubjectPrefix of notification subjects. Default "iot.pubsub".
	SubjectPrefix string
	// ControlPrefix of announcement and command subjects
	// (<prefix>.announce.<numId>, <prefix>.command.<numId>). Default
	// "passerelle".
	ControlPrefix string
	// Stream are the stream's limits (max bytes, messages, age, discard
	// policy). Open applies those that are set, to a new stream or to the
	// one already there; unset ones keep the stream's current values.
	Stream StreamLimits
	// WatchStream makes the bus read the stream's state every
	// StreamWatchInterval (default 30 s): the gauge
	// passerelle.bus.stream.fill, and a warning log when the stream is
	// over StreamWarnFill (default 0.8) of its bytes or messages limit.
	// The process that sets the limits turns it on.
	WatchStream         bool
	StreamWatchInterval time.Duration
	StreamWarnFill      float64
	// MeterProvider records the stream fill gauge. Default: OpenTelemetry's
	// global one.
	MeterProvider metric.MeterProvider

	// MaxPendingPublishes bounds PublishNotificationAsync calls waiting
	// for their acknowledgement; further calls wait for a slot. Default
	// 4096.
	MaxPendingPublishes int
	// PublishTimeout bounds the wait for a stream acknowledgement when the
	// caller's context has no deadline, and for each asynchronous publish
	// with its resends. The stream's duplicate window is twice as long, so
	// that a message sent again within it is stored once. Default 10 s.
	PublishTimeout time.Duration
	// CommandTimeout bounds SendCommand when its context has no deadline.
	// Default 10 s.
	CommandTimeout time.Duration
	// CommandConcurrency bounds the command handlers running at once in
	// this process. Default 1024.
	CommandConcurrency int
	// AnnouncementBuffer is how many announcements may wait for each
	// subscription's handler; past it, announcements are dropped and the
	// handler receives a Resync. Default 65536.
	AnnouncementBuffer int
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = "passerelle"
	}
	if o.SetupTimeout <= 0 {
		o.SetupTimeout = 30 * time.Second
	}
	if o.StreamName == "" {
		o.StreamName = "PASSERELLE_PUBSUB"
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = "iot.pubsub"
	}
	if o.ControlPrefix == "" {
		o.ControlPrefix = "passerelle"
	}
	if o.StreamWatchInterval <= 0 {
		o.StreamWatchInterval = DefaultStreamWatchInterval
	}
	if o.StreamWarnFill <= 0 {
		o.StreamWarnFill = DefaultStreamWarnFill
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	if o.MaxPendingPublishes <= 0 {
		o.MaxPendingPublishes = 4096
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 10 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 10 * time.Second
	}
	if o.CommandConcurrency <= 0 {
		o.CommandConcurrency = 1024
	}
	if o.AnnouncementBuffer <= 0 {
		o.AnnouncementBuffer = 65536
	}
	return o
}

// Bus is a connection to the bus. Its methods are safe for concurrent use.
type Bus struct {
	logger *slog.Logger
	opts   Options
	srv    *server.Server // embedded server, nil on an external one
	dir    *datadir.Dir   // the embedded server's folder, held while it runs
	nc     *nats.Conn
	js     jetstream.JetStream
	pub    *publisher              // the asynchronous publishes (publisher.go)
	pubDur metric.Float64Histogram // passerelle.bus.publish.duration

	ctx        context.Context // cancelled by Close; parent of command handlers' contexts
	cancel     context.CancelFunc
	closed     chan struct{} // closed by Close: ends the bus's goroutines
	wg         sync.WaitGroup
	once       sync.Once
	connClosed chan struct{} // closed when the NATS connection is closed

	pubSem  chan struct{}
	pendMu  sync.Mutex
	closing bool
	pending map[*nats.Msg]*asyncPub
	retries sync.WaitGroup // resend timers scheduled and not stopped
	// msgIDs numbers the notifications' Nats-Msg-Id after msgIDPrefix,
	// random per Bus.
	msgIDPrefix string
	msgIDs      atomic.Uint64

	annMu   sync.Mutex
	annSubs map[*nats.Subscription]*AnnouncementSub

	cmdMu   sync.Mutex
	cmdSubs map[*nats.Subscription]CommandHandler
	cmdCh   chan *nats.Msg
	cmdSem  chan struct{}

	// replicas is Options.Replicas, or what 0 picked.
	replicas int
	// downSince is when the connection was lost (Unix ns), 0 while it is
	// up; downErr why.
	downSince atomic.Int64
	downMu    sync.Mutex
	downErr   error
	up        chan struct{} // closed while connected; replaced when the connection is lost
	// reconnects is the client's count of reconnections when onReconnect
	// last asked every subscription for a Resync, for AnnouncementSub.Sync.
	reconnects atomic.Uint64
}

// Connection settings: a reconnection attempt every 250 ms (to each
// server of the list or the cluster, with the client's jitter), for ever,
// so that a process is back on the bus well inside the second in which a
// healed split must end double connections; only Passerelle's own
// processes connect, so this is no storm. A server that stops answering is
// given up after 2 pings 5 s apart.
const (
	reconnectWait       = 250 * time.Millisecond
	pingInterval        = 5 * time.Second
	maxPingsOutstanding = 2
)

// Open connects to the bus: it starts the embedded server or connects to
// opts.URL, checks that JetStream is there, and creates or updates the
// notification stream. Close releases everything.
func Open(ctx context.Context, logger *slog.Logger, opts Options) (*Bus, error) {
	opts = opts.withDefaults()
	if err := opts.Stream.Validate(); err != nil {
		return nil, err
	}
	b := &Bus{
		logger:      logger,
		opts:        opts,
		pubDur:      publishDuration(),
		closed:      make(chan struct{}),
		connClosed:  make(chan struct{}),
		up:          make(chan struct{}),
		pubSem:      make(chan struct{}, opts.MaxPendingPublishes),
		pending:     make(map[*nats.Msg]*asyncPub),
		msgIDPrefix: newMsgIDPrefix(),
		annSubs:     make(map[*nats.Subscription]*AnnouncementSub),
		cmdSubs:     make(map[*nats.Subscription]CommandHandler),
		cmdCh:       make(chan *nats.Msg, opts.CommandConcurrency*4),
		cmdSem:      make(chan struct{}, opts.CommandConcurrency),
	}
	close(b.up) // connected once Open returns
	b.ctx, b.cancel = context.WithCancel(context.Background())

	natsOpts := []nats.Option{
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOutstanding),
		nats.ErrorHandler(b.onAsyncError),
		nats.ReconnectHandler(b.onReconnect),
		nats.DisconnectErrHandler(b.onDisconnect),
		nats.ClosedHandler(func(*nats.Conn) { close(b.connClosed) }),
	}
	connURL := opts.URL
	if opts.URL == "" {
		if opts.DataDir == "" {
			b.cancel()
			return nil, fmt.Errorf("%w: Options.DataDir is required for the embedded NATS server", ErrInvalid)
		}
		// Two servers on one JetStream folder would corrupt it: the
		// folder is held for as long as the server runs.
		dir, err := datadir.Claim(opts.DataDir, "embedded NATS of "+opts.Name)
		if err != nil {
			b.cancel()
			return nil, fmt.Errorf("bus: %w", err)
		}
		srv, err := startEmbedded(logger, opts)
		if err != nil {
			_ = dir.Release()
			b.cancel()
			return nil, err
		}
		b.srv, b.dir = srv, dir
		connURL = ""
		natsOpts = append(natsOpts, nats.InProcessServer(srv))
	}
	nc, err := nats.Connect(connURL, natsOpts...)
	if err != nil {
		b.shutdownServer()
		b.cancel()
		if opts.URL == "" {
			return nil, fmt.Errorf("bus: connecting to the embedded NATS server: %w", err)
		}
		return nil, fmt.Errorf("bus: cannot connect to NATS at %s: %w (check the URL and that the server is running with JetStream enabled, nats-server -js)", redactURLs(opts.URL), err)
	}
	b.nc = nc

	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(opts.PublishTimeout))
	if err == nil {
		b.js = js
		// Each attempt: PublishNotificationAsync sends the message again
		// when one gets no answer, until PublishTimeout.
		b.pub, err = newPublisher(nc, min(publishAttemptTimeout, opts.PublishTimeout), b.finishAsync)
	}
	if err == nil {
		err = b.setup(ctx)
	}
	if err != nil {
		if b.pub != nil {
			b.pub.close()
		}
		nc.Close()
		b.shutdownServer()
		b.cancel()
		return nil, err
	}

	b.wg.Add(1)
	go b.dispatchCommands()
	if opts.WatchStream {
		b.wg.Add(1)
		go b.watchStream(opts.StreamWatchInterval, opts.StreamWarnFill)
	}
	where := "embedded"
	if opts.URL != "" {
		where = redactURLs(opts.URL)
	}
	logger.Info("bus: connected", "nats", where, "server", nc.ConnectedServerName(), "cluster", nc.ConnectedClusterName(),
		"stream", opts.StreamName, "replicas", b.replicas)
	return b, nil
}

// setup resolves the replica count and creates or updates the stream,
// retrying for Options.SetupTimeout what a cluster that has just started
// answers while it elects its leaders.
func (b *Bus) setup(ctx context.Context) error {
	n, err := b.pickReplicas()
	if err != nil {
		return err
	}
	b.replicas = n
	ctx, cancel := context.WithTimeout(ctx, b.opts.SetupTimeout)
	defer cancel()
	waiting := false
	for {
		// Each attempt has its own deadline: a cluster drops the requests
		// it gets while it elects a leader, unanswered.
		actx, acancel := context.WithTimeout(ctx, setupAttemptTimeout)
		err := b.setupStream(actx)
		acancel()
		if err == nil || !TransientSetupError(err) {
			return err
		}
		if !waiting {
			waiting = true
			b.logger.Warn("bus: JetStream is not ready yet; waiting for it", "within", b.opts.SetupTimeout, "err", err)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w (JetStream was still not ready after %s)", err, b.opts.SetupTimeout)
			}
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// pickReplicas returns the replica count: Options.Replicas, or what 0
// picks for the server the connection reached.
func (b *Bus) pickReplicas() (int, error) {
	n := b.opts.Replicas
	switch {
	case n < 0 || n > maxReplicas:
		return 0, fmt.Errorf("%w: %d replicas: JetStream keeps 1 to %d", ErrInvalid, n, maxReplicas)
	case n > 1 && b.srv != nil:
		return 0, fmt.Errorf("%w: %d replicas on the embedded NATS server, which is a single server: give 1 (or 0), or a NATS cluster's URL", ErrInvalid, n)
	case n > 0:
		return n, nil
	case b.srv == nil && b.nc.ConnectedClusterName() != "":
		return clusterReplicas, nil
	}
	return 1, nil
}

// setupAttemptTimeout bounds each attempt of setup.
const setupAttemptTimeout = 5 * time.Second

// maxReplicas is JetStream's limit; clusterReplicas what a cluster gets by
// default (Raft's majority of 3 survives the loss of one server).
const (
	maxReplicas     = 5
	clusterReplicas = 3
)

// Replicas returns how many copies of the stream JetStream keeps; the
// key-value buckets of pkg/cluster are made with the same count.
func (b *Bus) Replicas() int { return b.replicas }

// JetStream API error codes setup tells apart (nats-server errors.json).
const (
	jsErrClusterNotAvailable  = 10008 // JetStream system temporarily unavailable
	jsErrDuplicateInProcess   = 10158 // an earlier copy of this message id is still being stored
	jsErrNoPeers              = 10005 // no suitable peers for placement
	jsErrInsufficientResource = 10023 // insufficient resources
	jsErrReplicasNotSupported = 10074 // replicas > 1 not supported in non-clustered mode
)

func jsErrCode(err error) jetstream.ErrorCode {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}

// TransientSetupError reports a JetStream error that a moment may cure: a
// cluster still electing its meta leader, a server of the cluster still
// joining. What sets up streams or buckets at start retries these.
func TransientSetupError(err error) bool {
	switch jsErrCode(err) {
	case jsErrClusterNotAvailable, jsErrNoPeers, jsErrInsufficientResource:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
}

// setupStream checks JetStream and creates or updates the stream, so Open
// is idempotent on a server where the stream already exists.
func (b *Bus) setupStream(ctx context.Context) error {
	if _, err := b.js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("bus: JetStream is not enabled on the NATS server at %s: start it with -js (or a jetstream block in its config): %w", redactURLs(b.opts.URL), err)
		}
		return fmt.Errorf("bus: asking NATS for JetStream account info: %w", err)
	}
	var had int
	var cur *jetstream.StreamConfig
	if st, err := b.js.Stream(ctx, b.opts.StreamName); err == nil {
		c := st.CachedInfo().Config
		cur, had = &c, c.Replicas
	}
	cfg := jetstream.StreamConfig{
		Name:        b.opts.StreamName,
		Description: "Passerelle telemetry events and state notifications",
		Subjects:    []string{b.opts.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    b.replicas,
	}
	if cur != nil {
		cfg.MaxBytes, cfg.MaxMsgs, cfg.MaxAge, cfg.Discard = cur.MaxBytes, cur.MaxMsgs, cur.MaxAge, cur.Discard
	}
	b.opts.Stream.apply(&cfg, cur != nil)
	cfg.Duplicates = duplicateWindow(b.opts.PublishTimeout, cfg.MaxAge)
	if _, err := b.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return b.explainStreamError(cfg, had, err)
	}
	if had != 0 && had != cfg.Replicas {
		b.logger.Warn("bus: changed the stream's replica count", "stream", cfg.Name, "from", had, "to", cfg.Replicas)
	}
	if cur != nil && (cur.MaxBytes != cfg.MaxBytes || cur.MaxMsgs != cfg.MaxMsgs || cur.MaxAge != cfg.MaxAge || cur.Discard != cfg.Discard) {
		b.logger.Info("bus: changed the stream's limits", "stream", cfg.Name,
			"max_bytes", cfg.MaxBytes, "max_msgs", cfg.MaxMsgs, "max_age", cfg.MaxAge, "discard", cfg.Discard.String(),
			"was_max_bytes", cur.MaxBytes, "was_max_msgs", cur.MaxMsgs, "was_max_age", cur.MaxAge, "was_discard", cur.Discard.String())
	}
	return nil
}

// StreamInfo returns the telemetry stream's configuration and state, as
// JetStream reports them.
func (b *Bus) StreamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	return b.streamInfo(ctx)
}

// explainStreamError says what to do about a stream that could not be
// created or updated.
func (b *Bus) explainStreamError(cfg jetstream.StreamConfig, had int, err error) error {
	what := "creating"
	if had != 0 {
		what = "updating"
	}
	where := redactURLs(b.opts.URL)
	switch jsErrCode(err) {
	case jsErrReplicasNotSupported:
		return fmt.Errorf("bus: %s stream %s with %d replicas: the NATS server at %s is a single server, not a cluster: give --nats-replicas 1, or the URL of a NATS cluster: %w",
			what, cfg.Name, cfg.Replicas, where, err)
	case jsErrNoPeers, jsErrInsufficientResource:
		return fmt.Errorf("bus: %s stream %s with %d replicas: the NATS cluster at %s cannot place %d copies (fewer JetStream servers are up, or they lack room): start the missing servers, or give --nats-replicas with the number there are: %w",
			what, cfg.Name, cfg.Replicas, where, cfg.Replicas, err)
	}
	if had != 0 && had != cfg.Replicas {
		return fmt.Errorf("bus: updating stream %s from %d to %d replicas: %w (give --nats-replicas %d to keep it as it is)", cfg.Name, had, cfg.Replicas, err, had)
	}
	return fmt.Errorf("bus: %s stream %s: %w", what, cfg.Name, err)
}

func startEmbedded(logger *slog.Logger, opts Options) (*server.Server, error) {
	sopts := &server.Options{
		ServerName: "passerelle",
		DontListen: true,
		JetStream:  true,
		StoreDir:   opts.DataDir,
		SyncAlways: opts.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
	}
	if opts.ListenAddr != "" {
		host, portStr, err := net.SplitHostPort(opts.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("%w: Options.ListenAddr %q: %v", ErrInvalid, opts.ListenAddr, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port < 0 || port > 65535 {
			return nil, fmt.Errorf("%w: Options.ListenAddr %q: bad port", ErrInvalid, opts.ListenAddr)
		}
		if port == 0 {
			port = server.RANDOM_PORT // NATS reads port 0 as "the default, 4222"
		}
		sopts.DontListen = false
		sopts.Host = host
		sopts.Port = port
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("bus: configuring the embedded NATS server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{logger}, logger.Enabled(context.Background(), slog.LevelDebug), false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("bus: the embedded NATS server did not start within 10 s (data folder %s; listen address %q)", opts.DataDir, opts.ListenAddr)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("bus: the embedded NATS server could not enable JetStream in %s (see the debug log)", opts.DataDir)
	}
	return srv, nil
}

// Server returns the embedded NATS server, or nil when the Bus uses an
// external one. Tests and the all-in-one binary use it (Addr, ClientURL).
func (b *Bus) Server() *server.Server { return b.srv }

// Conn returns the underlying NATS connection, for uses this package does
// not cover (consumers in tests, health checks). Do not close it.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Close stops the handlers, waits (at most PublishTimeout) for outstanding
// asynchronous publishes (sending none again), fails those left with
// ErrClosed, drains the connection and shuts the embedded server down,
// waiting for all of it.
// Calling Close again does nothing and returns nil.
func (b *Bus) Close() error {
	var err error
	b.once.Do(func() { err = b.close() })
	return err
}

func (b *Bus) close() error {
	b.pendMu.Lock()
	b.closing = true
	b.pendMu.Unlock()

	// Outstanding publishes first: their callers are waiting to PUBACK.
	if !b.pub.waitIdle(b.opts.PublishTimeout) {
		b.logger.Warn("bus: closing with unacknowledged publishes", "pending", b.pub.inFlight())
	}
	b.pub.close() // fails what is left through finishAsync
	b.failPending(ErrClosed)
	b.retries.Wait() // resends that were starting: they send nothing now

	// Then stop the handlers and wait for them, so their replies go out
	// before the connection closes.
	// closed is closed under both locks so that no subscription can be
	// added once Close is past this point (their goroutines count in wg).
	b.annMu.Lock()
	b.cmdMu.Lock()
	for sub := range b.annSubs {
		_ = sub.Unsubscribe()
	}
	for sub := range b.cmdSubs {
		_ = sub.Unsubscribe()
	}
	b.cancel()
	close(b.closed)
	b.cmdMu.Unlock()
	b.annMu.Unlock()
	b.wg.Wait()

	var err error
	switch derr := b.nc.Drain(); {
	case derr == nil, errors.Is(derr, nats.ErrConnectionClosed):
	case errors.Is(derr, nats.ErrConnectionReconnecting):
		// Nothing can be drained while the connection is down: every
		// publish has had its answer above, so just close it.
		b.logger.Debug("bus: closing while reconnecting to NATS")
		b.nc.Close()
	default:
		err = fmt.Errorf("bus: draining the NATS connection: %w", derr)
		b.nc.Close()
	}
	<-b.connClosed
	b.shutdownServer()
	b.logger.Debug("bus: closed")
	return err
}

func (b *Bus) shutdownServer() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		_ = b.dir.Release()
	}
}

// onAsyncError receives errors NATS reports outside any call: slow
// consumers (a subscription's buffer overflowed and messages were dropped)
// and permission errors.
func (b *Bus) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if sub == nil {
		b.logger.Warn("bus: NATS error", "err", err)
		return
	}
	subject := sub.Subject
	if errors.Is(err, nats.ErrSlowConsumer) {
		b.annMu.Lock()
		s := b.annSubs[sub]
		b.annMu.Unlock()
		if s != nil {
			s.requestResync()
		}
	}
	b.logger.Warn("bus: NATS subscription error", "subject", subject, "err", err)
}

// onDisconnect logs the loss of the connection, once: the client then
// retries on its own, quietly.
func (b *Bus) onDisconnect(nc *nats.Conn, err error) {
	if nc.IsClosed() {
		return // Close, not an outage
	}
	b.downMu.Lock()
	b.downErr = err
	select {
	case <-b.up:
		b.up = make(chan struct{})
	default:
	}
	b.downMu.Unlock()
	b.downSince.CompareAndSwap(0, time.Now().UnixNano())
	if err == nil {
		err = errors.New("the server closed the connection")
	}
	b.logger.Warn("bus: disconnected from NATS; reconnecting (publishes wait, unacknowledged)", "err", err)
}

// onReconnect: core NATS messages sent while disconnected are lost, so
// announcement subscribers must re-read the store.
func (b *Bus) onReconnect(nc *nats.Conn) {
	var down time.Duration
	if since := b.downSince.Swap(0); since != 0 {
		down = time.Since(time.Unix(0, since)).Round(time.Millisecond)
	}
	b.logger.Info("bus: reconnected to NATS", "server", nc.ConnectedServerName(), "url", nc.ConnectedUrlRedacted(), "down_for", down)
	b.downMu.Lock()
	select {
	case <-b.up:
	default:
		close(b.up)
	}
	b.downMu.Unlock()
	// Every reconnection counted so far happened before the Resyncs asked
	// below, so their handling covers them all.
	count := nc.Stats().Reconnects
	b.annMu.Lock()
	defer b.annMu.Unlock()
	for _, s := range b.annSubs {
		s.requestResync()
	}
	b.reconnects.Store(count)
}

// Ready reports whether the connection to NATS is up: nil when it is,
// an error wrapping ErrUnavailable while it reconnects, ErrClosed after
// Close. It asks nothing of the server.
func (b *Bus) Ready(context.Context) error {
	switch st := b.nc.Status(); st {
	case nats.CONNECTED:
		return nil
	case nats.CLOSED, nats.DRAINING_SUBS, nats.DRAINING_PUBS:
		return ErrClosed
	default:
		msg := "not connected to NATS at " + redactURLs(b.opts.URL)
		if since := b.downSince.Load(); since != 0 {
			msg += fmt.Sprintf(" for %s", time.Since(time.Unix(0, since)).Round(100*time.Millisecond))
		}
		b.downMu.Lock()
		if b.downErr != nil {
			msg += " (" + b.downErr.Error() + ")"
		}
		b.downMu.Unlock()
		return fmt.Errorf("%w: %s; reconnecting", ErrUnavailable, msg)
	}
}

// waitConnected returns nil once the connection is up (at once when it
// is), ctx's error if it ends first, ErrClosed once the Bus is closed.
func (b *Bus) waitConnected(ctx context.Context) error {
	for !b.nc.IsConnected() {
		b.downMu.Lock()
		up := b.up
		b.downMu.Unlock()
		if b.nc.IsClosed() {
			return ErrClosed
		}
		select {
		case <-up:
			if !b.nc.IsConnected() {
				// Lost again, and onDisconnect has not run yet.
				select {
				case <-time.After(10 * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-b.connClosed:
			return ErrClosed
		}
	}
	return nil
}

// StreamReady reports whether JetStream answers for the stream: the
// connection is up and the stream's leader replies. A bridge needs it to
// acknowledge events.
func (b *Bus) StreamReady(ctx context.Context) error {
	if err := b.Ready(ctx); err != nil {
		return err
	}
	if _, err := b.js.Stream(ctx, b.opts.StreamName); err != nil {
		return fmt.Errorf("%w: JetStream does not answer for stream %s: %v", ErrUnavailable, b.opts.StreamName, err)
	}
	return nil
}

// unavailableErr wraps in ErrUnavailable an error that means NATS or
// JetStream did not answer: a timeout, no responders, a full reconnect
// buffer, a lost connection.
func unavailableErr(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrUnavailable):
		return err
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrStaleConnection), errors.Is(err, nats.ErrNoServers),
		jsErrCode(err) == jsErrDuplicateInProcess:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// redactURLs removes user information (passwords, tokens) from a server
// URL list before it goes into an error or a log.
func redactURLs(list string) string {
	if list == "" {
		return "(embedded)"
	}
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "(unparsable URL)"
			continue
		}
		if u.User != nil {
			u.User = url.User("REDACTED")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// serverLogger routes the embedded server's log to slog. Its notices are
// chatty (banner, JetStream settings), so they go at debug.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) {
	s.l.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Warnf(format string, v ...any) { s.l.Warn("nats: " + fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any) {
	s.l.Error("nats: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Errorf(format string, v ...any) {
	s.l.Error("nats: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Debugf(format string, v ...any) {
	s.l.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Tracef(format string, v ...any) {
	s.l.Debug("nats: " + fmt.Sprintf(format, v...))
}

// StreamName is the name of the JetStream stream notifications go to.
func (b *Bus) StreamName() string { return b.opts.StreamName }
