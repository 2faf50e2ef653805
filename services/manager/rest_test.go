package manager_test

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/services/manager"
)

// Google's gapic client works unchanged in gRPC mode and in REST mode
// against the same port.
func TestGapicGRPCAndRESTOnOnePort(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	ctx := t.Context()
	grpcC := gapicGRPC(t, m.addr, toks.admin)
	restC := gapicREST(t, "http://"+m.addr, toks.admin, nil)

	for mode, c := range map[string]*iot.DeviceManagerClient{"grpc": grpcC, "rest": restC} {
		t.Run(mode, func(t *testing.T) {
			id := "reg-" + mode
			reg, err := c.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{
				Parent: srvParent,
				DeviceRegistry: &iotpb.DeviceRegistry{
					Id:                       id,
					EventNotificationConfigs: []*iotpb.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/" + id}},
				},
			})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if want := srvParent + "/registries/" + id; reg.GetName() != want {
				t.Errorf("name %q, want %q", reg.GetName(), want)
			}
			got, err := c.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: reg.GetName()})
			if err != nil || got.GetEventNotificationConfigs()[0].GetPubsubTopicName() != "projects/p1/topics/"+id {
				t.Fatalf("get: %v %v", got, err)
			}
			it := c.ListDeviceRegistries(ctx, &iotpb.ListDeviceRegistriesRequest{Parent: srvParent})
			found := false
			for {
				r, err := it.Next()
				if errors.Is(err, iterator.Done) {
					break
				}
				if err != nil {
					t.Fatalf("list: %v", err)
				}
				found = found || r.GetId() == id
			}
			if !found {
				t.Errorf("list does not hold %s", id)
			}
			dev, err := c.CreateDevice(ctx, &iotpb.CreateDeviceRequest{
				Parent: reg.GetName(),
				Device: &iotpb.Device{Id: "dev-1", Metadata: map[string]string{"k": "v"}},
			})
			if err != nil {
				t.Fatalf("create device: %v", err)
			}
			if dev.GetNumId() == 0 {
				t.Errorf("device has no numId: %v", dev)
			}

			_, err = c.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: srvParent + "/registries/missing"})
			if status.Code(err) != codes.NotFound {
				t.Fatalf("get missing: %v, want NotFound", err)
			}
			var ae *apierror.APIError
			if !errors.As(err, &ae) || ae.GRPCStatus().Code() != codes.NotFound || !strings.Contains(ae.GRPCStatus().Message(), "missing") {
				t.Errorf("get missing: apierror %v does not carry NOT_FOUND and a message naming the registry", err)
			}
			if mode == "rest" && (ae == nil || ae.HTTPCode() != http.StatusNotFound) {
				t.Errorf("REST get missing: HTTP code %v, want 404", ae)
			}

			_, err = c.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{
				Parent: srvParent, DeviceRegistry: &iotpb.DeviceRegistry{Id: id},
			})
			// Over REST the gapic client derives the code from the HTTP
			// status alone (gax apierror), so 409 cannot tell
			// ALREADY_EXISTS from ABORTED: check the HTTP status there.
			if mode == "grpc" && status.Code(err) != codes.AlreadyExists {
				t.Errorf("duplicate create: %v, want AlreadyExists", err)
			}
			if mode == "rest" && (!errors.As(err, &ae) || ae.HTTPCode() != http.StatusConflict) {
				t.Errorf("duplicate create over REST: %v, want HTTP 409", err)
			}
		})
	}
}

// googleErrorBody reads a REST error body in Google's shape.
func readGoogleError(t *testing.T, resp *http.Response) (code int, message, statusName string) {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &body); err != nil || body.Error == nil {
		t.Fatalf("error body %q is not {\"error\": {...}}: %v", b, err)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("error content type %q", resp.Header.Get("Content-Type"))
	}
	return body.Error.Code, body.Error.Message, body.Error.Status
}

func restDo(t *testing.T, method, url, token, body string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestRESTShapes(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	base := "http://" + m.addr + "/v1/"

	resp := restDo(t, http.MethodPost, base+srvParent+"/registries", toks.admin, `{"id":"shapes"}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create registry: %d", resp.StatusCode)
	}
	resp = restDo(t, http.MethodPost, base+srvParent+"/registries/shapes/devices", toks.admin, `{"id":"dev-a","metadata":{"k":"v"}}`)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create device: %d %s", resp.StatusCode, b)
	}
	var dev map[string]any
	if err := json.Unmarshal(b, &dev); err != nil {
		t.Fatal(err)
	}
	if _, ok := dev["numId"].(string); !ok {
		t.Errorf("numId should be a JSON string (camelCase): %s", b)
	}

	// System parameters are accepted and dropped.
	for _, q := range []string{
		"?alt=json&prettyPrint=false&key=x&quotaUser=y&fields=id",
		"?%24alt=json%3Benum-encoding%3Dint",
		"?$.xgafv=2&callback=cb&upload_protocol=raw&uploadType=media&userIp=1.2.3.4",
	} {
		resp = restDo(t, http.MethodGet, base+srvParent+"/registries/shapes"+q, toks.admin, "")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"shapes"`) {
			t.Errorf("GET with %s: %d %s", q, resp.StatusCode, b)
		}
	}
	// access_token is a bearer token.
	resp = restDo(t, http.MethodGet, base+srvParent+"/registries/shapes?access_token="+toks.viewer, "", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET with access_token: %d", resp.StatusCode)
	}

	for _, tc := range []struct {
		name, method, url, token, body string
		code                           int
		status                         string
	}{
		{"missing registry", http.MethodGet, base + srvParent + "/registries/missing", toks.admin, "", 404, "NOT_FOUND"},
		{"unknown path", http.MethodGet, "http://" + m.addr + "/v2/nothing/here", toks.admin, "", 404, "NOT_FOUND"},
		{"bad id", http.MethodPost, base + srvParent + "/registries", toks.admin, `{"id":"goog-x"}`, 400, "INVALID_ARGUMENT"},
		{"duplicate", http.MethodPost, base + srvParent + "/registries", toks.admin, `{"id":"shapes"}`, 409, "ALREADY_EXISTS"},
		{"registry not empty", http.MethodDelete, base + srvParent + "/registries/shapes", toks.admin, "", 400, "FAILED_PRECONDITION"},
		{"no token", http.MethodGet, base + srvParent + "/registries", "", "", 401, "UNAUTHENTICATED"},
		{"bad token", http.MethodGet, base + srvParent + "/registries", "nope", "", 401, "UNAUTHENTICATED"},
		{"viewer creates", http.MethodPost, base + srvParent + "/registries", toks.viewer, `{"id":"by-viewer"}`, 403, "PERMISSION_DENIED"},
		{"bad JSON", http.MethodPost, base + srvParent + "/registries", toks.admin, `{"id":`, 400, "INVALID_ARGUMENT"},
		{"unknown parameter", http.MethodGet, base + srvParent + "/registries?noSuchField=1", toks.admin, "", 400, "INVALID_ARGUMENT"},
		{"bad parameter", http.MethodGet, base + srvParent + "/registries?pageSize=abc", toks.admin, "", 400, "INVALID_ARGUMENT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := restDo(t, tc.method, tc.url, tc.token, tc.body)
			code, msg, st := readGoogleError(t, resp)
			if resp.StatusCode != tc.code || code != tc.code || st != tc.status || msg == "" {
				t.Errorf("HTTP %d, body code %d status %q message %q; want %d %s and a message",
					resp.StatusCode, code, st, msg, tc.code, tc.status)
			}
		})
	}
}

// Auth over both protocols: no token is UNAUTHENTICATED, a viewer creating
// a registry is PERMISSION_DENIED.
func TestAuthCodesOverGRPCAndREST(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	req := &iotpb.CreateDeviceRegistryRequest{Parent: srvParent, DeviceRegistry: &iotpb.DeviceRegistry{Id: "auth-reg"}}
	for _, tc := range []struct {
		name  string
		c     *iot.DeviceManagerClient
		token string
		want  codes.Code
	}{
		{"grpc no token", gapicGRPC(t, m.addr, ""), "", codes.Unauthenticated},
		{"rest no token", gapicREST(t, "http://"+m.addr, "", nil), "", codes.Unauthenticated},
		{"grpc viewer", gapicGRPC(t, m.addr, toks.viewer), toks.viewer, codes.PermissionDenied},
		{"rest viewer", gapicREST(t, "http://"+m.addr, toks.viewer, nil), toks.viewer, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.CreateDeviceRegistry(t.Context(), req)
			if status.Code(err) != tc.want {
				t.Errorf("create: %v, want %v", err, tc.want)
			}
		})
	}
}

// The discovery client (the Go twin of the Python googleapiclient calls in
// Cloud IoT's gateway sample) works unchanged.
func TestDiscoveryClientGatewayFlow(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	svc, err := cloudiot.NewService(t.Context(),
		option.WithEndpoint("http://"+m.addr+"/"),
		option.WithHTTPClient(&http.Client{Transport: headerTransport{base: http.DefaultTransport, token: toks.admin}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	regs := svc.Projects.Locations.Registries
	reg, err := regs.Create(srvParent, &cloudiot.DeviceRegistry{
		Id: "demo-reg",
		EventNotificationConfigs: []*cloudiot.EventNotificationConfig{
			{PubsubTopicName: "projects/p1/topics/demo"},
		},
		MqttConfig: &cloudiot.MqttConfig{MqttEnabledState: "MQTT_ENABLED"},
	}).Do()
	if err != nil {
		t.Fatalf("create registry: %v", err)
	}
	gw, err := regs.Devices.Create(reg.Name, &cloudiot.Device{
		Id: "demo-gateway",
		GatewayConfig: &cloudiot.GatewayConfig{
			GatewayType:       "GATEWAY",
			GatewayAuthMethod: "ASSOCIATION_ONLY",
		},
	}).Do()
	if err != nil {
		t.Fatalf("create gateway: %v", err)
	}
	if gw.NumId == 0 || gw.GatewayConfig == nil || gw.GatewayConfig.GatewayType != "GATEWAY" {
		t.Errorf("gateway as created: %+v", gw)
	}
	dev, err := regs.Devices.Create(reg.Name, &cloudiot.Device{Id: "demo-device", Metadata: map[string]string{"a": "b"}}).Do()
	if err != nil {
		t.Fatalf("create device: %v", err)
	}
	if _, err := regs.BindDeviceToGateway(reg.Name, &cloudiot.BindDeviceToGatewayRequest{
		DeviceId: dev.Id, GatewayId: gw.Id,
	}).Do(); err != nil {
		t.Fatalf("bind: %v", err)
	}
	list, err := regs.Devices.List(reg.Name).GatewayListOptionsAssociationsGatewayId(gw.Id).Do()
	if err != nil {
		t.Fatalf("list bound devices: %v", err)
	}
	if len(list.Devices) != 1 || list.Devices[0].Id != dev.Id || list.Devices[0].NumId != dev.NumId {
		t.Errorf("devices bound to the gateway: %+v", list.Devices)
	}
	got, err := regs.Devices.Get(reg.Name + "/devices/" + dev.Id).Do()
	if err != nil || got.Metadata["a"] != "b" {
		t.Errorf("get device: %+v %v", got, err)
	}

	_, err = regs.Get(srvParent + "/registries/nope").Do()
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) || gerr.Code != http.StatusNotFound || gerr.Message == "" {
		t.Fatalf("get missing registry: %v, want a googleapi.Error 404 with a message", err)
	}
	if !strings.Contains(gerr.Message, "nope") {
		t.Errorf("404 message %q does not name the registry", gerr.Message)
	}
}

// TestRESTFieldsAndEnumNumbers: the "fields" system parameter keeps only
// the fields it names (partial responses), and $alt=json;enum-encoding=int,
// which Google's generated REST clients send, renders enums as numbers.
func TestRESTFieldsAndEnumNumbers(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	base := "http://" + m.addr + "/v1/" + srvParent + "/registries"
	get := func(t *testing.T, url string) (int, map[string]any) {
		t.Helper()
		resp := restDo(t, http.MethodGet, url, toks.admin, "")
		defer resp.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		return resp.StatusCode, v
	}
	keys := func(v any) string {
		m, _ := v.(map[string]any)
		ks := slices.Sorted(maps.Keys(m))
		return strings.Join(ks, ",")
	}
	resp := restDo(t, http.MethodPost, base, toks.admin, `{"id":"fields","mqttConfig":{"mqttEnabledState":"MQTT_ENABLED"}}`)
	resp.Body.Close()
	for _, id := range []string{"dev-a", "dev-b"} {
		resp := restDo(t, http.MethodPost, base+"/fields/devices", toks.admin, `{"id":"`+id+`","metadata":{"k":"v"}}`)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("create %s: %d", id, resp.StatusCode)
		}
	}

	if code, v := get(t, base+"/fields?fields=id,mqttConfig"); code != 200 || keys(v) != "id,mqttConfig" {
		t.Errorf("registry with fields=id,mqttConfig: %d %v", code, v)
	}
	code, v := get(t, base+"/fields/devices?pageSize=1&fieldMask=metadata&fields=devices(id,metadata),nextPageToken")
	devs, _ := v["devices"].([]any)
	if code != 200 || keys(v) != "devices,nextPageToken" || len(devs) != 1 || keys(devs[0]) != "id,metadata" {
		t.Errorf("devices with fields=devices(id,metadata),nextPageToken: %d %v", code, v)
	}
	code, v = get(t, base+"/fields/devices/dev-a?fields=config/version,id")
	if cfg := v["config"]; code != 200 || keys(v) != "config,id" || keys(cfg) != "version" {
		t.Errorf("device with fields=config/version,id: %d %v", code, v)
	}
	if code, v := get(t, base+"/fields?fields=*"); code != 200 || !strings.Contains(keys(v), "mqttConfig") || !strings.Contains(keys(v), "name") {
		t.Errorf("registry with fields=*: %d %v", code, v)
	}

	// Enums as numbers when asked, as names otherwise.
	_, v = get(t, base+"/fields?%24alt=json%3Benum-encoding%3Dint")
	if st := v["mqttConfig"].(map[string]any)["mqttEnabledState"]; st != float64(1) {
		t.Errorf("mqttEnabledState with enum-encoding=int: %#v, want 1", st)
	}
	_, v = get(t, base+"/fields?alt=json")
	if st := v["mqttConfig"].(map[string]any)["mqttEnabledState"]; st != "MQTT_ENABLED" {
		t.Errorf("mqttEnabledState by default: %#v, want MQTT_ENABLED", st)
	}

	// A bad selection is INVALID_ARGUMENT; errors are not filtered.
	for _, tc := range []struct {
		url    string
		code   int
		status string
	}{
		{base + "/fields?fields=devices(id", 400, "INVALID_ARGUMENT"},
		{base + "/fields?fields=a,,b", 400, "INVALID_ARGUMENT"},
		{base + "/missing?fields=id", 404, "NOT_FOUND"},
	} {
		resp := restDo(t, http.MethodGet, tc.url, toks.admin, "")
		code, msg, st := readGoogleError(t, resp)
		if resp.StatusCode != tc.code || code != tc.code || st != tc.status {
			t.Errorf("GET %s: HTTP %d, %d %s %q; want %d %s", tc.url, resp.StatusCode, code, st, msg, tc.code, tc.status)
		}
	}
}
