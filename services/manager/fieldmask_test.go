package manager_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/services/manager"
)

// Field masks in REST query parameters take paths in snake_case and in
// lowerCamel, as Google's front end did (Google's Node client in REST mode
// sends ?fieldMask=config%2Cgateway_config), and a mask that cannot be
// read is refused with its whole value in the message.
func TestRESTFieldMaskParams(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	base := "http://" + m.addr + "/v1/" + srvParent + "/registries"
	devices := base + "/masks/devices"
	do := func(t *testing.T, method, url, body string) (int, map[string]any) {
		t.Helper()
		resp := restDo(t, method, url, toks.admin, body)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
		}
		return resp.StatusCode, v
	}
	if code, v := do(t, http.MethodPost, base, `{"id":"masks"}`); code != 200 {
		t.Fatalf("create registry: %d %v", code, v)
	}
	for _, body := range []string{
		`{"id":"gw-1","gatewayConfig":{"gatewayType":"GATEWAY","gatewayAuthMethod":"ASSOCIATION_ONLY"},"metadata":{"k":"v"}}`,
		`{"id":"dev-1","metadata":{"k":"v"}}`,
	} {
		if code, v := do(t, http.MethodPost, devices, body); code != 200 {
			t.Fatalf("create device: %d %v", code, v)
		}
	}

	for _, q := range []string{
		"fieldMask=config%2Cgateway_config",
		"fieldMask=config,gatewayConfig",
		"fieldMask=config&fieldMask=gateway_config",
		"field_mask=+config+,+gateway_config+",
	} {
		code, v := do(t, http.MethodGet, devices+"?"+q, "")
		list, _ := v["devices"].([]any)
		if code != 200 || len(list) != 2 {
			t.Errorf("ListDevices?%s: %d %v", q, code, v)
			continue
		}
		for _, d := range list {
			d := d.(map[string]any)
			_, hasConfig := d["config"]
			_, hasGateway := d["gatewayConfig"]
			_, hasMetadata := d["metadata"]
			if !hasConfig || !hasGateway || hasMetadata || d["id"] == nil || d["numId"] == nil {
				t.Errorf("ListDevices?%s: device %v, want id, numId, config and gatewayConfig only", q, d)
			}
		}
	}
	code, v := do(t, http.MethodGet, devices+"/gw-1?fieldMask=gateway_config.gateway_auth_method", "")
	if gc, _ := v["gatewayConfig"].(map[string]any); code != 200 || gc["gatewayAuthMethod"] != "ASSOCIATION_ONLY" || v["metadata"] != nil {
		t.Errorf("GetDevice?fieldMask=gateway_config.gateway_auth_method: %d %v", code, v)
	}

	code, v = do(t, http.MethodPatch, devices+"/dev-1?updateMask=log_level,metadata", `{"logLevel":"DEBUG","metadata":{"k":"w"}}`)
	if md, _ := v["metadata"].(map[string]any); code != 200 || v["logLevel"] != "DEBUG" || md["k"] != "w" {
		t.Errorf("UpdateDevice?updateMask=log_level,metadata: %d %v", code, v)
	}
	code, v = do(t, http.MethodPatch, devices+"/gw-1?updateMask=gateway_config.gateway_auth_method",
		`{"gatewayConfig":{"gatewayAuthMethod":"DEVICE_AUTH_TOKEN_ONLY"}}`)
	if gc, _ := v["gatewayConfig"].(map[string]any); code != 200 || gc["gatewayAuthMethod"] != "DEVICE_AUTH_TOKEN_ONLY" {
		t.Errorf("UpdateDevice?updateMask=gateway_config.gateway_auth_method: %d %v", code, v)
	}

	for _, tc := range []struct{ query, want string }{
		{"fieldMask=config,gateway-config", `"gateway-config" is not a field path`},
		{"fieldMask=config,gateway_Config", `"gateway_Config" is not a field path`},
		{"updateMask=metadata,log_level_", `"log_level_" is not a field path`},
	} {
		method, url := http.MethodGet, devices+"?"+tc.query
		if strings.HasPrefix(tc.query, "update") {
			method, url = http.MethodPatch, devices+"/dev-1?"+tc.query
		}
		body := ""
		if method == http.MethodPatch {
			body = `{}`
		}
		resp := restDo(t, method, url, toks.admin, body)
		code, msg, st := readGoogleError(t, resp)
		if code != 400 || st != "INVALID_ARGUMENT" || !strings.Contains(msg, tc.want) {
			t.Errorf("?%s: %d %s %q; want 400 INVALID_ARGUMENT with %q", tc.query, code, st, msg, tc.want)
		}
	}
}
