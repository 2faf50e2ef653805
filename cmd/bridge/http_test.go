package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/devca"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// TestServesHTTPBridgeOpsAndPprof runs the bridge with --http-bridge-addr
// (TLS with --tls-cert), --ops-addr and --pprof: the HTTP bridge answers in
// Google's shape, /metrics counts it, and the profiles are served.
func TestServesHTTPBridgeOpsAndPprof(t *testing.T) {
	dir := t.TempDir()
	files := testutil.Must(devca.Ensure(dir, []string{"127.0.0.1"}))
	httpAddr, opsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var out testutil.SyncBuffer
	go func() {
		done <- run(ctx, []string{"--mqtt-addr", "", "--mqtt-plain-addr", testutil.FreeAddr(t), "--http-bridge-addr", httpAddr,
			"--tls-cert", files.ServerCert, "--tls-key", files.ServerKey, "--ops-addr", opsAddr, "--pprof", "--data-dir", dir}, &out, noEnv)
	}()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(testutil.Must(os.ReadFile(files.CA)))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 10 * time.Second}
	get := func(c *http.Client, url string) (int, string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	testutil.WaitFor(t, 15*time.Second, func() error {
		code, body, err := get(hc, "https://"+httpAddr+"/v1/projects/p1/locations/us-central1/registries/reg1/devices/dev1/config")
		if err != nil || code != 401 || !strings.Contains(body, `"status":"UNAUTHENTICATED"`) {
			return fmt.Errorf("HTTP bridge: %d %s %v\n%s", code, body, err, out.String())
		}
		return nil
	})
	if code, body, err := get(http.DefaultClient, "http://"+opsAddr+"/metrics"); err != nil || code != 200 ||
		!strings.Contains(body, `passerelle_bridge_http_requests_total{code="UNAUTHENTICATED"`) {
		t.Fatalf("/metrics: %d %v\n%s", code, err, body)
	}
	if code, body, err := get(http.DefaultClient, "http://"+opsAddr+"/debug/pprof/"); err != nil || code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/: %d %v %.200s", code, err, body)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
}

func TestPprofNeedsOpsAddr(t *testing.T) {
	var out bytes.Buffer
	code := run(t.Context(), []string{"--mqtt-addr", "", "--mqtt-plain-addr", "127.0.0.1:1883", "--pprof", "--data-dir", t.TempDir(), "--check-config"}, &out, noEnv)
	if code != 2 || !strings.Contains(out.String(), "--pprof") || !strings.Contains(out.String(), "--ops-addr") {
		t.Fatalf("exit %d: %s", code, out.String())
	}
}
