package pubsub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/bus"
)

// Bus is what the server needs of pkg/bus: the NATS connection, the stream
// the bridges write to and its subjects. *bus.Bus implements it.
type Bus interface {
	Conn() *nats.Conn
	StreamName() string
	TopicSubject(topic string) (string, error)
	Replicas() int
}

// RegistryTopics lists the Pub/Sub topics that device registries name as
// their event or state notification topics: those topics exist without a
// CreateTopic.
type RegistryTopics func(ctx context.Context) ([]string, error)

// TopicLister is a store that lists the topics registries name
// (*sqlstore.Store); its method is a RegistryTopics.
type TopicLister interface {
	NotificationTopics(ctx context.Context) ([]string, error)
}

// Defaults of the options.
const (
	defaultShutdownTimeout = 10 * time.Second
	// DefaultMetaBucket is the key-value bucket of topics, subscriptions and
	// IAM policies.
	DefaultMetaBucket = "PASSERELLE_PUBSUB_META"
	// maxRequestBytes is above the 10 MB Publish limit, so that an
	// over-limit request gets INVALID_ARGUMENT rather than a transport
	// error (pubsub-spec section 1).
	maxRequestBytes = 11 << 20
	// maxResponseBytes bounds a StreamingPull response (Go's client takes
	// at most 20 MiB).
	maxResponseBytes = 10 << 20
	// defaultMaxOutstanding caps the messages one StreamingPull stream has
	// out unacknowledged, whatever the client asks (it may ask for no
	// limit): the server's memory per stream stays bounded.
	defaultMaxOutstanding = 10_000
	// maxOutstandingBytesCap caps the bytes likewise.
	maxOutstandingBytesCap = 100 << 20
)

type options struct {
	tokens          *adminauth.Tokens
	allowUnauth     bool
	registryTopics  RegistryTopics
	shutdownTimeout time.Duration
	bucket          string
	maxOutstanding  int
	tlsConfig       *tls.Config
}

// Option configures a Server.
type Option func(*options)

// WithTokens sets the admin tokens callers present as "authorization:
// Bearer <token>": viewer pulls and reads, deviceController also
// publishes, editor also creates, changes and deletes. Without it (and
// without WithAllowUnauthenticated) every call fails with UNAUTHENTICATED.
func WithTokens(t *adminauth.Tokens) Option { return func(o *options) { o.tokens = t } }

// WithAllowUnauthenticated serves calls that carry no credentials with
// every right, as Google's emulator does: Google's clients send none when
// PUBSUB_EMULATOR_HOST is set. Calls with a token are still checked.
// Default: off.
func WithAllowUnauthenticated() Option { return func(o *options) { o.allowUnauth = true } }

// WithRegistryTopics makes the topics that registries name exist
// implicitly. Default: none, every topic needs CreateTopic.
func WithRegistryTopics(f RegistryTopics) Option { return func(o *options) { o.registryTopics = f } }

// WithShutdownTimeout bounds how long Serve waits for calls in flight once
// its context is done. Default: 10 s.
func WithShutdownTimeout(d time.Duration) Option {
	return func(o *options) { o.shutdownTimeout = d }
}

// WithMetaBucket names the key-value bucket of the records. Default:
// DefaultMetaBucket.
func WithMetaBucket(name string) Option { return func(o *options) { o.bucket = name } }

// WithTLS serves gRPC (h2) and REST (HTTPS, HTTP/1.1 or h2) over TLS
// with cfg instead of plaintext; a nil cfg is plaintext. Default:
// plaintext, as Google's emulator (PUBSUB_EMULATOR_HOST clients connect
// without TLS).
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tlsConfig = cfg } }

// WithMaxOutstanding caps the unacknowledged messages of one StreamingPull
// stream (below what the client asks, never above). Default: 10,000.
func WithMaxOutstanding(n int) Option { return func(o *options) { o.maxOutstanding = n } }

// Server serves the Pub/Sub API on one port: gRPC (HTTP/2) and REST/JSON
// v1 (HTTP/1.1 or HTTP/2).
type Server struct {
	logger   *slog.Logger
	opts     options
	bus      Bus
	js       jetstream.JetStream
	grpc     *grpc.Server
	rest     http.Handler
	auth     *authorizer
	sessions *sessionRegistry
	journal  *ackJournal

	journalOpen bool // under metaMu

	metaMu sync.Mutex
	meta   *metaStore

	// ctx ends when Serve begins its shutdown: StreamingPull streams end
	// with UNAVAILABLE and the clients reopen them elsewhere.
	ctx    context.Context
	cancel context.CancelFunc
}

// New builds the server on b. It serves once Serve is called.
func New(logger *slog.Logger, b Bus, opts ...Option) (*Server, error) {
	o := options{shutdownTimeout: defaultShutdownTimeout, bucket: DefaultMetaBucket, maxOutstanding: defaultMaxOutstanding}
	for _, opt := range opts {
		opt(&o)
	}
	js, err := jetstream.New(b.Conn())
	if err != nil {
		return nil, fmt.Errorf("pubsub: %w", err)
	}
	s := &Server{logger: logger, opts: o, bus: b, js: js, sessions: newSessionRegistry(),
		journal: newAckJournal(logger, js, b.Conn(), b.StreamName()+"_ACKS", b.Replicas())}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if o.allowUnauth {
		logger.Warn("PUB/SUB API ACCEPTS UNAUTHENTICATED CALLS (--pubsub-allow-unauthenticated): anyone who reaches its port can read and publish every topic")
	}
	if o.tokens == nil && !o.allowUnauth {
		logger.Error("no admin tokens configured for the Pub/Sub API: every call will fail with UNAUTHENTICATED")
	}
	s.auth = &authorizer{logger: logger, tokens: o.tokens, allowUnauth: o.allowUnauth, roles: methodRoles()}
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(maxRequestBytes),
		grpc.MaxSendMsgSize(maxResponseBytes+1<<20),
		grpc.ChainUnaryInterceptor(s.auth.unary, errorInterceptor(logger)),
		grpc.ChainStreamInterceptor(s.auth.stream),
	)
	pubsubpb.RegisterPublisherServer(s.grpc, &publisher{s: s})
	pubsubpb.RegisterSubscriberServer(s.grpc, &subscriber{s: s})
	iampb.RegisterIAMPolicyServer(s.grpc, &iamPolicy{s: s})
	rest, err := newREST(logger, s.grpc, s.auth)
	if err != nil {
		return nil, err
	}
	s.rest = rest
	return s, nil
}

// metaStore returns the record bucket, opening it (creating it if
// needed) on first use; one that could not be opened is tried again by the
// next call.
func (s *Server) metaStore(ctx context.Context) (*metaStore, error) {
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	if s.meta != nil {
		return s.meta, nil
	}
	m, err := openMeta(ctx, s.js, s.opts.bucket, s.bus.Replicas())
	if err != nil {
		return nil, err
	}
	s.meta = m
	return m, nil
}

// setupTimeout bounds how long Start waits for a JetStream cluster that
// has just started (electing its leaders) to take the record bucket and
// the ack journal.
const setupTimeout = 60 * time.Second

// Start opens the record bucket and the ack journal (loading the
// exactly-once acks an earlier run confirmed); Serve does it too. On a
// JetStream cluster still electing its leaders it tries again for up to a
// minute, as the bus does for its stream.
func (s *Server) Start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if err := s.retrySetup(ctx, "the record bucket", func(ctx context.Context) error {
		_, err := s.metaStore(ctx)
		return err
	}); err != nil {
		return err
	}
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	if s.journalOpen {
		return nil
	}
	if err := s.retrySetup(ctx, "the ack journal", s.journal.open); err != nil {
		return err
	}
	s.journalOpen = true
	return nil
}

// retrySetup runs f until it succeeds, fails for a reason a moment cannot
// cure, or ctx ends. Each attempt has its own deadline: a cluster electing
// a leader drops what it is asked, unanswered.
func (s *Server) retrySetup(ctx context.Context, what string, f func(context.Context) error) error {
	waiting := false
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(actx)
		acancel()
		if err == nil || !bus.TransientSetupError(err) || ctx.Err() != nil {
			return err
		}
		if !waiting {
			waiting = true
			s.logger.Warn("pubsub: JetStream is not ready yet; waiting for it", "for", what, "within", setupTimeout, "err", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Serve serves on lis until ctx is done, then stops gracefully within the
// shutdown timeout. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if err := s.Start(ctx); err != nil {
		lis.Close()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("pubsub: open the %s bucket and the ack journal: %w", s.opts.bucket, err)
	}
	// The journal's trimmer runs until the server stops.
	jctx, jcancel := context.WithCancel(context.Background())
	jdone := make(chan struct{})
	go func() {
		defer close(jdone)
		s.journal.run(jctx, s.bus.StreamName())
	}()
	defer func() {
		jcancel()
		<-jdone
	}()
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	var tlsCfg *tls.Config
	if s.opts.tlsConfig != nil {
		tlsCfg = s.opts.tlsConfig.Clone()
		tlsCfg.MinVersion = max(tlsCfg.MinVersion, tls.VersionTLS12)
		protocols.SetHTTP2(true) // ServeTLS offers h2 by ALPN
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	hs := &http.Server{
		TLSConfig:         tlsCfg,
		Handler:           http.HandlerFunc(s.serveHTTP),
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       10 * time.Minute,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          log.New(httpErrorLog{s.logger}, "", 0),
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		if tlsCfg != nil {
			err = hs.ServeTLS(lis, "", "")
		} else {
			err = hs.Serve(lis)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	s.logger.Info("Pub/Sub API serving gRPC and REST", "addr", lis.Addr().String(), "tls", tlsCfg != nil)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.cancel() // streams end with UNAVAILABLE
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	s.grpc.Stop()
	if serveErr == nil {
		<-errc
	}
	return serveErr
}

// serveHTTP sends gRPC to the gRPC server and everything else (REST/JSON)
// to the transcoder.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	ct := r.Header.Get("Content-Type")
	if r.ProtoMajor == 2 && (ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")) {
		s.grpc.ServeHTTP(w, r)
		return
	}
	s.rest.ServeHTTP(w, r)
}

// httpErrorLog sends net/http's own log lines to slog at debug level.
type httpErrorLog struct{ logger *slog.Logger }

func (l httpErrorLog) Write(p []byte) (int, error) {
	l.logger.Debug("pubsub HTTP server", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

// RESTHandler returns the REST/JSON v1 front end alone, to be mounted on
// another server's port (the admin port, for the console): it checks
// tokens as on the Pub/Sub port, and serves once Start or Serve has opened
// the record bucket. It stops serving when Serve returns.
func (s *Server) RESTHandler() http.Handler { return s.rest }
