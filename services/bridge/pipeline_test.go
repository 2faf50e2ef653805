package bridge_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/mqttwire"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// TestPipelinedQoS1: a device that sends many QoS 1 events without
// waiting (and a state among them) gets one PUBACK for each, in the order
// of its PUBLISHes (MQTT 3.1.1 section 4.6), while several are in flight
// to the stream; every event PUBACKed is in the stream, in order.
func TestPipelinedQoS1(t *testing.T) {
	keys(t)
	e := newEnv(t, bridge.WithMessageRate(0, 0), bridge.WithByteRate(0), bridge.WithEventsInFlight(8))
	e.createDevice("pipelined", ecKey, nil)

	tcp, err := net.DialTimeout("tcp", e.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.tls.Clone()
	cfg.ServerName = "127.0.0.1"
	conn, err := rawHandshake(tls.Client(tcp, cfg), clientID("pipelined"), ecKey.jwt(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	const n = 300
	const statePID = 150
	var out []byte
	for pid := uint16(1); pid <= n; pid++ {
		topic, payload := "/devices/pipelined/events", fmt.Sprintf("event-%d", pid)
		if pid == statePID {
			topic, payload = "/devices/pipelined/state", "state"
		}
		out = appendPublishQoS1(out, pid, topic, payload)
	}
	// The PUBACKs are read while the PUBLISHes are written: the bridge
	// stops reading once 8 are in flight, until their PUBACKs are out.
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(out)
		werr <- err
	}()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	acks := make([]byte, 4*n)
	if _, err := io.ReadFull(conn, acks); err != nil {
		t.Fatalf("reading %d PUBACKs: %v", n, err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	for i := range n {
		a := acks[4*i : 4*i+4]
		if pid := uint16(i + 1); a[0] != 0x40 || a[1] != 2 || uint16(a[2])<<8|uint16(a[3]) != pid {
			t.Fatalf("PUBACK %d is % x, want 40 02 for packet id %d", i, a, pid)
		}
	}

	// Every acknowledged event is in the stream, in the order sent.
	want := 1
	for _, got := range e.storedEvents(t, n-1) { // one of the n is a state
		if want == statePID {
			want++
		}
		if string(got) != fmt.Sprintf("event-%d", want) {
			t.Fatalf("stream message %q, want event-%d", got, want)
		}
		want++
	}
}

// appendPublishQoS1 appends an MQTT 3.1.1 PUBLISH at QoS 1.
func appendPublishQoS1(b []byte, pid uint16, topic, payload string) []byte {
	return mqttwire.AppendPublish(b, topic, 1, pid, []byte(payload))
}
