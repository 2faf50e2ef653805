package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// TestServeConsole checks what serve puts on the admin port for the web
// console: the embedded app (no Node needed), the Pub/Sub REST API its live
// page reads, and the hub's pool through the read-only proxy, each checking
// the caller's token.
func TestServeConsole(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	adminAddr, mqttAddr, hubAddr, pubsubAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	s := startServe(t, noEnv, "serve", "--data-dir", dataDir, "--admin-addr", adminAddr, "--mqtt-addr", mqttAddr,
		"--hub-addr", hubAddr, "--pubsub-addr", pubsubAddr)
	if want := "console:      http://" + adminAddr + "/console/"; !strings.Contains(s.out.String(), want) {
		t.Errorf("the banner lacks %q:\n%s", want, s.out.String())
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(raw))
	do := func(method, path, auth, body string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, "http://"+adminAddr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}

	code, hdr, body := do("GET", "/console/projects/p1/locations/us-central1/registries", "", "")
	if code != 200 || !strings.Contains(body, `<div id="app">`) || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") ||
		hdr.Get("X-Frame-Options") != "DENY" {
		t.Errorf("the console: %d, CSP %q, X-Frame-Options %q\n%s", code, hdr.Get("Content-Security-Policy"), hdr.Get("X-Frame-Options"), body)
	}
	if code, hdr, _ := do("GET", "/", "", ""); code != http.StatusFound || hdr.Get("Location") != "/console/" {
		t.Errorf("GET /: %d to %q, want a redirect to /console/", code, hdr.Get("Location"))
	}

	// The live page's calls: a subscription on a topic, pulled, deleted.
	if code, _, body := do("PUT", "/v1/projects/p1/topics/console-live", token, "{}"); code != 200 {
		t.Fatalf("create topic on the admin port: %d %s", code, body)
	}
	sub := "/v1/projects/p1/subscriptions/console-live-test"
	if code, _, body := do("PUT", sub, "", `{"topic":"projects/p1/topics/console-live"}`); code != http.StatusUnauthorized {
		t.Errorf("a subscription without a token: %d %s, want 401", code, body)
	}
	if code, _, body := do("PUT", sub, token, `{"topic":"projects/p1/topics/console-live","ackDeadlineSeconds":10,"expirationPolicy":{"ttl":"86400s"}}`); code != 200 {
		t.Fatalf("create subscription on the admin port: %d %s", code, body)
	}
	if code, _, body := do("POST", sub+":pull", token, `{"maxMessages":10,"returnImmediately":true}`); code != 200 {
		t.Errorf("pull on the admin port: %d %s", code, body)
	}
	if code, _, body := do("DELETE", sub, token, ""); code != 200 {
		t.Errorf("delete subscription on the admin port: %d %s", code, body)
	}
	// The DeviceManager's paths are still the manager's.
	if code, _, body := do("GET", "/v1/projects/p1/locations/us-central1/registries", token, ""); code != 200 || !strings.Contains(body, "{") {
		t.Errorf("ListDeviceRegistries: %d %s", code, body)
	}

	// The pool page's call, through the proxy to the hub, which checks the token.
	if code, _, body := do("POST", "/console/hub/passerelle.hub.v1.Hub/GetPool", token, "{}"); code != 200 || !strings.HasPrefix(body, "{") {
		t.Errorf("GetPool through the console: %d %s", code, body)
	}
	if code, _, body := do("POST", "/console/hub/passerelle.hub.v1.Hub/GetPool", "psl_wrong", "{}"); code != http.StatusUnauthorized {
		t.Errorf("GetPool with a wrong token: %d %s, want 401", code, body)
	}
	if code, _, _ := do("POST", "/console/hub/passerelle.hub.v1.Hub/CreateGateway", token, "{}"); code != http.StatusNotFound {
		t.Errorf("CreateGateway through the console: %d, want 404", code)
	}
	if strings.Contains(s.out.String(), token) {
		t.Errorf("the admin token is in serve's output")
	}
}
