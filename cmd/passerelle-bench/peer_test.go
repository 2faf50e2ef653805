package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer for a goroutine and a test at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// TestNATSMQTTPeer: the durable peer serves MQTT; QoS 1 events are
// acknowledged (after JetStream stored them) and QoS 0 ones counted by
// their PINGRESPs; it stops when its context ends.
func TestNATSMQTTPeer(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	var out, errOut lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"nats-mqtt", "--mqtt", addr, "--store", t.TempDir()}, &out, &errOut) }()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("nats-mqtt: exit %d: %s", code, errOut.String())
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "ready nats-server") {
		if time.Now().After(deadline) {
			t.Fatalf("nats-mqtt not ready: %s %s", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond) // polling for readiness
	}
	for _, qos := range []string{"1", "0"} {
		var res, e bytes.Buffer
		args := []string{"telemetry", "--plain", "--name", "nats", "--json", "--qos", qos, "--mqtt", addr, "-d", "3", "-t", "300ms", "--window", "8", "--label", "q" + qos}
		if code := run(t.Context(), args, &res, &e); code != 0 {
			t.Fatalf("telemetry --qos %s: exit %d: %s", qos, code, e.String())
		}
		var m map[string]any
		if err := json.Unmarshal(res.Bytes(), &m); err != nil {
			t.Fatalf("%q: %v", res.String(), err)
		}
		if m["scenario"] != "q"+qos || m["acked"].(float64) < 1 || m["conn_errors"].(float64) != 0 {
			t.Errorf("telemetry --qos %s: %v", qos, m)
		}
	}
}

func TestIdleAfterRounds(t *testing.T) {
	addr := plainBroker(t)
	var out, errOut bytes.Buffer
	args := []string{"idle", "--plain", "--mqtt", addr, "-n", "20", "--rounds", "2", "--baseline-kib", "1", "--settle", "0s", "--target-pid", itoa(os.Getpid())}
	if code := run(t.Context(), args, &out, &errOut); code != 0 {
		t.Fatalf("idle: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "rounds=2 churn_failed=0") || !strings.Contains(out.String(), "rss_before_kib=1 ") {
		t.Errorf("idle output %q", out.String())
	}
}

func TestReport(t *testing.T) {
	dir := t.TempDir()
	lines := `# cpu busy 1% before the run
qos1-100B-1000 passerelle devices=1000 msgs_per_s=30000 target_cpu_us_per_msg=40
qos1-100B-1000 mosquitto devices=1000 msgs_per_s=60000 target_cpu_us_per_msg=10
qos1-100B-1000 nats devices=1000 msgs_per_s=45000 target_cpu_us_per_msg=20
idle-tls-100 passerelle/tls connections=100 kib_per_conn=8
idle-tls-100 passerelle/tls connections=100 kib_per_conn=12
idle-tls-100 passerelle/tls connections=100 kib_per_conn=10
idle-tls-100 mosquitto/tls connections=100 kib_per_conn=5
config-500 passerelle p99_ms=3.5 rpc_p99_ms=12
`
	f := dir + "/results.txt"
	if err := os.WriteFile(f, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"report", f}, &out, &errOut); code != 0 {
		t.Fatalf("report: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"| figure | measure | passerelle | mosquitto | nats | passerelle/mosquitto | passerelle/nats |",
		"| qos1-100B-1000 | msg/s | 30000 | 60000 | 45000 | 0.50x | 0.67x |",
		"| qos1-100B-1000 | broker CPU us per msg (lower is better) | 40 | 10 | 20 | 4.00x | 2.00x |",
		"| idle-tls-100 | KiB per connection (lower is better) | 10 (8-12) | 5 |  | 2.00x |  |",
		"| config-500 | delivery p99 ms, from the call's return (lower is better) | 3.50 |  |  |  |  |",
		"| config-500 | admin call p99 ms (lower is better) | 12 |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
