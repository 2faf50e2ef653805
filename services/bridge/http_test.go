package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// httpEnv is the bridge's env with the HTTP device bridge served over
// TLS next to MQTT.
type httpEnv struct {
	*env
	base   string // https://127.0.0.1:port/v1
	client *http.Client
}

func newHTTPEnv(t testing.TB, opts ...bridge.Option) *httpEnv {
	t.Helper()
	return withHTTP(t, newEnv(t, opts...))
}

// withHTTP serves e's bridge over HTTP too.
func withHTTP(t testing.TB, e *env) *httpEnv {
	t.Helper()
	ln := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	testutil.Serve(t, func(ctx context.Context) error { return e.br.ServeHTTPBridge(ctx, tls.NewListener(ln, e.srv)) })
	tr := &http.Transport{TLSClientConfig: e.tls, MaxIdleConnsPerHost: 100}
	t.Cleanup(tr.CloseIdleConnections)
	return &httpEnv{env: e, base: "https://" + ln.Addr().String() + "/v1", client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func devicePath(id string) string {
	return "/projects/" + project + "/locations/us-central1/registries/reg1/devices/" + id
}

// do sends a request and returns the status and the decoded JSON body.
func (e *httpEnv) do(method, path, token string, body any, hdr ...string) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		data, ok := body.([]byte)
		if !ok {
			data = testutil.Must(json.Marshal(body))
		}
		rd = bytes.NewReader(data)
	}
	req := testutil.Must(http.NewRequest(method, e.base+path, rd))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp := testutil.Must(e.client.Do(req))
	defer resp.Body.Close()
	var out map[string]any
	data := testutil.Must(io.ReadAll(resp.Body))
	if err := json.Unmarshal(data, &out); err != nil {
		e.t.Fatalf("%s %s: %d, body not JSON: %q", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode, out
}

// wantError checks a refusal: the HTTP status and Google's JSON error.
func wantError(t *testing.T, status int, body map[string]any, wantStatus int, wantCode, wantMsg string) {
	t.Helper()
	e, _ := body["error"].(map[string]any)
	if status != wantStatus || e == nil || e["status"] != wantCode || e["code"] != float64(wantStatus) ||
		!strings.Contains(fmt.Sprint(e["message"]), wantMsg) {
		t.Fatalf("got %d %v, want %d %s containing %q", status, body, wantStatus, wantCode, wantMsg)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestHTTPPublishEvent(t *testing.T) {
	keys(t)
	e := newHTTPEnv(t)
	dev := e.createDevice("dev-http", rsaKey, nil)
	// URL-safe base64, as Google's Python sample sends it; snake_case.
	code, body := e.do("POST", devicePath("dev-http")+":publishEvent", rsaKey.jwt(t),
		map[string]any{"binary_data": base64.URLEncoding.EncodeToString([]byte("t=21.5 ??>")), "sub_folder": "temp/room1"})
	if code != 200 || len(body) != 0 {
		t.Fatalf("publishEvent: %d %v", code, body)
	}
	// Answered 200: the stream already holds it.
	m := testutil.Must(e.lastNotification(eventsTopic))
	a := bus.AttributesFromHeader(m.Header)
	want := bus.Attributes{DeviceID: "dev-http", DeviceNumID: fmt.Sprint(dev.NumID), DeviceRegistryID: "reg1",
		DeviceRegistryLocation: "us-central1", ProjectID: project, SubFolder: "temp/room1"}
	if a != want || string(m.Data) != "t=21.5 ??>" {
		t.Fatalf("event %q %+v, want %+v", m.Data, a, want)
	}
	// The scheme is case-insensitive.
	if code, body := e.do("POST", devicePath("dev-http")+":publishEvent", "", map[string]any{"binary_data": b64("y")},
		"Authorization", "bearer "+rsaKey.jwt(t)); code != 200 {
		t.Fatalf("publishEvent with 'bearer': %d %v", code, body)
	}
	// camelCase, ES256, no subfolder.
	e.createDevice("dev-ec", ecKey, nil)
	if code, body := e.do("POST", devicePath("dev-ec")+":publishEvent", ecKey.jwt(t), map[string]any{"binaryData": b64("x")}); code != 200 {
		t.Fatalf("publishEvent camelCase: %d %v", code, body)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		if d := e.device("dev-http"); d.LastEventTime.IsZero() {
			return fmt.Errorf("lastEventTime not written")
		}
		return nil
	})
}

func TestHTTPSetState(t *testing.T) {
	keys(t)
	e := newHTTPEnv(t)
	e.createDevice("dev-state", ecKey, nil)
	path := devicePath("dev-state") + ":setState"
	if code, body := e.do("POST", path, ecKey.jwt(t), map[string]any{"state": map[string]any{"binary_data": b64("on")}}); code != 200 {
		t.Fatalf("setState: %d %v", code, body)
	}
	if d := e.device("dev-state"); d.State == nil || string(d.State.Data) != "on" {
		t.Fatalf("state %+v", d.State)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		m, err := e.lastNotification(stateTopic)
		if err != nil || string(m.Data) != "on" {
			return fmt.Errorf("state notification %v, %v", m, err)
		}
		return nil
	})
	// A second state within the second: 429, as MQTT refuses it.
	code, body := e.do("POST", path, ecKey.jwt(t), map[string]any{"state": map[string]any{"binaryData": b64("off")}})
	wantError(t, code, body, 429, "RESOURCE_EXHAUSTED", "one state update per second")
}

func TestHTTPGetConfig(t *testing.T) {
	keys(t)
	e := newHTTPEnv(t)
	ctx := context.Background()
	dev := e.createDevice("dev-cfg", rsaKey, func(d *store.Device) { d.Config.Data = []byte("v1") })
	path := devicePath("dev-cfg") + "/config"
	tok := rsaKey.jwt(t)

	code, body := e.do("GET", path+"?local_version=0", tok, nil)
	if code != 200 || body["version"] != "1" || body["binaryData"] != b64("v1") {
		t.Fatalf("getConfig: %d %v", code, body)
	}
	code, body = e.do("GET", path+"?local_version=7", tok, nil)
	wantError(t, code, body, 400, "OUT_OF_RANGE", "newer than the latest config version 1")
	code, body = e.do("GET", path+"?local_version=1", tok, nil, "X-Server-Timeout", "0.1")
	wantError(t, code, body, 504, "DEADLINE_EXCEEDED", "no config newer than version 1")

	// local_version=1 waits for version 2.
	type answer struct {
		code int
		body map[string]any
	}
	got := make(chan answer, 1)
	go func() {
		c, b := e.do("GET", path+"?localVersion=1", tok, nil)
		got <- answer{c, b}
	}()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if n := e.br.ConfigWaits(); n != 1 {
			return fmt.Errorf("%d getConfig waiting", n)
		}
		return nil
	})
	testutil.Must(e.st.ModifyConfig(ctx, store.DeviceRef{Registry: regKey, ID: "dev-cfg"}, store.ConfigUpdate{Data: []byte("v2"), Now: time.Now()}))
	if err := e.bus.Announce(ctx, bus.Announcement{Kind: bus.ConfigChanged, NumID: dev.NumID}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.code != 200 || a.body["version"] != "2" || a.body["binaryData"] != b64("v2") {
			t.Fatalf("waiting getConfig: %d %v", a.code, a.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting getConfig did not answer after the config changed")
	}
}

// rawRequest writes a request head with a Content-Length but no body and
// returns the status line: the bridge must answer without waiting for the
// body.
func (e *httpEnv) rawRequest(head string) string {
	e.t.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(e.base, "https://"), "/v1")
	c := testutil.Must(tls.Dial("tcp", addr, e.tls))
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		e.t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		e.t.Fatalf("no answer before the body was sent: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestHTTPRefusals(t *testing.T) {
	keys(t)
	e := newHTTPEnv(t)
	ctx := context.Background()
	e.createDevice("dev-ok", rsaKey, nil)
	e.createDevice("dev-blocked", rsaKey, func(d *store.Device) { d.Blocked = true })
	if err := e.st.CreateRegistry(ctx, &store.Registry{Key: store.RegistryKey{Project: project, Location: "us-central1", ID: "nohttp"}, HTTPEnabledState: 2}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.CreateRegistry(ctx, &store.Registry{Key: store.RegistryKey{Project: project, Location: "us-central1", ID: "notopic"}}); err != nil {
		t.Fatal(err)
	}
	testutil.Must(e.st.CreateDevice(ctx, &store.Device{Registry: store.RegistryKey{Project: project, Location: "us-central1", ID: "notopic"},
		ID: "dev-nt", Credentials: []store.Credential{rsaKey.cred}}, time.Now()))
	good := rsaKey.jwt(t)
	ev := map[string]any{"binary_data": b64("x")}
	pub := devicePath("dev-ok") + ":publishEvent"
	for _, tc := range []struct {
		name, method, path, token string
		body                      any
		status                    int
		code, msg                 string
	}{
		{"no token", "POST", pub, "", ev, 401, "UNAUTHENTICATED", "Authorization: Bearer"},
		{"not a JWT", "POST", pub, "abc", ev, 401, "UNAUTHENTICATED", "invalid device JWT"},
		{"wrong key", "POST", pub, otherKey.jwt(t), ev, 401, "UNAUTHENTICATED", "signature matches none"},
		{"wrong audience", "POST", pub, rsaKey.token(t, "other", time.Now(), time.Now().Add(time.Hour)), ev, 401, "UNAUTHENTICATED", "aud"},
		{"expired", "POST", pub, rsaKey.token(t, project, time.Now().Add(-3*time.Hour), time.Now().Add(-2*time.Hour)), ev, 401, "UNAUTHENTICATED", "expired"},
		{"unknown device", "POST", devicePath("nobody") + ":publishEvent", good, ev, 404, "NOT_FOUND", "device nobody not found"},
		{"unknown registry, bad token", "POST", "/projects/p1/locations/us-central1/registries/none/devices/dev-ok:publishEvent", "abc", ev, 401, "UNAUTHENTICATED", "invalid device JWT"},
		{"unknown registry", "POST", "/projects/p1/locations/us-central1/registries/none/devices/dev-ok:publishEvent", good, ev, 404, "NOT_FOUND", "registry none"},
		{"blocked", "POST", devicePath("dev-blocked") + ":publishEvent", good, ev, 403, "PERMISSION_DENIED", "blocked"},
		{"HTTP disabled", "POST", "/projects/p1/locations/us-central1/registries/nohttp/devices/dev-ok:publishEvent", good, ev, 403, "PERMISSION_DENIED", "HTTP is disabled"},
		{"no notification config", "POST", "/projects/p1/locations/us-central1/registries/notopic/devices/dev-nt:publishEvent", good, ev, 400, "FAILED_PRECONDITION", "no event notification config"},
		{"bad base64", "POST", pub, good, map[string]any{"binary_data": "!!"}, 400, "INVALID_ARGUMENT", "not valid base64"},
		{"unknown field", "POST", pub, good, map[string]any{"binary_data": b64("x"), "extra": 1}, 400, "INVALID_ARGUMENT", `unknown field "extra"`},
		{"not JSON", "POST", pub, good, []byte("binary_data=x"), 400, "INVALID_ARGUMENT", "not a JSON object"},
		{"bad subfolder", "POST", pub, good, map[string]any{"binary_data": b64("x"), "sub_folder": "a/+/b"}, 400, "INVALID_ARGUMENT", "sub_folder"},
		{"event over 256 KB", "POST", pub, good, map[string]any{"binary_data": base64.StdEncoding.EncodeToString(make([]byte, 256<<10+1))}, 400, "INVALID_ARGUMENT", "at most 262144"},
		{"state over 64 KB", "POST", devicePath("dev-ok") + ":setState", good, map[string]any{"state": map[string]any{"binary_data": base64.StdEncoding.EncodeToString(make([]byte, 64<<10+1))}}, 400, "INVALID_ARGUMENT", "at most 65536"},
		{"body over the limit", "POST", pub, good, make([]byte, 400<<10), 413, "INVALID_ARGUMENT", "larger than"},
		{"numeric id", "POST", devicePath("123") + ":publishEvent", good, ev, 400, "INVALID_ARGUMENT", "numeric id"},
		{"bad id", "POST", devicePath("x") + ":publishEvent", good, ev, 400, "INVALID_ARGUMENT", "invalid"},
		{"unknown verb", "POST", devicePath("dev-ok") + ":sendCommand", good, ev, 404, "NOT_FOUND", ":sendCommand"},
		{"unknown path", "GET", "/foo", good, nil, 404, "NOT_FOUND", "unknown path"},
		{"wrong method", "GET", pub, good, nil, 405, "INVALID_ARGUMENT", "takes POST"},
		{"bad local_version", "GET", devicePath("dev-ok") + "/config?local_version=x", good, nil, 400, "INVALID_ARGUMENT", "local_version"},
		{"gateway not a gateway", "POST", pub, good, map[string]any{"binary_data": b64("x"), "gateway_info": map[string]any{"gateway_id": "dev-blocked"}}, 400, "INVALID_ARGUMENT", "not a gateway"},
		{"both gateway fields", "POST", pub, good, map[string]any{"gateway_info": map[string]any{"gateway_id": "a", "delegated_device_id": "b"}}, 400, "INVALID_ARGUMENT", "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.do(tc.method, tc.path, tc.token, tc.body)
			wantError(t, code, body, tc.status, tc.code, tc.msg)
		})
	}
	// Refused before the body is read: the answer comes while the
	// client still owes the whole body.
	for _, tc := range []struct{ name, auth, want string }{
		{"unauthenticated", "", "HTTP/1.1 401"},
		{"expired token", "Authorization: Bearer " + rsaKey.token(t, project, time.Now().Add(-3*time.Hour), time.Now().Add(-2*time.Hour)) + "\r\n", "HTTP/1.1 401"},
		{"too large", "Authorization: Bearer " + good + "\r\n", "HTTP/1.1 413"},
	} {
		t.Run("unread body "+tc.name, func(t *testing.T) {
			n := 100
			if tc.name == "too large" {
				n = 10 << 20
			}
			line := e.rawRequest(fmt.Sprintf("POST /v1%s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", pub, tc.auth, n))
			if !strings.HasPrefix(line, tc.want) {
				t.Fatalf("status line %q, want %s", line, tc.want)
			}
		})
	}
	// The refused JWT is the device's lastErrorStatus, as for MQTT.
	testutil.WaitFor(t, 5*time.Second, func() error {
		if d := e.device("dev-ok"); d.LastErrorStatus == nil || d.LastErrorStatus.Code != 16 {
			return fmt.Errorf("lastErrorStatus %+v", d.LastErrorStatus)
		}
		return nil
	})
}

func TestHTTPGateway(t *testing.T) {
	keys(t)
	e := newHTTPEnv(t)
	ctx := context.Background()
	gw := e.createDevice("gw-assoc", ecKey, func(d *store.Device) {
		d.GatewayType, d.GatewayAuthMethod = store.GatewayTypeGateway, 1 // ASSOCIATION_ONLY
	})
	e.createDevice("gw-token", ecKey, func(d *store.Device) {
		d.GatewayType, d.GatewayAuthMethod = store.GatewayTypeGateway, 2 // DEVICE_AUTH_TOKEN_ONLY
	})
	e.createDevice("bound", rsaKey, nil)
	e.createDevice("unbound", rsaKey, nil)
	if err := e.st.BindDevice(ctx, store.DeviceRef{Registry: regKey, ID: gw.ID}, store.DeviceRef{Registry: regKey, ID: "bound"}); err != nil {
		t.Fatal(err)
	}
	gwTok, devTok := ecKey.jwt(t), rsaKey.jwt(t)

	// The gateway's path and the device in gatewayInfo, the gateway's JWT.
	code, body := e.do("POST", devicePath("gw-assoc")+":publishEvent", gwTok,
		map[string]any{"binary_data": b64("via gw"), "gateway_info": map[string]any{"delegated_device_id": "bound"}})
	if code != 200 {
		t.Fatalf("delegated publishEvent: %d %v", code, body)
	}
	m := testutil.Must(e.lastNotification(eventsTopic))
	if a := bus.AttributesFromHeader(m.Header); a.DeviceID != "bound" || a.GatewayID != "gw-assoc" || string(m.Data) != "via gw" {
		t.Fatalf("event %q %+v", m.Data, a)
	}
	// The device's path and the gateway in gatewayInfo.
	code, body = e.do("POST", devicePath("bound")+":setState", gwTok,
		map[string]any{"state": map[string]any{"binary_data": b64("s")}, "gatewayInfo": map[string]any{"gatewayId": "gw-assoc"}})
	if code != 200 {
		t.Fatalf("gateway setState: %d %v", code, body)
	}
	// getConfig takes gatewayInfo in the query.
	code, body = e.do("GET", devicePath("gw-assoc")+"/config?gateway_info.delegated_device_id=bound", gwTok, nil)
	if code != 200 || body["version"] != "1" {
		t.Fatalf("gateway getConfig: %d %v", code, body)
	}
	testutil.WaitFor(t, 5*time.Second, func() error {
		if d := e.device("bound"); d.LastAccessedGatewayID != "gw-assoc" {
			return fmt.Errorf("lastAccessedGatewayId %q", d.LastAccessedGatewayID)
		}
		return nil
	})

	// Refusals: not bound; the device's JWT where the gateway's is due;
	// with DEVICE_AUTH_TOKEN_ONLY the device's JWT, bound or not.
	code, body = e.do("POST", devicePath("gw-assoc")+":publishEvent", gwTok,
		map[string]any{"binary_data": b64("x"), "gateway_info": map[string]any{"delegated_device_id": "unbound"}})
	wantError(t, code, body, 403, "PERMISSION_DENIED", "not bound")
	code, body = e.do("POST", devicePath("gw-assoc")+":publishEvent", devTok,
		map[string]any{"binary_data": b64("x"), "gateway_info": map[string]any{"delegated_device_id": "bound"}})
	wantError(t, code, body, 401, "UNAUTHENTICATED", "signature")
	code, body = e.do("POST", devicePath("gw-token")+":publishEvent", devTok,
		map[string]any{"binary_data": b64("x"), "gateway_info": map[string]any{"delegated_device_id": "unbound"}})
	if code != 200 {
		t.Fatalf("DEVICE_AUTH_TOKEN_ONLY with the device's JWT: %d %v", code, body)
	}
	code, body = e.do("POST", devicePath("gw-token")+":publishEvent", gwTok,
		map[string]any{"binary_data": b64("x"), "gateway_info": map[string]any{"delegated_device_id": "unbound"}})
	wantError(t, code, body, 401, "UNAUTHENTICATED", "device's token was refused")
}

func TestHTTPRequestRate(t *testing.T) {
	keys(t)
	e := newHTTPEnv(t, bridge.WithHTTPRequestRate(0.01, 2))
	e.createDevice("dev-rate", ecKey, nil)
	e.createDevice("dev-other", ecKey, nil)
	tok := ecKey.jwt(t)
	for i := range 2 {
		if code, body := e.do("POST", devicePath("dev-rate")+":publishEvent", tok, map[string]any{"binary_data": b64("x")}); code != 200 {
			t.Fatalf("publish %d: %d %v", i, code, body)
		}
	}
	code, body := e.do("POST", devicePath("dev-rate")+":publishEvent", tok, map[string]any{"binary_data": b64("x")})
	wantError(t, code, body, 429, "RESOURCE_EXHAUSTED", "requests per minute")
	// Another device is not held back.
	if code, body := e.do("POST", devicePath("dev-other")+":publishEvent", tok, map[string]any{"binary_data": b64("x")}); code != 200 {
		t.Fatalf("other device: %d %v", code, body)
	}
}

// A token verified once is remembered, but only while the credential that
// verified it is still the device's.
func TestHTTPRememberedTokenFollowsCredentials(t *testing.T) {
	keys(t)
	e := newHTTPEnv(t)
	ctx := context.Background()
	e.createDevice("dev-rot", ecKey, nil)
	tok := ecKey.jwt(t)
	path := devicePath("dev-rot") + ":publishEvent"
	for i := range 2 {
		if code, body := e.do("POST", path, tok, map[string]any{"binary_data": b64("x")}); code != 200 {
			t.Fatalf("publish %d: %d %v", i, code, body)
		}
	}
	testutil.Must(e.st.UpdateDevice(ctx, store.DeviceRef{Registry: regKey, ID: "dev-rot"}, func(d *store.Device) error {
		d.Credentials = []store.Credential{otherKey.cred}
		return nil
	}))
	code, body := e.do("POST", path, tok, map[string]any{"binary_data": b64("x")})
	wantError(t, code, body, 401, "UNAUTHENTICATED", "signature matches none")
	if code, body := e.do("POST", path, otherKey.jwt(t), map[string]any{"binary_data": b64("x")}); code != 200 {
		t.Fatalf("with the new key: %d %v", code, body)
	}
}

// deviceOutage fails GetDevice with store.ErrUnavailable while down.
type deviceOutage struct {
	store.Store
	down atomic.Bool
}

func (s *deviceOutage) GetDevice(ctx context.Context, ref store.DeviceRef) (*store.Device, error) {
	if s.down.Load() {
		return nil, fmt.Errorf("sqlstore postgres: %w: connection refused", store.ErrUnavailable)
	}
	return s.Store.GetDevice(ctx, ref)
}

// A store that does not answer is 503 UNAVAILABLE (send again), not a
// refusal of the device.
func TestHTTPStoreOutage(t *testing.T) {
	keys(t)
	outage := &deviceOutage{}
	e := withHTTP(t, newEnvWrapped(t, func(st store.Store) store.Store { outage.Store = st; return outage }))
	e.createDevice("dev-out", ecKey, nil)
	tok := ecKey.jwt(t)
	path := devicePath("dev-out") + ":publishEvent"
	outage.down.Store(true)
	code, body := e.do("POST", path, tok, map[string]any{"binary_data": b64("x")})
	wantError(t, code, body, 503, "UNAVAILABLE", "retry later")
	code, body = e.do("GET", devicePath("dev-out")+"/config", tok, nil)
	wantError(t, code, body, 503, "UNAVAILABLE", "retry later")
	outage.down.Store(false)
	if code, body := e.do("POST", path, tok, map[string]any{"binary_data": b64("x")}); code != 200 {
		t.Fatalf("after the outage: %d %v", code, body)
	}
}
