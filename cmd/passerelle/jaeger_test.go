package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

func TestMain(m *testing.M) {
	testutil.ChildMain(main) // StartMain runs passerelle as its own process
	os.Exit(m.Run())
}

// jaegerBinary finds the Jaeger of `make tools`: the test needs it under
// CI and skips without it elsewhere.
func jaegerBinary(t *testing.T) string {
	for _, p := range []string{filepath.Join("..", "..", ".tools", "bin", "jaeger"), "jaeger"} {
		if bin, err := exec.LookPath(p); err == nil {
			return bin
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("jaeger is not installed: make tools builds it into .tools/bin")
	}
	t.Skip("jaeger is not installed (make tools builds it into .tools/bin)")
	return ""
}

// startJaeger runs Jaeger v2 with its in-memory store, the OTLP/gRPC
// receiver and the query API on free loopback ports; it returns the OTLP
// endpoint and the query API's base URL.
func startJaeger(t *testing.T) (otlp, query string) {
	bin := jaegerBinary(t)
	otlp, query, queryGRPC := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, query, queryGRPC, otlp)
	file := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "--config", "file:"+file)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by PID
		<-done
		if t.Failed() {
			t.Logf("jaeger:\n%s", out.String())
		}
	})
	testutil.WaitFor(t, 60*time.Second, func() error {
		resp, err := http.Get("http://" + query + "/api/services")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/api/services: %d", resp.StatusCode)
		}
		return nil
	})
	return otlp, "http://" + query
}

type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	Tags          []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

func (s jaegerSpan) tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

type jaegerTrace struct {
	TraceID string       `json:"traceID"`
	Spans   []jaegerSpan `json:"spans"`
}

// find returns the first span whose operation starts with op and whose
// tags include tags (key, value pairs).
func (tr jaegerTrace) find(op string, tags ...string) *jaegerSpan {
	for i, s := range tr.Spans {
		ok := strings.HasPrefix(s.OperationName, op)
		for j := 0; ok && j+1 < len(tags); j += 2 {
			ok = s.tag(tags[j]) == tags[j+1]
		}
		if ok {
			return &tr.Spans[i]
		}
	}
	return nil
}

// traces reads the traces of service from Jaeger's query API.
func traces(query, service string) ([]jaegerTrace, error) {
	resp, err := http.Get(query + "/api/traces?" + url.Values{"service": {service}, "limit": {"1000"}, "lookback": {"1h"}}.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	return body.Data, nil
}

// waitTrace polls Jaeger until a trace satisfies match.
func waitTrace(t *testing.T, query, what string, match func(jaegerTrace) error) jaegerTrace {
	t.Helper()
	var found jaegerTrace
	testutil.WaitFor(t, 30*time.Second, func() error {
		trs, err := traces(query, "passerelle")
		if err != nil {
			return err
		}
		var last error = fmt.Errorf("no trace of %s among %d", what, len(trs))
		for _, tr := range trs {
			if err := match(tr); err == nil {
				found = tr
				return nil
			} else if tr.find("bridge.") != nil {
				last = fmt.Errorf("%s: %w", what, err)
			}
		}
		return last
	})
	return found
}

// TestTracesInJaeger runs passerelle serve exporting traces over OTLP to a
// real Jaeger, changes the config of a device attached through the hub and
// publishes an event for it, and reads the traces back from Jaeger's
// query API: the admin call, the bus hop and the bridge's delivery in one
// trace; the hub's stream message with device and gateway; the event from
// the bridge's PUBLISH to the JetStream write.
func TestTracesInJaeger(t *testing.T) {
	otlp, query := startJaeger(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	adminAddr, mqttAddr, hubAddr, opsAddr, httpAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"+otlp)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Setenv("OTEL_SERVICE_NAME", "passerelle")
	testutil.StartMain(t, "serve", "--data-dir", dataDir, "--admin-addr", adminAddr, "--mqtt-addr", mqttAddr,
		"--hub-addr", hubAddr, "--ops-addr", opsAddr, "--http-bridge-addr", httpAddr)
	testutil.WaitFor(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + opsAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/readyz %d", resp.StatusCode)
		}
		return nil
	})
	ctx := t.Context()
	token := strings.TrimSpace(string(testutil.Must(os.ReadFile(filepath.Join(dataDir, "admin.token")))))
	c := testutil.Must(iot.NewDeviceManagerClient(context.Background(), option.WithEndpoint(adminAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(token)))))
	defer c.Close()
	reg := testutil.Must(c.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{
		Parent: "projects/p1/locations/us-central1",
		DeviceRegistry: &iotpb.DeviceRegistry{Id: "trace-reg", EventNotificationConfigs: []*iotpb.EventNotificationConfig{
			{PubsubTopicName: "projects/p1/topics/trace-events"},
		}},
	}))
	hc := testutil.Must(grpc.NewClient(hubAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer(token))))
	defer hc.Close()
	hub := hubv1.NewHubClient(hc)
	gw := testutil.Must(hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{Parent: reg.GetName(), GatewayId: "trace-gw"})).GetGateway().GetName()
	const devID = "trace-dev"
	att := testutil.Must(hub.Attach(ctx))
	if err := att.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: devID, CreateIfMissing: true, BindIfNeeded: true}); err != nil {
		t.Fatal(err)
	}
	if r, err := att.Recv(); err != nil || r.GetAttached() == nil {
		t.Fatalf("Attach: %v %v", r, err)
	}
	cfgs := testutil.Must(hub.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: devID}))
	if _, err := cfgs.Recv(); err != nil {
		t.Fatalf("first config: %v", err)
	}
	testutil.Must(c.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{
		Name: reg.GetName() + "/devices/" + devID, BinaryData: []byte("traced"),
	}))
	if m, err := cfgs.Recv(); err != nil || string(m.GetData()) != "traced" {
		t.Fatalf("second config: %v %v", m, err)
	}
	testutil.Must(hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: devID, Data: []byte("ev")}))

	// A device on the HTTP bridge.
	key, pubPEM := es256Key(t)
	testutil.Must(c.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg.GetName(), Device: &iotpb.Device{
		Id: "trace-http",
		Credentials: []*iotpb.DeviceCredential{{Credential: &iotpb.DeviceCredential_PublicKey{
			PublicKey: &iotpb.PublicKeyCredential{Format: iotpb.PublicKeyFormat_ES256_PEM, Key: pubPEM},
		}}},
	}}))
	now := time.Now()
	devJWT := testutil.Must(jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), Audience: jwt.ClaimStrings{"p1"},
	}).SignedString(key))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(testutil.Must(os.ReadFile(filepath.Join(dataDir, "ca.pem"))))
	req := testutil.Must(http.NewRequest("POST", "https://"+httpAddr+"/v1/"+reg.GetName()+"/devices/trace-http:publishEvent",
		strings.NewReader(`{"binary_data": "aHR0cA=="}`)))
	req.Header.Set("Authorization", "Bearer "+devJWT)
	hresp := testutil.Must((&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}).Do(req))
	hresp.Body.Close()
	if hresp.StatusCode != 200 {
		t.Fatalf("HTTP publishEvent: %d", hresp.StatusCode)
	}

	// The config change: admin call -> bus hop -> the bridge's delivery
	// to the gateway's connection, in one trace.
	tr := waitTrace(t, query, "the config change", func(tr jaegerTrace) error {
		for _, want := range []struct{ op, key, value string }{
			{"google.cloud.iot.v1.DeviceManager/ModifyCloudToDeviceConfig", "", ""},
			{"bus.announce configChanged", "", ""},
			{"bridge.config send", "passerelle.device", devID},
			{"bridge.config send", "passerelle.gateway", "trace-gw"},
		} {
			tags := []string{}
			if want.key != "" {
				tags = []string{want.key, want.value}
			}
			if tr.find(want.op, tags...) == nil {
				return fmt.Errorf("no span %s %v in trace %s", want.op, tags, tr.TraceID)
			}
		}
		return nil
	})
	t.Logf("config trace %s: %d spans", tr.TraceID, len(tr.Spans))
	// The hub's stream message for the device, through its gateway.
	// (MQTT 3.1.1 carries no trace context from the bridge to the hub.)
	waitTrace(t, query, "the hub's config message", func(tr jaegerTrace) error {
		if tr.find("hub.receive config", "gateway", gw, "device", devID) == nil {
			return fmt.Errorf("no hub.receive config span")
		}
		return nil
	})
	// The HTTP event: the request, the event, the JetStream write.
	waitTrace(t, query, "the HTTP event", func(tr jaegerTrace) error {
		if tr.find("bridge.http publishEvent", "passerelle.device", "trace-http") == nil ||
			tr.find("bridge.event publish", "passerelle.device", "trace-http") == nil || tr.find("bus.publish event") == nil {
			return fmt.Errorf("no bridge.http publishEvent + bridge.event publish + bus.publish event")
		}
		return nil
	})
	// The event: the bridge's PUBLISH handling to the JetStream write.
	waitTrace(t, query, "the event", func(tr jaegerTrace) error {
		if tr.find("bridge.event publish", "passerelle.device", devID, "passerelle.gateway", "trace-gw") == nil || tr.find("bus.publish event") == nil {
			return fmt.Errorf("no bridge.event publish + bus.publish event")
		}
		return nil
	})
}
