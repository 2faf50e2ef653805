package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// deviceManagerService is the full name of Cloud IoT Core's admin service,
// also the name its health status is reported under.
const deviceManagerService = "google.cloud.iot.v1.DeviceManager"

// Defaults of the options.
const (
	defaultShutdownTimeout = 10 * time.Second
	// defaultDeviceCacheTTL is how long GetDevice may serve a device it read
	// before (see deviceCache for what that can make stale).
	defaultDeviceCacheTTL = time.Second
	// deviceCacheEntries bounds the device cache (two entries a device).
	deviceCacheEntries = 200_000
	// sniffTimeout bounds how long a new plaintext connection may take to
	// send the bytes that tell gRPC from HTTP/1.1.
	sniffTimeout = 5 * time.Second
	// maxRESTMessageBytes bounds a message the transcoder holds in memory:
	// responses (a page of devices), since request bodies are capped
	// before it sees them (restBodyLimits).
	maxRESTMessageBytes = 8 << 20
)

// Server serves the DeviceManager API over gRPC and REST/JSON v1 on one
// port, with gRPC health and server reflection.
type Server struct {
	logger   *slog.Logger
	opts     options
	grpc     *grpc.Server
	health   *health.Server
	rest     http.Handler // the discovery document, and REST/JSON (and Connect, gRPC-Web) through the transcoder
	auth     *authorizer
	dm       *deviceManager
	buildErr error

	// serving is true from the moment Serve takes calls until its
	// shutdown begins; stopping once the shutdown began.
	serving  atomic.Bool
	stopping atomic.Bool
}

type options struct {
	tokens          *adminauth.Tokens
	insecureNoAuth  bool
	tlsConfig       *tls.Config
	tracerProvider  trace.TracerProvider
	meterProvider   metric.MeterProvider
	shutdownTimeout time.Duration
	bus             Bus
	deviceCacheTTL  time.Duration
	// maxBodyBytesInFlight bounds the REST request bodies held at once.
	maxBodyBytesInFlight int64
	console              http.Handler // WithConsole
	pubsubREST           http.Handler // WithPubSubREST
}

// Option configures a Server.
type Option func(*options)

// WithTokens sets the admin tokens callers must present as
// "authorization: Bearer <token>". Without it (and without
// WithInsecureNoAuth) every call but health and reflection fails with
// UNAUTHENTICATED.
func WithTokens(t *adminauth.Tokens) Option {
	return func(o *options) { o.tokens = t }
}

// WithInsecureNoAuth turns authentication off: every caller is admin. For
// local experiments only; New logs a warning. Default: off.
func WithInsecureNoAuth() Option {
	return func(o *options) { o.insecureNoAuth = true }
}

// WithTLS serves gRPC and REST over TLS with cfg (ALPN h2 and http/1.1 are
// added). Default: plaintext.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tlsConfig = cfg }
}

// WithTracerProvider sets where RPC spans go. Default: the otel global.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// WithMeterProvider sets where RPC metrics go. Default: the otel global.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// WithBus connects the manager to the bridges: config and device changes
// are announced on b, and SendCommandToDevice goes through it to the bridge
// holding the device. Default: none, and every command fails with
// FAILED_PRECONDITION (no device can be connected).
func WithBus(b Bus) Option {
	return func(o *options) { o.bus = b }
}

// WithDeviceCacheTTL sets how long GetDevice may answer from devices it read
// before: changes made through this manager (or announced on the bus by
// another one) are seen at once, the fields the bridges keep (last*Time,
// state) up to ttl late. 0 turns the cache off. Default: 1 s.
func WithDeviceCacheTTL(ttl time.Duration) Option {
	return func(o *options) { o.deviceCacheTTL = ttl }
}

// WithShutdownTimeout bounds how long Serve waits for in-flight calls once
// its context is done, before closing connections. Default: 10 s.
func WithShutdownTimeout(d time.Duration) Option {
	return func(o *options) { o.shutdownTimeout = d }
}

// WithMaxBodyBytesInFlight bounds the bytes of REST request bodies the
// manager holds at once, across all requests: a request reserves its
// Content-Length (or its method's largest legitimate body when it sends
// none) before its body is read, and one that does not fit is refused with
// RESOURCE_EXHAUSTED (HTTP 429, Retry-After: 1). Each body is also capped at
// what its method can legitimately carry, whatever n is. Default: 64 MiB.
func WithMaxBodyBytesInFlight(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.maxBodyBytesInFlight = n
		}
	}
}

// New builds the manager on st.
func New(logger *slog.Logger, st store.Store, opts ...Option) *Server {
	o := options{
		shutdownTimeout:      defaultShutdownTimeout,
		deviceCacheTTL:       defaultDeviceCacheTTL,
		maxBodyBytesInFlight: defaultMaxBodyBytesInFlight,
	}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{logger: logger, opts: o}

	var auth *authorizer
	switch {
	case o.insecureNoAuth:
		logger.Warn("ADMIN API AUTHENTICATION IS OFF (--insecure-no-auth): anyone who reaches this port can change or delete every registry and device")
		auth = newAuthorizer(logger, nil)
	case o.tokens == nil:
		// Fail closed: a manager built without tokens refuses every call
		// rather than serving everyone.
		logger.Error("no admin tokens configured: every admin call will fail with UNAUTHENTICATED")
		auth = newDenyAllAuthorizer(logger)
	default:
		auth = newAuthorizer(logger, o.tokens)
	}
	s.auth = auth

	var otelOpts []otelgrpc.Option
	if o.tracerProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithTracerProvider(o.tracerProvider))
	}
	if o.meterProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithMeterProvider(o.meterProvider))
	}
	s.grpc = grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...)),
		// Refuse what the interceptors would refuse before reading the
		// message (native gRPC; over TLS the HTTP handler checks first).
		grpc.InTapHandle(auth.tap),
		grpc.MaxRecvMsgSize(maxGRPCRequestBytes),
		grpc.ChainUnaryInterceptor(auth.unary, unaryErrorInterceptor(logger)),
		grpc.ChainStreamInterceptor(auth.stream),
	)
	s.dm = newDeviceManager(logger, st, time.Now, o.bus)
	if o.deviceCacheTTL > 0 {
		s.dm.cache = newDeviceCache(o.deviceCacheTTL, deviceCacheEntries, time.Now)
	}
	iotpb.RegisterDeviceManagerServer(s.grpc, s.dm)
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(deviceManagerService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc) // v1 and v1alpha

	names, err := newTranscoder(s.grpc, false)
	var numbers *vanguard.Transcoder
	if err == nil {
		numbers, err = newTranscoder(s.grpc, true)
	}
	if err != nil {
		// Only a programming error gets here (the descriptors are compiled
		// in); Serve reports it.
		s.buildErr = fmt.Errorf("manager: build REST transcoder: %w", err)
		return s
	}
	routes, err := deviceManagerRoutes()
	if err != nil {
		s.buildErr = fmt.Errorf("manager: read the REST routes: %w", err)
		return s
	}
	masks, err := fieldMaskParams(routes)
	if err != nil {
		s.buildErr = fmt.Errorf("manager: %w", err)
		return s
	}
	doc, err := buildDiscovery(routes)
	if err != nil {
		s.buildErr = fmt.Errorf("manager: %w", err)
		return s
	}
	s.rest = &discoveryHandler{doc: doc, next: &restAPI{
		logger: logger, auth: auth, routes: routes, limits: restBodyLimits(), masks: masks,
		budget: newBodyBudget(o.maxBodyBytesInFlight),
		names:  names, enumInts: numbers,
	}}
	if o.console != nil || o.pubsubREST != nil {
		s.rest = &mounts{console: o.console, pubsub: o.pubsubREST, next: s.rest, auth: auth}
	}
	return s
}

// newTranscoder serves REST/JSON through the gRPC server, with enums as
// names or, when enumNumbers, as numbers.
func newTranscoder(srv *grpc.Server, enumNumbers bool) (*vanguard.Transcoder, error) {
	return vanguardgrpc.NewTranscoder(srv,
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec {
			// Like Google's servers: camelCase names, default values left
			// out, unknown fields from newer clients ignored.
			return &vanguard.JSONCodec{
				MarshalOptions:   protojson.MarshalOptions{Resolver: res, UseEnumNumbers: enumNumbers},
				UnmarshalOptions: protojson.UnmarshalOptions{Resolver: res, DiscardUnknown: true},
			}
		}),
		vanguard.WithUnknownHandler(notFoundHandler()),
		vanguard.WithDefaultServiceOptions(vanguard.WithMaxMessageBufferBytes(maxRESTMessageBytes)),
	)
}

// Serve serves on lis until ctx is done, then stops gracefully: health
// turns NOT_SERVING, in-flight calls get the shutdown timeout to finish,
// and what remains is closed. It returns nil after a clean shutdown, and
// an error when lis fails. lis is closed when Serve returns.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if s.buildErr != nil {
		lis.Close()
		return s.buildErr
	}
	// Page tokens are signed with a key kept in the store, so that a
	// token stays good across restarts and on every instance.
	key, err := s.dm.store.Secret(ctx, pageTokenSecret, len(s.dm.tokenKey))
	if err == nil && len(key) != len(s.dm.tokenKey) {
		err = fmt.Errorf("the stored key has %d bytes, want %d (delete the row %q of table secrets to make a new one)",
			len(key), len(s.dm.tokenKey), pageTokenSecret)
	}
	if err != nil {
		lis.Close()
		if ctx.Err() != nil {
			return nil // stopped while starting: a clean stop
		}
		return fmt.Errorf("manager: read the page-token key from the database: %w", err)
	}
	copy(s.dm.tokenKey[:], key)
	if s.opts.bus != nil && s.dm.cache != nil {
		// Other manager instances announce their changes: forget what
		// they changed.
		stop, err := s.watchAnnouncements()
		if err != nil {
			lis.Close()
			return fmt.Errorf("manager: subscribe to device announcements: %w", err)
		}
		defer stop()
	}
	if s.opts.tlsConfig != nil {
		return s.serveTLS(ctx, lis)
	}
	return s.servePlain(ctx, lis)
}

// Ready reports whether the manager takes calls (for /readyz): nil once
// Serve serves, while the database answers and the bus (WithBus) is
// connected; an error saying which is not so otherwise, and from the
// moment the shutdown begins.
func (s *Server) Ready(ctx context.Context) error {
	switch {
	case s.stopping.Load():
		return errors.New("the manager is stopping")
	case !s.serving.Load():
		return errors.New("the manager is not serving yet")
	}
	if err := s.dm.store.Ping(ctx); err != nil {
		return fmt.Errorf("the database does not answer: %w", err)
	}
	if r, ok := s.opts.bus.(interface{ Ready(context.Context) error }); ok {
		if err := r.Ready(ctx); err != nil {
			return fmt.Errorf("the bus: %w", err)
		}
	}
	return nil
}

// watchAnnouncements subscribes the device cache to the announcements of
// other instances; on a bus.Bus the subscription also lets the cache
// confirm, before a hit, that it has handled those sent before the call.
func (s *Server) watchAnnouncements() (stop func(), err error) {
	if w, ok := s.opts.bus.(announcementWatcher); ok {
		sub, err := w.WatchAnnouncements(s.dm.forgetAnnounced)
		if err != nil {
			return nil, err
		}
		s.dm.annSync = sub
		return sub.Stop, nil
	}
	return s.opts.bus.SubscribeAnnouncements(s.dm.forgetAnnounced)
}

func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          log.New(httpErrorLog{s.logger}, "", 0),
	}
}

// servePlain serves gRPC (HTTP/2 prior knowledge) natively and REST over
// HTTP/1.1, telling them apart by each connection's first bytes.
func (s *Server) servePlain(ctx context.Context, lis net.Listener) error {
	split := newSplitListener(s.logger, lis, sniffTimeout)
	httpSrv := s.newHTTPServer(s.rest)

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	split.start()
	go func() {
		defer wg.Done()
		if err := s.grpc.Serve(split.grpc); err != nil {
			errc <- fmt.Errorf("gRPC server: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := httpSrv.Serve(split.http); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("HTTP server: %w", err)
		}
	}()
	s.serving.Store(true)
	s.logger.Info("manager serving gRPC and REST", "addr", lis.Addr().String(), "tls", false)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.shutdown(httpSrv, split.Close)
	go func() { wg.Wait(); close(errc) }()
	// Drain: errors after shutdown began are the servers noticing their
	// listeners closing, not failures.
	for range errc {
	}
	return serveErr
}

// serveTLS serves both protocols from one TLS http.Server: gRPC over h2
// goes to the gRPC server's http.Handler, the rest to REST.
func (s *Server) serveTLS(ctx context.Context, lis net.Listener) error {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && isGRPCContentType(r.Header.Get("Content-Type")) {
			// The gRPC server reads a message before its tap or
			// interceptors run when it serves through net/http: check
			// the token here first.
			if err := s.auth.checkHTTP(r, r.URL.Path); err != nil {
				writeGRPCStatus(w, err)
				return
			}
			s.grpc.ServeHTTP(w, r)
			return
		}
		s.rest.ServeHTTP(w, r)
	})
	httpSrv := s.newHTTPServer(handler)
	cfg := s.opts.tlsConfig.Clone()
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	httpSrv.TLSConfig = cfg // ServeTLS adds "h2" to NextProtos

	errc := make(chan error, 1)
	go func() {
		err := httpSrv.ServeTLS(lis, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	s.serving.Store(true)
	s.logger.Info("manager serving gRPC and REST", "addr", lis.Addr().String(), "tls", true)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		if serveErr != nil {
			serveErr = fmt.Errorf("HTTPS server: %w", serveErr)
		}
	}
	s.shutdown(httpSrv, func() error { return nil })
	if serveErr == nil {
		<-errc
	}
	return serveErr
}

// isGRPCContentType reports whether a content type is gRPC's own
// (application/grpc, application/grpc+proto ...), not gRPC-Web's, which
// the transcoder serves.
func isGRPCContentType(ct string) bool {
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")
}

// writeGRPCStatus ends a gRPC call over net/http with err's status, as a
// trailers-only response.
func writeGRPCStatus(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(int(st.Code())))
	h.Set("Grpc-Message", grpcPercentEncode(st.Message()))
	w.WriteHeader(http.StatusOK)
}

// grpcPercentEncode encodes a grpc-message value: bytes outside printable
// ASCII, and '%', as %XX (gRPC over HTTP/2, "Responses").
func grpcPercentEncode(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// shutdown stops both servers: no new connections, in-flight calls get the
// shutdown timeout, then everything is closed. HTTP goes first because a
// REST call in flight still needs the gRPC server: the transcoder hands it
// to the gRPC server only once its body has arrived, and a stopping gRPC
// server refuses new calls.
func (s *Server) shutdown(httpSrv *http.Server, closeListener func() error) {
	s.stopping.Store(true)
	s.serving.Store(false)
	s.health.Shutdown() // NOT_SERVING, so load balancers stop sending
	s.logger.Info("manager shutting down", "timeout", s.opts.shutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.shutdownTimeout)
	defer cancel()

	_ = closeListener() // no new connections
	if err := httpSrv.Shutdown(ctx); err != nil {
		s.logger.Warn("HTTP calls still running at the shutdown deadline; closing them", "err", err)
		httpSrv.Close()
	}
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.logger.Warn("gRPC calls still running at the shutdown deadline; closing them")
		s.grpc.Stop()
		<-stopped
	}
}

// httpErrorLog sends net/http's own log lines to slog: handshake failures
// and client misbehaviour at debug level, panics as errors.
type httpErrorLog struct{ logger *slog.Logger }

func (l httpErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(msg, "panic"):
		l.logger.Error("HTTP server", "msg", msg)
	default:
		l.logger.Debug("HTTP server", "msg", msg)
	}
	return len(p), nil
}
