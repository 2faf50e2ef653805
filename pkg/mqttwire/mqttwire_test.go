package mqttwire_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/passerelle-iot/passerelle/pkg/mqttwire"
)

// wire encodes a packet with paho's codec: the bytes a real client sends.
func wire(t testing.TB, p packets.ControlPacket) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func next(t testing.TB, b []byte) (mqttwire.Header, []byte) {
	t.Helper()
	h, body, n, err := mqttwire.Next(b, 0)
	if err != nil || n != len(b) {
		t.Fatalf("Next: n=%d of %d, %v", n, len(b), err)
	}
	return h, body
}

func TestConnectFromPaho(t *testing.T) {
	c := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	c.ProtocolName, c.ProtocolVersion = "MQTT", 4
	c.CleanSession = true
	c.Keepalive = 60
	c.ClientIdentifier = "projects/p/locations/l/registries/r/devices/d"
	c.UsernameFlag, c.Username = true, "unused"
	c.PasswordFlag, c.Password = true, []byte("header.claims.sig")
	h, body := next(t, wire(t, c))
	if h.Type != mqttwire.Connect {
		t.Fatalf("type %d", h.Type)
	}
	var got mqttwire.ConnectPacket
	if err := mqttwire.ParseConnect(body, &got); err != nil {
		t.Fatal(err)
	}
	if string(got.ClientID) != c.ClientIdentifier || string(got.Username) != "unused" || string(got.Password) != "header.claims.sig" ||
		got.KeepAlive != 60 || !got.CleanSession || got.WillFlag {
		t.Fatalf("parsed %+v", got)
	}
}

func TestPublishRoundTrip(t *testing.T) {
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.TopicName, p.Qos, p.MessageID, p.Payload = "/devices/d/events/a", 1, 7, []byte("hello")
	for _, b := range [][]byte{wire(t, p), mqttwire.AppendPublish(nil, p.TopicName, 1, 7, p.Payload)} {
		h, body := next(t, b)
		var got mqttwire.PublishPacket
		if err := mqttwire.ParsePublish(h, body, &got); err != nil {
			t.Fatal(err)
		}
		if string(got.Topic) != p.TopicName || got.QoS != 1 || got.PacketID != 7 || string(got.Payload) != "hello" || got.Retain || got.Dup {
			t.Fatalf("parsed %+v", got)
		}
	}
	// paho reads what the bridge writes.
	out := mqttwire.AppendPublish(nil, "/devices/d/config", 1, 9, bytes.Repeat([]byte("x"), 300))
	cp, err := packets.ReadPacket(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if pp := cp.(*packets.PublishPacket); pp.TopicName != "/devices/d/config" || pp.MessageID != 9 || len(pp.Payload) != 300 {
		t.Fatalf("paho read %v", pp)
	}
}

func TestSubscribeFromPaho(t *testing.T) {
	s := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	s.MessageID = 3
	s.Topics, s.Qoss = []string{"/devices/d/config", "/devices/d/commands/#"}, []byte{1, 0}
	_, body := next(t, wire(t, s))
	pid, fs, err := mqttwire.ParseSubscribe(body)
	if err != nil || pid != 3 {
		t.Fatalf("pid %d: %v", pid, err)
	}
	for i := range s.Topics {
		f, q, ok := fs.Next()
		if !ok || string(f) != s.Topics[i] || q != s.Qoss[i] {
			t.Fatalf("filter %d: %q %d %v", i, f, q, ok)
		}
	}
	if _, _, ok := fs.Next(); ok {
		t.Fatal("a third filter")
	}
	u := packets.NewControlPacket(packets.Unsubscribe).(*packets.UnsubscribePacket)
	u.MessageID, u.Topics = 4, []string{"/devices/d/config"}
	_, body = next(t, wire(t, u))
	pid, fs, err = mqttwire.ParseUnsubscribe(body)
	if f, _, ok := fs.Next(); err != nil || pid != 4 || !ok || string(f) != "/devices/d/config" {
		t.Fatalf("unsubscribe %d %q: %v", pid, f, err)
	}
}

func TestEncodersReadByPaho(t *testing.T) {
	var b []byte
	b = mqttwire.AppendConnack(b, false, mqttwire.RefusedNotAuthorized)
	b = mqttwire.AppendPuback(b, 513)
	b = mqttwire.AppendSuback(b, 2, []byte{1, mqttwire.SubackFailure})
	b = mqttwire.AppendUnsuback(b, 5)
	b = mqttwire.AppendPingresp(b)
	b = mqttwire.AppendPublishDup(b, "/devices/d/config", 7, []byte("v2"))
	r := bytes.NewReader(b)
	want := []string{"CONNACK", "PUBACK", "SUBACK", "UNSUBACK", "PINGRESP", "PUBLISH"}
	for _, w := range want {
		cp, err := packets.ReadPacket(r)
		if err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		switch p := cp.(type) {
		case *packets.ConnackPacket:
			if p.ReturnCode != 5 {
				t.Fatalf("CONNACK code %d", p.ReturnCode)
			}
		case *packets.PubackPacket:
			if p.MessageID != 513 {
				t.Fatalf("PUBACK id %d", p.MessageID)
			}
		case *packets.SubackPacket:
			if p.MessageID != 2 || !bytes.Equal(p.ReturnCodes, []byte{1, 0x80}) {
				t.Fatalf("SUBACK %v", p)
			}
		case *packets.UnsubackPacket:
			if p.MessageID != 5 {
				t.Fatalf("UNSUBACK id %d", p.MessageID)
			}
		case *packets.PingrespPacket:
		case *packets.PublishPacket:
			if !p.Dup || p.Qos != 1 || p.MessageID != 7 || p.TopicName != "/devices/d/config" || string(p.Payload) != "v2" {
				t.Fatalf("PUBLISH sent again: %v", p)
			}
		default:
			t.Fatalf("%s read as %T", w, cp)
		}
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes left", r.Len())
	}
}

// TestNextIncomplete: every prefix of a packet asks for more bytes.
func TestNextIncomplete(t *testing.T) {
	b := mqttwire.AppendPublish(nil, "/devices/d/events", 1, 1, bytes.Repeat([]byte("y"), 200))
	for i := range b {
		if _, _, n, err := mqttwire.Next(b[:i], 0); n != 0 || err != nil {
			t.Fatalf("prefix of %d bytes: n=%d err=%v", i, n, err)
		}
	}
	if _, _, n, err := mqttwire.Next(append(b, 0xC0, 0), 0); n != len(b) || err != nil {
		t.Fatalf("whole packet and more: n=%d err=%v", n, err)
	}
	if _, _, _, err := mqttwire.Next(b, 100); !errors.Is(err, mqttwire.ErrTooLarge) {
		t.Fatalf("over the size limit: %v", err)
	}
	if _, _, _, err := mqttwire.Next(b[:3], 100); !errors.Is(err, mqttwire.ErrTooLarge) {
		t.Fatalf("over the size limit, header only: %v", err)
	}
}

func str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// TestMalformed: each packet breaks one rule of MQTT 3.1.1 and is
// refused with ErrMalformed (or ErrUnsupported).
func TestMalformed(t *testing.T) {
	connect := func(flags byte, rest ...[]byte) []byte {
		return cat(append([][]byte{str("MQTT"), {4, flags, 0, 60}}, rest...)...)
	}
	tests := []struct {
		name  string
		first byte
		body  []byte
		want  error
	}{
		{"reserved type 0", 0x00, nil, mqttwire.ErrMalformed},
		{"reserved type 15", 0xF0, nil, mqttwire.ErrMalformed},
		{"PUBLISH QoS 3", 0x36, cat(str("t"), []byte{0, 1}), mqttwire.ErrMalformed},
		{"SUBSCRIBE flags 0", 0x80, cat([]byte{0, 1}, str("t"), []byte{0}), mqttwire.ErrMalformed},
		{"PINGREQ flags", 0xC1, nil, mqttwire.ErrMalformed},
		{"PINGREQ with a body", 0xC0, []byte{0}, mqttwire.ErrMalformed},
		{"DISCONNECT with a body", 0xE0, []byte{0}, mqttwire.ErrMalformed},
		{"PUBACK short", 0x40, []byte{1}, mqttwire.ErrMalformed},
		{"PUBACK long", 0x40, []byte{0, 1, 2}, mqttwire.ErrMalformed},
		{"PUBACK id 0", 0x40, []byte{0, 0}, mqttwire.ErrMalformed},
		{"PUBLISH empty topic", 0x30, cat(str(""), []byte("x")), mqttwire.ErrMalformed},
		{"PUBLISH wildcard +", 0x30, cat(str("/devices/+/events"), []byte("x")), mqttwire.ErrMalformed},
		{"PUBLISH wildcard #", 0x30, cat(str("/devices/#"), []byte("x")), mqttwire.ErrMalformed},
		{"PUBLISH topic NUL", 0x30, cat(str("a\x00b"), []byte("x")), mqttwire.ErrMalformed},
		{"PUBLISH topic not UTF-8", 0x30, cat(str("a\xffb"), []byte("x")), mqttwire.ErrMalformed},
		{"PUBLISH topic truncated", 0x30, []byte{0, 9, 'a'}, mqttwire.ErrMalformed},
		{"PUBLISH QoS 1 id 0", 0x32, cat(str("t"), []byte{0, 0}), mqttwire.ErrMalformed},
		{"PUBLISH QoS 1 no id", 0x32, str("t"), mqttwire.ErrMalformed},
		{"PUBLISH DUP at QoS 0", 0x38, cat(str("t"), []byte("x")), mqttwire.ErrMalformed},
		{"PUBLISH QoS 2", 0x34, cat(str("t"), []byte{0, 1}), mqttwire.ErrUnsupported},
		{"SUBSCRIBE no filter", 0x82, []byte{0, 1}, mqttwire.ErrMalformed},
		{"SUBSCRIBE id 0", 0x82, cat([]byte{0, 0}, str("t"), []byte{0}), mqttwire.ErrMalformed},
		{"SUBSCRIBE QoS 3", 0x82, cat([]byte{0, 1}, str("t"), []byte{3}), mqttwire.ErrMalformed},
		{"SUBSCRIBE no QoS", 0x82, cat([]byte{0, 1}, str("t")), mqttwire.ErrMalformed},
		{"SUBSCRIBE empty filter", 0x82, cat([]byte{0, 1}, str(""), []byte{0}), mqttwire.ErrMalformed},
		{"UNSUBSCRIBE no filter", 0xA2, []byte{0, 1}, mqttwire.ErrMalformed},
		{"CONNECT MQTT 3.1", 0x10, cat(str("MQIsdp"), []byte{3, 2, 0, 60}, str("c")), mqttwire.ErrUnsupported},
		{"CONNECT MQTT 5", 0x10, cat(str("MQTT"), []byte{5, 2, 0, 60, 0}, str("c")), mqttwire.ErrUnsupported},
		{"CONNECT reserved flag", 0x10, connect(0x03, str("c")), mqttwire.ErrMalformed},
		{"CONNECT will QoS 3", 0x10, connect(0x1E, str("c"), str("w"), str("m")), mqttwire.ErrMalformed},
		{"CONNECT will retain without will", 0x10, connect(0x22, str("c")), mqttwire.ErrMalformed},
		{"CONNECT user missing", 0x10, connect(0x82, str("c")), mqttwire.ErrMalformed},
		{"CONNECT trailing bytes", 0x10, connect(0x02, str("c"), []byte{1}), mqttwire.ErrMalformed},
		{"CONNECT truncated header", 0x10, cat(str("MQTT"), []byte{4, 2}), mqttwire.ErrMalformed},
		{"CONNECT client id not UTF-8", 0x10, connect(0x02, str("\xc3")), mqttwire.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := append([]byte{tt.first, byte(len(tt.body))}, tt.body...)
			if err := parseAll(b); !errors.Is(err, tt.want) {
				t.Fatalf("% x: %v, want %v", b, err, tt.want)
			}
		})
	}
	// A remaining length over 4 bytes.
	if _, _, _, err := mqttwire.Next([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, 0); !errors.Is(err, mqttwire.ErrMalformed) {
		t.Fatalf("5-byte remaining length: %v", err)
	}
}

// parseAll parses one packet the way a bridge reads a client's packets.
func parseAll(b []byte) error {
	h, body, n, err := mqttwire.Next(b, 0)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("incomplete")
	}
	switch h.Type {
	case mqttwire.Connect:
		var c mqttwire.ConnectPacket
		return mqttwire.ParseConnect(body, &c)
	case mqttwire.Publish:
		var p mqttwire.PublishPacket
		return mqttwire.ParsePublish(h, body, &p)
	case mqttwire.Puback:
		_, err := mqttwire.ParsePacketID(body)
		return err
	case mqttwire.Subscribe:
		_, fs, err := mqttwire.ParseSubscribe(body)
		for _, _, ok := fs.Next(); ok; _, _, ok = fs.Next() {
		}
		return err
	case mqttwire.Unsubscribe:
		_, fs, err := mqttwire.ParseUnsubscribe(body)
		for _, _, ok := fs.Next(); ok; _, _, ok = fs.Next() {
		}
		return err
	case mqttwire.Pingreq, mqttwire.Disconnect:
		return mqttwire.ParseEmpty(body)
	}
	return errors.New("not a client packet")
}

// TestNoAllocation: parsing a client's packets allocates nothing, and
// appending to a buffer with room allocates nothing.
func TestNoAllocation(t *testing.T) {
	c := cat([]byte{0x10, 0}, str("MQTT"), []byte{4, 0xC2, 0, 60}, str("projects/p/locations/l/registries/r/devices/d"), str("unused"), str("a.b.c"))
	c[1] = byte(len(c) - 2)
	s := cat([]byte{0x82, 0}, []byte{0, 1}, str("/devices/d/config"), []byte{1}, str("/devices/d/commands/#"), []byte{0})
	s[1] = byte(len(s) - 2)
	in := [][]byte{c, s, mqttwire.AppendPublish(nil, "/devices/d/events", 1, 3, make([]byte, 100)), {0x40, 2, 0, 1}, {0xC0, 0}, {0xE0, 0}}
	out := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		for _, b := range in {
			if err := parseAll(b); err != nil {
				t.Fatal(err)
			}
		}
		o := mqttwire.AppendPuback(out[:0], 1)
		o = mqttwire.AppendPublish(o, "/devices/d/config", 1, 2, in[2])
		o = mqttwire.AppendSuback(o, 1, []byte{1, 0})
		_ = mqttwire.AppendConnack(o, false, 0)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round", allocs)
	}
}

// FuzzParse: no input makes the codec panic or read out of bounds, and a
// PUBLISH it accepts encodes back to a packet that parses to the same.
func FuzzParse(f *testing.F) {
	f.Add([]byte{0x30, 5, 0, 1, 't', 'h', 'i'})
	f.Add(mqttwire.AppendPublish(nil, "/devices/d/events", 1, 3, []byte("x")))
	f.Add(cat([]byte{0x82, 8}, []byte{0, 1}, str("a/b"), []byte{1}))
	f.Add(cat([]byte{0x10, 16}, str("MQTT"), []byte{4, 0xC2, 0, 60}, str("c"), str("u"), str("p"))[:18])
	f.Add([]byte{0xC0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for len(b) > 0 {
			h, body, n, err := mqttwire.Next(b, 1<<20)
			if err != nil || n == 0 {
				return
			}
			if n > len(b) || len(body) != h.Remaining {
				t.Fatalf("n=%d of %d, body %d of %d", n, len(b), len(body), h.Remaining)
			}
			_ = parseAll(b[:n])
			if h.Type == mqttwire.Publish {
				var p mqttwire.PublishPacket
				if mqttwire.ParsePublish(h, body, &p) == nil && !p.Retain && !p.Dup {
					again := mqttwire.AppendPublish(nil, string(p.Topic), p.QoS, p.PacketID, p.Payload)
					if !bytes.Equal(again, b[:n]) && mqttwire.HeaderLen(h.Remaining) == n-h.Remaining {
						t.Fatalf("re-encoded % x, read % x", again, b[:n])
					}
				}
			}
			b = b[n:]
		}
	})
}

func BenchmarkParsePublish(b *testing.B) {
	pk := mqttwire.AppendPublish(nil, "/devices/device-0001/events/telemetry", 1, 42, make([]byte, 100))
	b.ReportAllocs()
	b.SetBytes(int64(len(pk)))
	var p mqttwire.PublishPacket
	for b.Loop() {
		h, body, _, err := mqttwire.Next(pk, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := mqttwire.ParsePublish(h, body, &p); err != nil {
			b.Fatal(err)
		}
	}
}
