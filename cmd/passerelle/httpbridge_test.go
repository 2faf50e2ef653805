package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// metric sums the samples of a Prometheus text exposition whose name is
// name and whose labels include every one of labels (`kind="event"`).
func metric(body, name string, labels ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series := line[:i]
		n, lbl, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(lbl, l)
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); ok && err == nil {
			sum += v
		}
	}
	return sum
}

func scrape(t *testing.T, opsAddr string) string {
	t.Helper()
	resp := testutil.Must(http.Get("http://" + opsAddr + "/metrics"))
	defer resp.Body.Close()
	body := testutil.Must(io.ReadAll(resp.Body))
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return string(body)
}

// TestServeHTTPBridgeAndMetrics runs passerelle serve with the HTTP device
// bridge and the operator address on: devices publish through Go's
// net/http, curl, a Python device written as Google's HTTP sample is
// (requests + PyJWT) and MQTT at QoS 1, and /metrics counts what they did.
func TestServeHTTPBridgeAndMetrics(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	adminAddr, mqttAddr, httpAddr, opsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	s := startServe(t, noEnv, "serve", "--ops-addr", opsAddr, "--http-bridge-addr", httpAddr, "--data-dir", dataDir,
		"--admin-addr", adminAddr, "--mqtt-addr", mqttAddr, "--hub-addr", "")
	base := "https://" + httpAddr + "/v1"
	if !strings.Contains(s.out.String(), "HTTP bridge:  "+base) {
		t.Errorf("the banner does not name the HTTP bridge:\n%s", s.out.String())
	}
	ctx := t.Context()
	token := strings.TrimSpace(string(testutil.Must(os.ReadFile(filepath.Join(dataDir, "admin.token")))))
	c := testutil.Must(iot.NewDeviceManagerClient(context.Background(), option.WithEndpoint(adminAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(token)))))
	defer c.Close()
	reg := testutil.Must(c.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{
		Parent: "projects/p1/locations/us-central1",
		DeviceRegistry: &iotpb.DeviceRegistry{Id: "http-reg", EventNotificationConfigs: []*iotpb.EventNotificationConfig{
			{PubsubTopicName: "projects/p1/topics/http-events"},
		}},
	}))
	key, pubPEM := es256Key(t)
	for _, id := range []string{"dev-go", "dev-curl", "dev-py", "dev-mqtt"} {
		testutil.Must(c.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg.GetName(), Device: &iotpb.Device{
			Id: id,
			Credentials: []*iotpb.DeviceCredential{{Credential: &iotpb.DeviceCredential_PublicKey{
				PublicKey: &iotpb.PublicKeyCredential{Format: iotpb.PublicKeyFormat_ES256_PEM, Key: pubPEM},
			}}},
		}}))
	}
	now := time.Now()
	devJWT := testutil.Must(jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), Audience: jwt.ClaimStrings{"p1"},
	}).SignedString(key))
	caFile := filepath.Join(dataDir, "ca.pem")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(testutil.Must(os.ReadFile(caFile)))
	before := scrape(t, opsAddr)

	// Go's net/http, keep-alive over TLS trusting ca.pem.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 20 * time.Second}
	const goEvents = 5
	for i := range goEvents {
		req := testutil.Must(http.NewRequest("POST", base+"/"+reg.GetName()+"/devices/dev-go:publishEvent",
			strings.NewReader(fmt.Sprintf(`{"binaryData": %q, "subFolder": "go"}`, base64.StdEncoding.EncodeToString([]byte(fmt.Sprint("go ", i)))))))
		req.Header.Set("Authorization", "Bearer "+devJWT)
		resp := testutil.Must(hc.Do(req))
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "{}" {
			t.Fatalf("net/http publishEvent %d: %d %s", i, resp.StatusCode, body)
		}
	}
	// A request without a token is refused, in Google's error shape.
	resp := testutil.Must(hc.Post(base+"/"+reg.GetName()+"/devices/dev-go:publishEvent", "application/json", strings.NewReader(`{}`)))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !bytes.Contains(body, []byte(`"status":"UNAUTHENTICATED"`)) {
		t.Fatalf("no token: %d %s", resp.StatusCode, body)
	}

	// curl, as a shell script on a device would.
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is not installed (apt-get install curl): %v", err)
	}
	out, err := exec.Command(curl, "-sS", "--fail-with-body", "--cacert", caFile, "-X", "POST",
		"-H", "authorization: Bearer "+devJWT, "-H", "content-type: application/json",
		"-d", `{"state": {"binary_data": "`+base64.StdEncoding.EncodeToString([]byte("curl state"))+`"}}`,
		base+"/"+reg.GetName()+"/devices/dev-curl:setState").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "{}" {
		t.Fatalf("curl setState: %v\n%s", err, out)
	}
	out, err = exec.Command(curl, "-sS", "--fail-with-body", "--cacert", caFile,
		"-H", "authorization: Bearer "+devJWT, base+"/"+reg.GetName()+"/devices/dev-curl/config?local_version=0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"version":"1"`) {
		t.Fatalf("curl getConfig: %v\n%s", err, out)
	}

	// A device written as Google's Python HTTP sample is.
	pyEvents := runPythonDevice(t, key, base, reg.GetId(), "dev-py", caFile, 3)

	// MQTT at QoS 1 next to it, and a refused CONNECT.
	const mqttEvents = 4
	mc := paho.NewClient(paho.NewClientOptions().AddBroker("tls://" + mqttAddr).
		SetClientID(reg.GetName() + "/devices/dev-mqtt").SetUsername("unused").SetPassword(devJWT).
		SetTLSConfig(&tls.Config{RootCAs: roots}).SetProtocolVersion(4).SetAutoReconnect(false))
	if tok := mc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT connect: %v", tok.Error())
	}
	defer mc.Disconnect(0)
	for range mqttEvents {
		if tok := mc.Publish("/devices/dev-mqtt/events", 1, false, []byte("mqtt")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	bad := paho.NewClient(paho.NewClientOptions().AddBroker("tls://" + mqttAddr).
		SetClientID(reg.GetName() + "/devices/dev-mqtt").SetPassword("not-a-jwt").
		SetTLSConfig(&tls.Config{RootCAs: roots}).SetProtocolVersion(4).SetAutoReconnect(false))
	if tok := bad.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		t.Fatal("a CONNECT with a bad JWT was accepted")
	}

	// The counters moved by what was done.
	after := scrape(t, opsAddr)
	diff := func(name string, labels ...string) float64 {
		return metric(after, name, labels...) - metric(before, name, labels...)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"passerelle_bridge_messages_in_total", []string{`kind="event"`}, goEvents + pyEvents + mqttEvents},
		{"passerelle_bridge_messages_in_total", []string{`kind="state"`}, 1},
		{"passerelle_bridge_http_requests_total", []string{`rpc="publishEvent"`, `code="OK"`}, goEvents + pyEvents},
		{"passerelle_bridge_http_requests_total", []string{`rpc="publishEvent"`, `code="UNAUTHENTICATED"`}, 1},
		{"passerelle_bridge_http_requests_total", []string{`rpc="getConfig"`, `code="OK"`}, 2},
		{"passerelle_bridge_http_requests_total", []string{`rpc="setState"`, `code="OK"`}, 1},
		{"passerelle_bridge_connects_refused_total", []string{`reason="jwt"`}, 1},
		{"passerelle_bridge_puback_duration_seconds_count", nil, mqttEvents},
		{"passerelle_bridge_connections", nil, 1},
	} {
		if got := diff(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v moved by %g, want %g", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"passerelle_bridge_http_duration_seconds_bucket", `passerelle_bridge_store_duration_seconds_count{op="get_device"`,
		"passerelle_bus_publish_duration_seconds_count", "go_goroutines", "target_info"} {
		if !strings.Contains(after, name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", after)
	}
}

// runPythonDevice runs testdata/http_device.py (requests + PyJWT, Debian's
// python3-requests and python3-jwt) as device id with key, and returns the
// events it published: 0 when Python cannot run it, outside CI.
func runPythonDevice(t *testing.T, key *ecdsa.PrivateKey, base, registry, id, caFile string, events int) float64 {
	t.Helper()
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import requests, jwt, cryptography").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("%s cannot import requests and PyJWT (apt-get install python3-requests python3-jwt): %v\n%s", python, err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Log("skipping the Python device: " + msg)
		return 0
	}
	der := testutil.Must(x509.MarshalPKCS8PrivateKey(key))
	keyFile := filepath.Join(t.TempDir(), "ec_private.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "testdata/http_device.py", "--base_url", base, "--project_id", "p1",
		"--registry_id", registry, "--device_id", id, "--private_key_file", keyFile, "--algorithm", "ES256",
		"--ca_certs", caFile, "--num_messages", strconv.Itoa(events)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "done") {
		t.Fatalf("the Python device: %v\n%s", err, out)
	}
	t.Logf("the Python device:\n%s", out)
	return float64(events)
}
