package manager_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/passerelle-iot/passerelle/services/manager"
)

// Invalid UTF-8 in a request is 400 INVALID_ARGUMENT saying where, never
// 500 "failed to marshal end error", and every error message is UTF-8.
func TestRESTInvalidUTF8(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	base := "http://" + m.addr + "/v1/" + srvParent + "/registries"
	resp := restDo(t, http.MethodPost, base, toks.admin, `{"id":"utf8"}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create registry: %d", resp.StatusCode)
	}
	devices := base + "/utf8/devices"
	for _, tc := range []struct {
		name, method, url, body string
		want                    []string
	}{
		{"outside a string", http.MethodPost, base, "{\"id\":\xff}", []string{"invalid UTF-8 at byte 6", `(in "id")`}},
		{"the whole body", http.MethodPost, base, "\xff\xfe", []string{"invalid UTF-8 at byte 0"}},
		{"in a string", http.MethodPost, base, "{\"id\":\"a\xffb\"}", []string{"invalid UTF-8 at byte 8", `(in "id")`}},
		{"in an enum", http.MethodPost, base, "{\"id\":\"enum\",\"logLevel\":\"\xff\"}", []string{`(in "logLevel")`}},
		{"in a key", http.MethodPost, base, "{\"i\xffd\":\"abc\"}", []string{"invalid UTF-8 at byte 3", `(in "i\ufffdd")`}},
		{"in metadata", http.MethodPost, devices, "{\"id\":\"dev\",\"metadata\":{\"k\":\"v\xff\"}}", []string{`(in "metadata.k")`}},
		{"in a credential", http.MethodPost, devices,
			"{\"id\":\"dev\",\"credentials\":[{},{\"publicKey\":{\"format\":\"ES256_PEM\",\"key\":\"\xc3\"}}]}",
			[]string{`(in "credentials[1].publicKey.key")`}},
		{"in a query parameter", http.MethodGet, devices + "?gatewayListOptions.gatewayType=%FF", "", []string{`query parameter "gatewayListOptions.gatewayType"`}},
		{"in a query parameter name", http.MethodGet, devices + "?x%FF=1", "", []string{`query parameter name "x%FF"`}},
		{"in the path", http.MethodGet, devices + "/d%FF", "", []string{"URL path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := restDo(t, tc.method, tc.url, toks.admin, tc.body)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !utf8.Valid(b) {
				t.Errorf("the error body is not UTF-8: %q", b)
			}
			resp.Body = io.NopCloser(strings.NewReader(string(b)))
			code, msg, st := readGoogleError(t, resp)
			if resp.StatusCode != http.StatusBadRequest || code != 400 || st != "INVALID_ARGUMENT" {
				t.Errorf("HTTP %d, %d %s %q; want 400 INVALID_ARGUMENT", resp.StatusCode, code, st, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
		})
	}
}
