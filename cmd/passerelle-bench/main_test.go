package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// allowHook lets every client connect and use every topic.
type allowHook struct{ mqtt.HookBase }

func (*allowHook) ID() string { return "allow" }
func (*allowHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (*allowHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (*allowHook) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }

// plainBroker is an in-process mochi broker that lets anyone in, on a
// free port.
func plainBroker(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(allowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return addr
}

func TestConnectAndTelemetryOnAPlainBroker(t *testing.T) {
	addr := plainBroker(t)
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"connect", "--plain", "--mqtt", addr, "-n", "50", "-c", "8"}, &out, &errOut); code != 0 {
		t.Fatalf("connect: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "connect") || !strings.Contains(out.String(), "failed=0") {
		t.Errorf("connect output %q", out.String())
	}
	out.Reset()
	args := []string{"telemetry", "--plain", "--json", "--mqtt", addr, "-d", "5", "-t", "300ms", "--target-pid", itoa(os.Getpid())}
	if code := run(t.Context(), args, &out, &errOut); code != 0 {
		t.Fatalf("telemetry: exit %d: %s", code, errOut.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("telemetry --json output %q: %v", out.String(), err)
	}
	if acked, _ := m["acked"].(float64); acked < 1 || m["conn_errors"].(float64) != 0 {
		t.Errorf("telemetry result %v", m)
	}
	if _, ok := m["target_cpu_us_per_msg"]; !ok {
		t.Errorf("no CPU figure with --target-pid: %v", m)
	}
}

func TestIdleReadsTargetMemory(t *testing.T) {
	addr := plainBroker(t)
	var out, errOut bytes.Buffer
	args := []string{"idle", "--plain", "--mqtt", addr, "-n", "20", "--settle", "0s", "--target-pid", itoa(os.Getpid())}
	if code := run(t.Context(), args, &out, &errOut); code != 0 {
		t.Fatalf("idle: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "kib_per_conn=") {
		t.Errorf("idle output %q", out.String())
	}
}

func TestCertsAndTLSClientConfig(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"certs", "--out", dir}, &out, &errOut); code != 0 {
		t.Fatalf("certs: exit %d: %s", code, errOut.String())
	}
	if _, err := clientTLS(filepath.Join(dir, "ca.pem"), "127.0.0.1:8883"); err != nil {
		t.Fatal(err)
	}
}

func TestConfigRefusesPlain(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"config", "--plain"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "admin API") {
		t.Errorf("exit %d, %q", code, errOut.String())
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	if p := percentile(xs, 50); p != 5 {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(xs, 99); p != 10 {
		t.Errorf("p99 = %v", p)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
