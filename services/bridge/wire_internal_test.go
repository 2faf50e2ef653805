package bridge

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/mqttwire"
)

// TestWaitHot: a hot wait takes what the device sent in one read, the
// packets come out whole and in order, and a read that ends with an error
// (here the deadline a connection is parked at) gives the buffer back.
func TestWaitHot(t *testing.T) {
	server, device := net.Pipe()
	defer server.Close()
	defer device.Close()
	rd := pktReader{nc: server}

	var burst []byte
	for pid := uint16(1); pid <= 3; pid++ {
		burst = mqttwire.AppendPublish(burst, "/devices/d/events", 1, pid, []byte("event"))
	}
	go func() { _, _ = device.Write(burst) }()
	if err := rd.waitHot(); err != nil {
		t.Fatal(err)
	}
	if rd.w != len(burst) {
		t.Fatalf("one hot read took %d bytes, want the whole burst of %d", rd.w, len(burst))
	}
	for pid := uint16(1); pid <= 3; pid++ {
		h, body, ok, err := rd.next()
		if err != nil || !ok || h.Type != mqttwire.Publish {
			t.Fatalf("packet %d: %v %v %v", pid, h, ok, err)
		}
		var pk mqttwire.PublishPacket
		err = mqttwire.ParsePublish(h, body, &pk)
		if err != nil || pk.PacketID != pid || string(pk.Payload) != "event" {
			t.Fatalf("packet %d: %+v %v", pid, pk, err)
		}
	}
	if _, _, ok, err := rd.next(); ok || err != nil {
		t.Fatalf("a fourth packet: %v %v", ok, err)
	}

	// A packet larger than the small buffers moves the reader to a large
	// one; the next hot wait holds a small one again.
	large := mqttwire.AppendPublish(nil, "/devices/d/events", 1, 4, make([]byte, 16<<10))
	go func() { _, _ = device.Write(large) }()
	if err := rd.waitHot(); err != nil {
		t.Fatal(err)
	}
	if h, body, ok, err := rd.next(); err != nil || !ok || len(body) != len(large)-mqttwire.HeaderLen(h.Remaining) {
		t.Fatalf("the large packet: %v %v %d bytes", ok, err, len(body))
	}
	if cap(*rd.buf) <= bufClasses[0].size {
		t.Fatalf("a %d-byte packet read into a %d-byte buffer", len(large), cap(*rd.buf))
	}
	go func() { _, _ = device.Write(burst[:len(burst)/3]) }()
	if err := rd.waitHot(); err != nil {
		t.Fatal(err)
	}
	if got := cap(*rd.buf); got != bufClasses[0].size {
		t.Fatalf("a hot wait after a large packet holds a %d-byte buffer, want %d", got, bufClasses[0].size)
	}
	if _, _, ok, err := rd.next(); !ok || err != nil {
		t.Fatalf("the packet after the large one: %v %v", ok, err)
	}

	// Silent: the deadline ends the wait, and no buffer is held.
	_ = server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := rd.waitHot(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("waitHot on a silent connection: %v", err)
	}
	if rd.buf != nil || rd.r != 0 || rd.w != 0 {
		t.Fatalf("a buffer is held after the wait failed: %v [%d:%d]", rd.buf != nil, rd.r, rd.w)
	}
}
