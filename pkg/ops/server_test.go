package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/ops"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// serve runs s on 127.0.0.1:0 until the test ends and returns its base URL.
func serve(t *testing.T, s *ops.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + lis.Addr().String()
}

func get(t *testing.T, method, url string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

type readyBody struct {
	Status   string            `json:"status"`
	Failing  []string          `json:"failing"`
	Degraded []string          `json:"degraded"`
	Checks   map[string]string `json:"checks"`
}

func TestReadyz(t *testing.T) {
	h := ops.NewHealth(testutil.Logger(t), ops.WithCacheTTL(time.Nanosecond))
	var natsDown atomic.Bool
	natsDown.Store(true)
	h.Add("database", func(context.Context) error { return nil })
	h.Add("nats", func(context.Context) error {
		if natsDown.Load() {
			return errors.New("not connected to NATS at nats://10.0.0.7:4222\n(reconnecting)")
		}
		return nil
	})
	base := serve(t, ops.NewServer(testutil.Logger(t), h))

	code, hdr, raw := get(t, "GET", base+"/readyz")
	var body readyBody
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("body %q: %v", raw, err)
	}
	if code != http.StatusServiceUnavailable || body.Status != "not ready" || len(body.Failing) != 1 || body.Failing[0] != "nats" ||
		body.Checks["database"] != "ok" || body.Checks["nats"] != "not connected to NATS at nats://10.0.0.7:4222; (reconnecting)" {
		t.Fatalf("%d %s", code, raw)
	}
	if hdr.Get("Content-Type") != "application/json" || hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", hdr)
	}

	natsDown.Store(false)
	code, _, raw = get(t, "GET", base+"/readyz")
	if code != http.StatusOK || string(raw) != `{"status":"ready","checks":{"database":"ok","nats":"ok"}}`+"\n" {
		t.Fatalf("%d %s", code, raw)
	}
	if code, _, raw := get(t, "HEAD", base+"/readyz"); code != http.StatusOK || len(raw) != 0 {
		t.Errorf("HEAD: %d %q", code, raw)
	}

	h.Drain()
	code, _, raw = get(t, "GET", base+"/readyz")
	body = readyBody{}
	_ = json.Unmarshal(raw, &body)
	if code != http.StatusServiceUnavailable || len(body.Failing) != 1 || body.Failing[0] != "draining" {
		t.Fatalf("draining: %d %s", code, raw)
	}
	// Alive all along.
	if code, _, raw := get(t, "GET", base+"/healthz"); code != http.StatusOK || string(raw) != `{"status":"alive"}`+"\n" {
		t.Errorf("/healthz while draining: %d %s", code, raw)
	}
}

func TestServerMethodsAndMoreHandlers(t *testing.T) {
	s := ops.NewServer(testutil.Logger(t), ops.NewHealth(testutil.Logger(t)))
	s.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up 1\n") }))
	base := serve(t, s)
	if code, hdr, _ := get(t, "POST", base+"/readyz"); code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /readyz: %d %v", code, hdr)
	}
	if code, _, raw := get(t, "GET", base+"/metrics"); code != http.StatusOK || string(raw) != "up 1\n" {
		t.Errorf("/metrics: %d %q", code, raw)
	}
	if code, _, _ := get(t, "GET", base+"/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing: %d", code)
	}
}

func TestServeReportsListenerFailure(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis.Close()
	s := ops.NewServer(testutil.Logger(t), ops.NewHealth(testutil.Logger(t)))
	if err := s.Serve(t.Context(), lis); err == nil {
		t.Fatal("Serve on a closed listener returned nil")
	}
}

// A degraded check is reported, not counted against readiness.
func TestReadyzDegraded(t *testing.T) {
	h := ops.NewHealth(testutil.Logger(t))
	h.Add("nats", func(context.Context) error { return nil })
	h.AddDegraded("jetstream", func(context.Context) error { return errors.New("no stream leader") })
	base := serve(t, ops.NewServer(testutil.Logger(t), h))
	code, _, raw := get(t, "GET", base+"/readyz")
	if code != http.StatusOK || string(raw) != `{"status":"ready","degraded":["jetstream"],"checks":{"jetstream":"no stream leader","nats":"ok"}}`+"\n" {
		t.Fatalf("%d %s", code, raw)
	}
}

// BenchmarkReadyz: probes in parallel against checks that each take a
// database round trip's time; the checks run once a second, whatever the
// number of probes (checks/op).
func BenchmarkReadyz(b *testing.B) {
	h := ops.NewHealth(testutil.Logger(b))
	var runs atomic.Int64
	for _, name := range []string{"database", "nats", "manager"} {
		h.Add(name, func(context.Context) error { runs.Add(1); time.Sleep(200 * time.Microsecond); return nil })
	}
	s := ops.NewServer(testutil.Logger(b), h)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/readyz", nil)
		for pb.Next() {
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Errorf("%d", w.Code)
				return
			}
		}
	})
	b.ReportMetric(float64(runs.Load())/float64(b.N), "checks/op")
}

func TestMetricsAndPprof(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up 1\n") })
	off := serve(t, ops.NewServer(testutil.Logger(t), ops.NewHealth(testutil.Logger(t)), ops.WithMetrics(metrics)))
	if code, _, body := get(t, "GET", off+"/metrics"); code != 200 || string(body) != "up 1\n" {
		t.Fatalf("/metrics: %d %q", code, body)
	}
	if code, _, _ := get(t, "GET", off+"/debug/pprof/"); code != 404 {
		t.Fatalf("/debug/pprof/ without --pprof: %d, want 404", code)
	}
	on := serve(t, ops.NewServer(testutil.Logger(t), ops.NewHealth(testutil.Logger(t)), ops.WithPprof(true)))
	if code, _, body := get(t, "GET", on+"/debug/pprof/goroutine?debug=1"); code != 200 || !bytes.Contains(body, []byte("goroutine profile")) {
		t.Fatalf("/debug/pprof/goroutine with --pprof: %d %.200s", code, body)
	}
	if code, _, _ := get(t, "GET", on+"/metrics"); code != 404 {
		t.Fatalf("/metrics without a handler: %d, want 404", code)
	}
}
