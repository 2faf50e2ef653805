package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"
)

// Timeouts of the operator HTTP server. Probes are small and quick; the
// write timeout leaves room for what issue 14 adds to the address (a
// 30-second CPU profile from /debug/pprof/profile).
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 2 * time.Minute
	idleTimeout       = time.Minute
	maxHeaderBytes    = 16 << 10
	shutdownTimeout   = 5 * time.Second
)

// Server is the operator HTTP address of a process: /healthz and /readyz,
// and whatever else Handle adds. Create it with NewServer, add handlers,
// then Serve.
type Server struct {
	logger *slog.Logger
	health *Health
	mux    *http.ServeMux
	pprof  bool
}

// ServerOption adds to a Server's endpoints.
type ServerOption func(*Server)

// WithMetrics serves h on /metrics: the process's metrics in the
// Prometheus text format (telemetry.Setup's Metrics). Default: no
// /metrics.
func WithMetrics(h http.Handler) ServerOption {
	return func(s *Server) {
		if h != nil {
			s.mux.Handle("GET /metrics", h)
		}
	}
}

// WithPprof mounts net/http/pprof on /debug/pprof/ when on (a binary's
// --pprof): CPU and heap profiles, goroutine dumps, execution traces.
// Profiles tell much about the process, so they are off by default and
// only ever on the operator address. The write timeout allows a CPU
// profile of up to about two minutes (?seconds=).
func WithPprof(on bool) ServerOption {
	return func(s *Server) {
		if !on {
			return
		}
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		s.pprof = true
	}
}

// NewServer returns a Server answering /healthz and /readyz from health,
// and what opts add.
func NewServer(logger *slog.Logger, health *Health, opts ...ServerOption) *Server {
	s := &Server{logger: logger, health: health, mux: http.NewServeMux()}
	s.mux.HandleFunc("/healthz", s.healthz)
	s.mux.HandleFunc("/readyz", s.readyz)
	for _, o := range opts {
		o(s)
	}
	return s
}

// Handle serves pattern (http.ServeMux syntax) with handler on the operator
// address, next to /healthz and /readyz: /metrics, /debug/pprof/. Call it
// before Serve.
func (s *Server) Handle(pattern string, handler http.Handler) { s.mux.Handle(pattern, handler) }

// ServeHTTP serves the operator endpoints, for tests and for callers that
// run their own http.Server.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Serve serves on lis until ctx ends, then shuts down (in-flight requests
// get a few seconds) and returns nil; it returns an error when lis fails.
// It closes lis. A process stops its operator address last, so that
// /readyz says "draining" for as long as the services drain.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.New(debugLog{s.logger}, "", 0),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	s.logger.Info("ops: serving /healthz, /readyz and /metrics", "addr", lis.Addr().String(), "pprof", s.pprof)
	select {
	case err := <-errc:
		return fmt.Errorf("ops: serving %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ops: serving %s: %w", lis.Addr(), err)
	}
	return nil
}

// healthz answers 200 for as long as the process runs: it needs nothing
// but the process. Orchestrators restart a process whose /healthz fails.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if !getOrHead(w, r) {
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "alive"})
}

// readyBody is the JSON body of /readyz: each check's result by name
// ("ok" or what is wrong), the names of the failing ones, and of the
// failing ones that do not count against readiness (AddDegraded).
type readyBody struct {
	Status   string            `json:"status"` // "ready" or "not ready"
	Failing  []string          `json:"failing,omitempty"`
	Degraded []string          `json:"degraded,omitempty"`
	Checks   map[string]string `json:"checks"`
}

// readyz answers 200 when every check passes, 503 otherwise, with
// readyBody. Load balancers send traffic only to a ready process.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !getOrHead(w, r) {
		return
	}
	rep := s.health.Report(r.Context())
	body := readyBody{Status: "ready", Checks: make(map[string]string, len(rep.Results))}
	for _, res := range rep.Results {
		if res.Err == nil {
			body.Checks[res.Name] = "ok"
			continue
		}
		body.Checks[res.Name] = oneLine(res.Err.Error())
		if res.Degraded {
			body.Degraded = append(body.Degraded, res.Name)
		} else {
			body.Failing = append(body.Failing, res.Name)
		}
	}
	code := http.StatusOK
	if !rep.Ready {
		body.Status = "not ready"
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, r, code, body)
}

func getOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "use GET or HEAD", http.StatusMethodNotAllowed)
	return false
}

func writeJSON(w http.ResponseWriter, r *http.Request, code int, v any) {
	data, _ := json.Marshal(v) // maps of strings always encode
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(data, '\n'))
	}
}

// oneLine joins a multi-line error (errors.Join) into one line.
func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// debugLog sends net/http's own log lines (bad requests, handshake noise)
// to slog at debug level.
type debugLog struct{ logger *slog.Logger }

func (l debugLog) Write(p []byte) (int, error) {
	l.logger.Debug("ops: HTTP server", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

// Run watches health's checks, logging each change, and serves s on lis
// (when lis is not nil) until stop is called; stop ends both, waits for
// them and returns Serve's error. A process runs it before its services
// and stops it after they have stopped, so that /readyz keeps answering
// "draining" while they drain.
func Run(health *Health, s *Server, lis net.Listener) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		health.Watch(ctx, DefaultWatchEvery)
	}()
	served := make(chan error, 1)
	if lis != nil {
		go func() { served <- s.Serve(ctx, lis) }()
	} else {
		served <- nil
	}
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() {
			cancel()
			<-watched
			err = <-served
		})
		return err
	}
}
