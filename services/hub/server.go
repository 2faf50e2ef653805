package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/h2split"
)

// ServerOption configures a Server.
type ServerOption func(*serverOptions)

type serverOptions struct {
	tokens            *adminauth.Tokens
	noAuth            bool
	tls               *tls.Config
	tracerProvider    trace.TracerProvider
	meterProvider     metric.MeterProvider
	shutdownTimeout   time.Duration
	handshakeTimeout  time.Duration
	maxConnectionIdle time.Duration
	drain             time.Duration
}

func defaultServerOptions() serverOptions {
	return serverOptions{
		shutdownTimeout:   5 * time.Second,
		handshakeTimeout:  5 * time.Second,
		maxConnectionIdle: 5 * time.Minute,
	}
}

// WithTokens authenticates calls with bearer tokens from a tokens file
// (the manager's format). Without it or WithInsecureNoAuth every call is
// refused.
func WithTokens(t *adminauth.Tokens) ServerOption { return func(o *serverOptions) { o.tokens = t } }

// WithInsecureNoAuth lets every call through unauthenticated, for tests
// and local development.
func WithInsecureNoAuth() ServerOption { return func(o *serverOptions) { o.noAuth = true } }

// WithTLS serves the hub over TLS (HTTP/2 by ALPN, or HTTP/1.1 for
// Connect and gRPC-Web). Default: plaintext (gRPC over HTTP/2 with prior
// knowledge, Connect and gRPC-Web over HTTP/1.1).
func WithTLS(cfg *tls.Config) ServerOption { return func(o *serverOptions) { o.tls = cfg } }

// WithTracerProvider sets where RPC spans go. Default: the otel global.
func WithTracerProvider(tp trace.TracerProvider) ServerOption {
	return func(o *serverOptions) { o.tracerProvider = tp }
}

// WithMeterProvider sets where RPC metrics go. Default: the otel global.
func WithMeterProvider(mp metric.MeterProvider) ServerOption {
	return func(o *serverOptions) { o.meterProvider = mp }
}

// WithShutdownTimeout bounds the graceful stop before open streams are
// cut. Default 5 s.
func WithShutdownTimeout(d time.Duration) ServerOption {
	return func(o *serverOptions) { o.shutdownTimeout = d }
}

// WithHandshakeTimeout bounds how long a new connection has to complete
// its TLS handshake and send its first request headers (HTTP/1.1) or
// connection preface (HTTP/2) before it is closed, so a client that
// connects and sends nothing does not hold a connection. Default 5 s
// (gRPC's own server default is 120 s).
func WithHandshakeTimeout(d time.Duration) ServerOption {
	return func(o *serverOptions) { o.handshakeTimeout = d }
}

// WithMaxConnectionIdle closes a connection that has had no call open for
// this long (an HTTP/2 connection with a GOAWAY, which gRPC clients answer
// by reconnecting when they next call). Default 5 minutes.
func WithMaxConnectionIdle(d time.Duration) ServerOption {
	return func(o *serverOptions) { o.maxConnectionIdle = d }
}

// Server serves the Hub service with health, reflection, auth and tracing.
type Server struct {
	log  *slog.Logger
	o    serverOptions
	grpc *grpc.Server
	web  *vanguard.Transcoder // Connect and gRPC-Web, to grpc
	svc  hubv1.HubServer
	// buildErr is an error of NewServer, returned by Serve.
	buildErr error
	health   *health.Server

	draining atomic.Bool
	smu      sync.Mutex
	streams  map[*sheddable]struct{} // open streams, for the drain
}

const hubPrefix = "/passerelle.hub.v1.Hub/"

// methodRoles is the role each Hub method needs. A method missing from it
// needs admin: a method added later is closed until someone decides.
var methodRoles = map[string]adminauth.Role{
	hubPrefix + "Attach":            adminauth.RoleDeviceController,
	hubPrefix + "SubscribeConfig":   adminauth.RoleDeviceController,
	hubPrefix + "PublishState":      adminauth.RoleDeviceController,
	hubPrefix + "PublishEvent":      adminauth.RoleDeviceController,
	hubPrefix + "PublishEvents":     adminauth.RoleDeviceController,
	hubPrefix + "SubscribeCommands": adminauth.RoleDeviceController,
	hubPrefix + "CreateGateway":     adminauth.RoleProvisioner,
	hubPrefix + "ListGateways":      adminauth.RoleViewer,
	hubPrefix + "GetPool":           adminauth.RoleViewer,
}

// NewServer returns a gRPC server for svc.
func NewServer(logger *slog.Logger, svc hubv1.HubServer, opts ...ServerOption) *Server {
	o := defaultServerOptions()
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{log: logger, o: o, svc: svc, streams: map[*sheddable]struct{}{}}
	var otelOpts []otelgrpc.Option
	if o.tracerProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithTracerProvider(o.tracerProvider))
	}
	if o.meterProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithMeterProvider(o.meterProvider))
	}
	gopts := []grpc.ServerOption{
		// Native gRPC (plaintext); the net/http server has the same two
		// bounds (httpServer).
		grpc.ConnectionTimeout(o.handshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: o.maxConnectionIdle}),
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...)),
		// reasonUnary and reasonStream are outermost: every error that
		// leaves the hub carries an ErrorInfo.
		grpc.ChainUnaryInterceptor(reasonUnary, func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := s.authorize(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			if err := s.refuseDraining(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(reasonStream, func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := s.authorize(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			if err := s.refuseDraining(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return s.serveStream(srv, ss, handler)
		}),
	}
	s.grpc = grpc.NewServer(gopts...)
	hubv1.RegisterHubServer(s.grpc, svc)
	s.health = health.NewServer()
	s.health.SetServingStatus("passerelle.hub.v1.Hub", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.web, s.buildErr = vanguardgrpc.NewTranscoder(s.grpc)
	if s.buildErr != nil {
		// Only a programming error gets here (the descriptors are
		// compiled in); Serve reports it.
		s.buildErr = fmt.Errorf("hub: build the Connect and gRPC-Web transcoder: %w", s.buildErr)
	}
	return s
}

// authorize checks the call's bearer token against the method's role.
func (s *Server) authorize(ctx context.Context, method string) error {
	if s.o.noAuth || strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.") {
		return nil
	}
	if s.o.tokens == nil {
		return withReason(codes.Unauthenticated, hubv1.ErrorReason_TOKEN_UNKNOWN, "the hub has no tokens configured")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var tok string
	for _, v := range md.Get("authorization") {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			tok = strings.TrimSpace(t)
		}
	}
	if tok == "" {
		return withReason(codes.Unauthenticated, hubv1.ErrorReason_TOKEN_MISSING, "missing 'authorization: Bearer <token>'")
	}
	name, role, ok := s.o.tokens.Authenticate(tok)
	if !ok {
		return withReason(codes.Unauthenticated, hubv1.ErrorReason_TOKEN_UNKNOWN, "unknown token")
	}
	need, known := methodRoles[method]
	if !known {
		need = adminauth.RoleAdmin
	}
	if !role.Includes(need) {
		s.log.Info("hub: permission denied", "caller", name, "method", method)
		return withReason(codes.PermissionDenied, hubv1.ErrorReason_ROLE_INSUFFICIENT,
			fmt.Sprintf("token %q has role %s; %s needs %s", name, role, method, need), "role", role.String(), "needs", need.String())
	}
	return nil
}

// Serve serves on lis until ctx is done, then drains (see WithDrain),
// stops gracefully (open streams are cut after the shutdown timeout) and
// closes the service (when it has a Close method, as Service does).
//
// gRPC, the Connect protocol and gRPC-Web are served on the same port. In
// plaintext, HTTP/2 connections (gRPC) go to gRPC's own server and
// HTTP/1.1 ones (Connect, gRPC-Web) to a net/http server. Over TLS, one
// net/http server takes HTTP/2 (by ALPN) and HTTP/1.1: gRPC goes to the
// gRPC server through its ServeHTTP, the rest through the vanguard
// transcoder to the same gRPC server. The token checks, the drain and the
// error reasons are thus the same for every protocol.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if c, ok := s.svc.(interface{ Close() }); ok {
		defer c.Close()
	}
	if s.buildErr != nil {
		lis.Close()
		return s.buildErr
	}
	hs := s.httpServer()
	var stopping atomic.Bool
	errc := make(chan error, 2)
	served := func(err error) {
		if errors.Is(err, http.ErrServerClosed) || stopping.Load() {
			err = nil
		}
		errc <- err
	}
	var split *h2split.Listener
	if s.o.tls != nil {
		go func() { served(hs.ServeTLS(lis, "", "")) }()
	} else {
		split = h2split.New(lis, s.o.handshakeTimeout)
		go func() { served(s.grpc.Serve(split.H2())) }()
		go func() { served(hs.Serve(split.HTTP1())) }()
	}
	serving := 1
	if split != nil {
		serving = 2
	}
	var serveErr error
	select {
	case serveErr = <-errc:
		serving--
	case <-ctx.Done():
	}
	if serveErr == nil {
		if s.o.drain > 0 {
			s.drain()
		}
		s.draining.Store(true)
	}
	stopping.Store(true)
	if split != nil {
		split.Close()
	}
	s.stop(hs)
	for ; serving > 0; serving-- {
		<-errc
	}
	return serveErr
}

// stop ends the servers: new connections are refused, the calls in flight
// get the shutdown timeout to end, then what remains is cut. The net/http
// server goes first: gRPC's graceful stop would cut the calls it serves
// through ServeHTTP at once (it drains those by closing them).
func (s *Server) stop(hs *http.Server) {
	sctx, cancel := context.WithTimeout(context.Background(), s.o.shutdownTimeout)
	defer cancel()
	// Shutdown sends GOAWAY, closes idle connections and waits for the
	// calls in flight.
	if err := hs.Shutdown(sctx); err != nil {
		s.log.Info("hub: HTTP calls still open at the shutdown deadline; cutting them", "err", err)
		hs.Close()
	}
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		s.grpc.Stop()
		<-stopped
	}
}

// maxConcurrentStreams is how many calls one HTTP/2 connection may have
// open at once (gRPC's own server sets no bound; net/http's default of
// 250 would hold back a caller with many Attach streams).
const maxConcurrentStreams = 1 << 16

// httpServer is the net/http server of Serve. Its ReadHeaderTimeout is
// the handshake timeout (it bounds the TLS handshake and an HTTP/1.1
// request's headers; its HTTP/2 server bounds the preface) and its
// IdleTimeout the idle connection timeout.
func (s *Server) httpServer() *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if s.o.tls != nil {
		protocols.SetHTTP2(true) // in plaintext HTTP/2 is gRPC's (h2split)
	}
	hs := &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: s.o.handshakeTimeout,
		IdleTimeout:       s.o.maxConnectionIdle,
		MaxHeaderBytes:    1 << 20,
		Protocols:         &protocols,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxConcurrentStreams},
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.o.tls != nil {
		cfg := s.o.tls.Clone()
		if cfg.MinVersion < tls.VersionTLS12 {
			cfg.MinVersion = tls.VersionTLS12
		}
		hs.TLSConfig = cfg
	}
	return hs
}

// serveHTTP sends gRPC to the gRPC server and the rest (Connect,
// gRPC-Web) to the transcoder.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 && isGRPCContentType(r.Header.Get("Content-Type")) {
		tw := &trailersOnly{w: w}
		s.grpc.ServeHTTP(tw, r)
		tw.finish()
		return
	}
	// The hub has no REST routes: a POST that is not a stream is a
	// Connect unary call, with or without Connect-Protocol-Version (as
	// connect-go's own servers take it), so that a bare curl works.
	if ct := r.Header.Get("Content-Type"); r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "" &&
		(ct == "application/json" || ct == "application/proto") {
		r.Header.Set("Connect-Protocol-Version", "1")
	}
	s.web.ServeHTTP(w, r)
}

// isGRPCContentType reports whether a content type is gRPC's own
// (application/grpc, application/grpc+proto ...), not gRPC-Web's.
func isGRPCContentType(ct string) bool {
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")
}
