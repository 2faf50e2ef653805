package console_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/services/console"
)

func newServer(t *testing.T, opts ...console.Option) *httptest.Server {
	t.Helper()
	h, err := console.New(slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, method, path string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func checkSecurityHeaders(t *testing.T, path string, resp *http.Response) {
	t.Helper()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", path, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: CSP %q allows inline or eval", path, csp)
	}
	for k, v := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", path, k, got, v)
		}
	}
}

// TestEmbeddedBuild checks the embedded build is the console's: index.html
// loads its script and style from hashed assets, with no inline script.
func TestEmbeddedBuild(t *testing.T) {
	srv := newServer(t)
	resp, body := get(t, srv, "GET", "/console/", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `<div id="app">`) {
		t.Fatalf("GET /console/: %d\n%s", resp.StatusCode, body)
	}
	checkSecurityHeaders(t, "/console/", resp)
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("index.html Cache-Control %q, want no-cache", cc)
	}
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
		if !strings.Contains(m, `src="/console/assets/`) {
			t.Errorf("inline or foreign script in index.html: %s", m)
		}
	}
	if strings.Contains(body, "<style") || strings.Contains(body, "style=") {
		t.Errorf("inline style in index.html")
	}
	assets := regexp.MustCompile(`(?:src|href)="(/console/assets/[^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(assets) < 2 {
		t.Fatalf("index.html names %d assets, want a script and a style sheet:\n%s", len(assets), body)
	}
	for _, a := range assets {
		resp, content := get(t, srv, "GET", a[1], nil)
		if resp.StatusCode != 200 || len(content) == 0 {
			t.Errorf("GET %s: %d, %d bytes", a[1], resp.StatusCode, len(content))
		}
		checkSecurityHeaders(t, a[1], resp)
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") || !strings.Contains(cc, "max-age=31536000") {
			t.Errorf("%s: Cache-Control %q, want a year, immutable", a[1], cc)
		}
		ct := resp.Header.Get("Content-Type")
		if strings.HasSuffix(a[1], ".js") && !strings.Contains(ct, "javascript") || strings.HasSuffix(a[1], ".css") && !strings.Contains(ct, "text/css") {
			t.Errorf("%s: Content-Type %q", a[1], ct)
		}
	}
}

// TestClientRoutes checks that the app's own paths get index.html, and
// that a missing file is a 404, not HTML.
func TestClientRoutes(t *testing.T) {
	srv := newServer(t)
	_, index := get(t, srv, "GET", "/console/", nil)
	for _, p := range []string{
		"/console/projects/p/locations/us-central1/registries",
		"/console/projects/p/locations/us-central1/registries/reg1/devices/dev1/config",
		"/console/hub-not-the-hub",
		"/console/index.html",
	} {
		resp, body := get(t, srv, "GET", p, nil)
		if resp.StatusCode != 200 || body != index {
			t.Errorf("GET %s: %d, want index.html", p, resp.StatusCode)
		}
		checkSecurityHeaders(t, p, resp)
	}
	for _, p := range []string{"/console/assets/missing-0000.js", "/console/favicon.ico"} {
		resp, body := get(t, srv, "GET", p, nil)
		if resp.StatusCode != 404 || strings.Contains(body, `<div id="app">`) {
			t.Errorf("GET %s: %d, want 404 without index.html", p, resp.StatusCode)
		}
	}
	resp, _ := get(t, srv, "GET", "/console", nil)
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/console/" {
		t.Errorf("GET /console: %d to %q, want a redirect to /console/", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = get(t, srv, "POST", "/console/", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/: %d, want 405", resp.StatusCode)
	}
	resp, body := get(t, srv, "POST", "/console/hub/passerelle.hub.v1.Hub/GetPool", nil)
	if resp.StatusCode != 404 || !strings.Contains(body, "hub is not reachable") {
		t.Errorf("the pool without a hub: %d %s", resp.StatusCode, body)
	}
}

// TestHubProxy checks that only the pool's read-only calls reach the hub,
// with the caller's Authorization and nothing else of its headers.
func TestHubProxy(t *testing.T) {
	var seen []*http.Request
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Clone(r.Context()))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"connections":[]}`)
	}))
	defer hub.Close()
	u, _ := url.Parse(hub.URL)
	srv := newServer(t, console.WithHub(console.NewHubProxy(slog.New(slog.NewTextHandler(io.Discard, nil)), u)))

	hdr := http.Header{"Authorization": {"Bearer tok"}, "Content-Type": {"application/json"}, "Cookie": {"a=b"}}
	for _, m := range []string{"GetPool", "ListGateways"} {
		resp, body := get(t, srv, "POST", "/console/hub/passerelle.hub.v1.Hub/"+m, hdr)
		if resp.StatusCode != 200 || body != `{"connections":[]}` {
			t.Errorf("%s: %d %s", m, resp.StatusCode, body)
		}
	}
	if len(seen) != 2 {
		t.Fatalf("the hub saw %d calls, want 2", len(seen))
	}
	for _, r := range seen {
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Cookie") != "" || r.Method != "POST" {
			t.Errorf("the hub got %s %s with Authorization %q, Cookie %q", r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Cookie"))
		}
	}
	if seen[0].URL.Path != "/passerelle.hub.v1.Hub/GetPool" {
		t.Errorf("forwarded to %s", seen[0].URL.Path)
	}
	for _, tc := range []struct{ method, path string }{
		{"POST", "/console/hub/passerelle.hub.v1.Hub/CreateGateway"},
		{"POST", "/console/hub/passerelle.hub.v1.Hub/PublishEvent"},
		{"GET", "/console/hub/passerelle.hub.v1.Hub/GetPool"},
		{"POST", "/console/hub/passerelle.hub.v1.Hub/GetPool/../CreateGateway"},
	} {
		resp, _ := get(t, srv, tc.method, tc.path, hdr)
		if resp.StatusCode < 400 {
			t.Errorf("%s %s: %d, want refused", tc.method, tc.path, resp.StatusCode)
		}
	}
	if len(seen) != 2 {
		t.Errorf("refused calls reached the hub: %d calls", len(seen))
	}
	hub.Close()
	resp, body := get(t, srv, "POST", "/console/hub/passerelle.hub.v1.Hub/GetPool", hdr)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "does not answer") {
		t.Errorf("hub down: %d %s", resp.StatusCode, body)
	}
}
