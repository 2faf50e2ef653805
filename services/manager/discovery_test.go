package manager_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"

	"github.com/passerelle-iot/passerelle/services/manager"
)

// discoveryURL is the URL of Google's Python manager sample, on m.
func discoveryURL(m *runningManager) string {
	return "http://" + m.addr + "/$discovery/rest?version=v1"
}

func getDiscovery(t *testing.T, url string, header http.Header) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp, doc
}

// served fetches the document from m, failing the test when it cannot.
func served(t *testing.T, m *runningManager) map[string]any {
	t.Helper()
	resp, doc := getDiscovery(t, discoveryURL(m), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", discoveryURL(m), resp.StatusCode)
	}
	return doc
}

// The discovery document is served at Google's two URLs, without a token,
// with rootUrl and baseUrl the address the request reached, and cacheable.
func TestDiscoveryDocumentServed(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	root := "http://" + m.addr + "/"
	for _, url := range []string{
		discoveryURL(m),
		"http://" + m.addr + "/%24discovery/rest?version=v1",
		"http://" + m.addr + "/$discovery/rest",
		"http://" + m.addr + "/discovery/v1/apis/cloudiot/v1/rest",
	} {
		resp, doc := getDiscovery(t, url, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s without a token: %d", url, resp.StatusCode)
		}
		if doc["kind"] != "discovery#restDescription" || doc["name"] != "cloudiot" || doc["version"] != "v1" ||
			doc["rootUrl"] != root || doc["baseUrl"] != root || doc["servicePath"] != "" || doc["batchPath"] != "batch" {
			t.Errorf("GET %s: kind %v name %v version %v rootUrl %v baseUrl %v servicePath %q batchPath %v",
				url, doc["kind"], doc["name"], doc["version"], doc["rootUrl"], doc["baseUrl"], doc["servicePath"], doc["batchPath"])
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") || resp.Header.Get("ETag") == "" {
			t.Errorf("GET %s: Cache-Control %q, ETag %q; want it cacheable", url, cc, resp.Header.Get("ETag"))
		}
	}

	// Behind a proxy.
	for _, tc := range []struct {
		proto, host, want string
	}{
		{"https", "iot.example.com", "https://iot.example.com/"},
		{"https, http", "iot.example.com:8443, inner:8080", "https://iot.example.com:8443/"},
		{"", "[2001:db8::1]:8443", "http://[2001:db8::1]:8443/"},
		{"gopher", "evil.example/x?y", root}, // not a scheme, not a host: ignored
	} {
		h := http.Header{}
		if tc.proto != "" {
			h.Set("X-Forwarded-Proto", tc.proto)
		}
		h.Set("X-Forwarded-Host", tc.host)
		resp, doc := getDiscovery(t, discoveryURL(m), h)
		if resp.StatusCode != http.StatusOK || doc["rootUrl"] != tc.want || doc["baseUrl"] != tc.want {
			t.Errorf("X-Forwarded-Proto %q, X-Forwarded-Host %q: %d, rootUrl %v baseUrl %v; want %s",
				tc.proto, tc.host, resp.StatusCode, doc["rootUrl"], doc["baseUrl"], tc.want)
		}
		if !strings.Contains(resp.Header.Get("Vary"), "X-Forwarded-Host") {
			t.Errorf("Vary %q does not name X-Forwarded-Host", resp.Header.Get("Vary"))
		}
	}

	// A cached copy is revalidated with its ETag; HEAD has no body.
	resp, _ := getDiscovery(t, discoveryURL(m), nil)
	etag := resp.Header.Get("ETag")
	if resp, _ := getDiscovery(t, discoveryURL(m), http.Header{"If-None-Match": {etag}}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match with the ETag: %d, want 304", resp.StatusCode)
	}
	if resp := restDo(t, http.MethodHead, discoveryURL(m), "", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD: %d", resp.StatusCode)
	}

	// What is not served is answered here, in Google's shape, without a
	// token: discovery paths never reach the API behind them.
	for _, tc := range []struct {
		method, path string
		code         int
		status, msg  string
	}{
		{http.MethodGet, "/$discovery/rest?version=v2", 404, "NOT_FOUND", "serves cloudiot v1"},
		{http.MethodGet, "/discovery/v1/apis/pubsub/v1/rest", 404, "NOT_FOUND", "serves cloudiot v1"},
		{http.MethodGet, "/discovery/v1/apis", 404, "NOT_FOUND", "serves cloudiot v1"},
		{http.MethodPost, "/$discovery/rest?version=v1", 405, "NOT_FOUND", "GET"},
		{http.MethodPost, "/batch", 501, "UNIMPLEMENTED", "Batch requests are not supported"},
		{http.MethodPost, "/batch/cloudiot/v1", 501, "UNIMPLEMENTED", "Batch requests are not supported"},
	} {
		resp := restDo(t, tc.method, "http://"+m.addr+tc.path, "", "")
		code, msg, st := readGoogleError(t, resp)
		if resp.StatusCode != tc.code || code != tc.code || st != tc.status || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s %s: %d %s %q; want %d %s with %q", tc.method, tc.path, code, st, msg, tc.code, tc.status, tc.msg)
		}
	}
}

// googleDiscovery reads Google's own cloudiot v1 discovery document, as the
// google.golang.org/api module (a dependency) ships it, to compare with.
func googleDiscovery(t *testing.T) map[string]any {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "google.golang.org/api").Output()
	if err != nil {
		t.Fatalf("go list -m google.golang.org/api: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "cloudiot", "v1", "cloudiot-api.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// discoveryMethods flattens a document's resources: method id -> method.
func discoveryMethods(doc map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	var walk func(res map[string]any, path string)
	walk = func(res map[string]any, path string) {
		for name, r := range res {
			r := r.(map[string]any)
			methods, _ := r["methods"].(map[string]any)
			for mname, m := range methods {
				out[path+name+"."+mname] = m.(map[string]any)
			}
			if sub, ok := r["resources"].(map[string]any); ok {
				walk(sub, path+name+".")
			}
		}
	}
	walk(doc["resources"].(map[string]any), "")
	return out
}

// Ours describes Google's methods (but the device-group ones: Passerelle
// has no groups) as Google's did, so that a client built from either works
// the same: same resources and names, ids, HTTP methods, paths, parameters
// (location, type, format, pattern, enums), request and response schemas,
// and the schemas' properties.
func TestDiscoveryMatchesGoogle(t *testing.T) {
	m := startManager(t, manager.WithInsecureNoAuth())
	ours := served(t, m)
	google := googleDiscovery(t)
	ourMethods, googleMethods := discoveryMethods(ours), discoveryMethods(google)

	for name, gm := range googleMethods {
		if strings.Contains(name, ".groups.") {
			if _, ok := ourMethods[name]; ok {
				t.Errorf("%s: described, but Passerelle has no device groups", name)
			}
			continue
		}
		om, ok := ourMethods[name]
		if !ok {
			t.Errorf("%s: missing", name)
			continue
		}
		for _, k := range []string{"id", "httpMethod", "path", "flatPath", "parameterOrder", "request", "response"} {
			if !reflect.DeepEqual(om[k], gm[k]) {
				t.Errorf("%s: %s is %v, Google's %v", name, k, om[k], gm[k])
			}
		}
		gp, op := gm["parameters"].(map[string]any), om["parameters"].(map[string]any)
		if !reflect.DeepEqual(slices.Sorted(keys(op)), slices.Sorted(keys(gp))) {
			t.Errorf("%s: parameters %v, Google's %v", name, slices.Sorted(keys(op)), slices.Sorted(keys(gp)))
		}
		for pname, g := range gp {
			o, _ := op[pname].(map[string]any)
			for _, k := range []string{"location", "type", "format", "required", "repeated", "pattern", "enum"} {
				if !reflect.DeepEqual(o[k], g.(map[string]any)[k]) {
					t.Errorf("%s: parameter %s: %s is %v, Google's %v", name, pname, k, o[k], g.(map[string]any)[k])
				}
			}
		}
	}
	for name := range ourMethods {
		if _, ok := googleMethods[name]; !ok {
			t.Errorf("%s: not in Google's document", name)
		}
	}

	ourSchemas, googleSchemas := ours["schemas"].(map[string]any), google["schemas"].(map[string]any)
	for name, g := range googleSchemas {
		o, ok := ourSchemas[name].(map[string]any)
		if !ok {
			t.Errorf("schema %s: missing", name)
			continue
		}
		gprops, _ := g.(map[string]any)["properties"].(map[string]any)
		oprops, _ := o["properties"].(map[string]any)
		for pname, gprop := range gprops {
			if got, want := shape(oprops[pname]), shape(gprop); !reflect.DeepEqual(got, want) {
				t.Errorf("schema %s: property %s is %v, Google's %v", name, pname, got, want)
			}
		}
	}
}

func keys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// shape is a schema without its descriptions.
func shape(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			if k != "description" && k != "enumDescriptions" && k != "readOnly" {
				out[k] = shape(x)
			}
		}
		return out
	default:
		return v
	}
}

// Every method the document describes is served (the transcoder routes
// its flat path), and every DeviceManager method is described.
func TestDiscoveryDescribesWhatIsServed(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	methods := discoveryMethods(served(t, m))
	ids := regexp.MustCompile(`\{\+?(\w+)\}`)
	for name, dm := range methods {
		path := ids.ReplaceAllString(dm["flatPath"].(string), "x-$1")
		body := ""
		if dm["request"] != nil {
			body = "{}"
		}
		resp := restDo(t, dm["httpMethod"].(string), "http://"+m.addr+"/"+path, toks.admin, body)
		_, msg, st := readGoogleErrorOrOK(t, resp)
		if st == "NOT_FOUND" && strings.Contains(msg, "was not found on this server") {
			t.Errorf("%s: %s /%s is not served: %s", name, dm["httpMethod"], path, msg)
		}
	}
	sd := iotpb.File_google_cloud_iot_v1_device_manager_proto.Services().ByName("DeviceManager")
	if len(methods) != sd.Methods().Len() {
		t.Errorf("the document has %d methods, DeviceManager %d", len(methods), sd.Methods().Len())
	}
	for _, dm := range methods {
		d, _ := dm["description"].(string)
		switch {
		case strings.Contains(dm["id"].(string), "IamPolicy"):
			if !strings.Contains(d, "UNIMPLEMENTED") {
				t.Errorf("%s: description %q does not say it answers UNIMPLEMENTED", dm["id"], d)
			}
		case strings.Contains(dm["id"].(string), "IamPermissions"):
			// Served since the console: the document must not say otherwise.
			if strings.Contains(d, "UNIMPLEMENTED") || !strings.Contains(d, "role") {
				t.Errorf("%s: description %q, want how the token's role answers it", dm["id"], d)
			}
		}
	}
}

// readGoogleErrorOrOK reads an error body, or nothing from a success.
func readGoogleErrorOrOK(t *testing.T, resp *http.Response) (int, string, string) {
	t.Helper()
	if resp.StatusCode < 400 {
		resp.Body.Close()
		return resp.StatusCode, "", ""
	}
	return readGoogleError(t, resp)
}

// Google's Python manager sample (Debian's python3-googleapi, the 1.x
// discovery client) builds its client from the served document and makes
// real calls: testdata/manager_sample.py.
func TestPythonDiscoveryClient(t *testing.T) {
	const python = "/usr/bin/python3"
	probe := exec.Command(python, "-c", "import googleapiclient.discovery, google.oauth2.credentials, google_auth_httplib2")
	if out, err := probe.CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s cannot import Google's discovery client (apt-get install python3-googleapi): %v\n%s", python, err, out)
		}
		t.Skipf("%s cannot import Google's discovery client (apt-get install python3-googleapi): %v", python, err)
	}
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join("testdata", "manager_sample.py"))
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasSuffix(strings.ToLower(k), "_proxy") {
			cmd.Env = append(cmd.Env, kv) // no proxy between the client and 127.0.0.1
		}
	}
	cmd.Env = append(cmd.Env,
		"PASSERELLE_DISCOVERY_URL="+discoveryURL(m),
		"PASSERELLE_TOKEN="+toks.admin,
		"PASSERELLE_ES256_PUBLIC_KEY="+string(pub),
	)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil || !strings.Contains(string(out), "python check: ok") {
		t.Fatalf("Google's Python manager sample against the served discovery document: %v", err)
	}
}
