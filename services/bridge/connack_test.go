package bridge_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// connectPacket is an MQTT CONNECT, encoded by bytes.
type connectPacket struct {
	name      string // protocol name; "" is "MQTT"
	level     byte
	flags     byte // connect flags, as sent
	clientID  string
	will      *[2]string // will topic and message, when the will flag is set
	user      *string    // present when the user name flag is set and this is not nil
	password  *string    // present when the password flag is set and this is not nil
	v5        bool       // add the (empty) properties of MQTT 5
	keepAlive uint16     // seconds; 0 is 60
}

func ptr(s string) *string { return &s }

func (p connectPacket) encode() []byte {
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	name := p.name
	if name == "" {
		name = "MQTT"
	}
	body := str(nil, name)
	ka := p.keepAlive
	if ka == 0 {
		ka = 60
	}
	body = append(body, p.level, p.flags, byte(ka>>8), byte(ka))
	if p.v5 {
		body = append(body, 0) // no properties
	}
	body = str(body, p.clientID)
	if p.will != nil {
		if p.v5 {
			body = append(body, 0)
		}
		body = str(str(body, p.will[0]), p.will[1])
	}
	if p.user != nil {
		body = str(body, *p.user)
	}
	if p.password != nil {
		body = str(body, *p.password)
	}
	pkt := []byte{0x10}
	for l := len(body); ; {
		b := byte(l % 128)
		l /= 128
		if l > 0 {
			b |= 0x80
		}
		pkt = append(pkt, b)
		if l == 0 {
			break
		}
	}
	return append(pkt, body...)
}

// noConnack is the answer of a CONNECT that is closed without a CONNACK.
const noConnack = -1

// connackCode sends p on a connection of its own and returns the CONNACK's
// return code (reason code in MQTT 5), or noConnack when the bridge closes
// the connection without one.
func (e *env) connackCode(t *testing.T, p connectPacket) int {
	t.Helper()
	conn, err := tls.Dial("tcp", e.addr, e.tls)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(p.encode()); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 2)
	if _, err := io.ReadFull(conn, head); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return noConnack
		}
		t.Fatalf("reading the CONNACK: %v", err)
	}
	if head[0] != 0x20 {
		t.Fatalf("first packet % x, want a CONNACK", head)
	}
	body := make([]byte, head[1])
	if _, err := io.ReadFull(conn, body); err != nil || len(body) < 2 {
		t.Fatalf("CONNACK body % x: %v", body, err)
	}
	if !p.v5 && len(body) != 2 {
		t.Errorf("CONNACK to an MQTT %d client has %d bytes of body, want 2", p.level, len(body))
	}
	return int(body[1])
}

// TestConnackCodes sends CONNECT packets and checks the CONNACK: a client
// that speaks MQTT 3.1.1 (or 3.1) only ever gets a 3.1.1 return code (0 to
// 5), or, for a CONNECT 3.1.1 says to close the connection for, no CONNACK
// at all. The comments give what the bridge answered before.
func TestConnackCodes(t *testing.T) {
	keys(t)
	e := newEnv(t)
	e.createDevice("dev-1", ecKey, nil)
	jwt := ecKey.jwt(t)
	const (
		userPass  = 0xC2 // user name, password, clean session
		userOnly  = 0x82
		noSession = 0xC0 // user name, password, no clean session
	)
	id := clientID("dev-1")
	for _, tc := range []struct {
		name string
		p    connectPacket
		want int
	}{
		{"3.1.1 accepted", connectPacket{level: 4, flags: userPass, clientID: id, user: ptr("unused"), password: &jwt}, 0},
		{"3.1.1 password flag and an empty password", connectPacket{level: 4, flags: userPass, clientID: id, user: ptr("unused"), password: ptr("")}, 5}, // was 0x82
		{"3.1.1 no password", connectPacket{level: 4, flags: userOnly, clientID: id, user: ptr("unused")}, 5},
		{"3.1.1 password without a user name", connectPacket{level: 4, flags: 0x42, clientID: id, password: &jwt}, 0},
		{"3.1.1 a JWT that is not one", connectPacket{level: 4, flags: userPass, clientID: id, user: ptr("unused"), password: ptr("not-a-jwt")}, 5},
		{"3.1.1 unknown device", connectPacket{level: 4, flags: userPass, clientID: clientID("nobody"), user: ptr("unused"), password: &jwt}, 5},
		{"3.1.1 client id not a device name", connectPacket{level: 4, flags: userPass, clientID: "dev-1", user: ptr("unused"), password: &jwt}, 2},   // was 5
		{"3.1.1 empty client id, clean session", connectPacket{level: 4, flags: userPass, clientID: "", user: ptr("unused"), password: &jwt}, 2},     // was 5
		{"3.1.1 empty client id, no clean session", connectPacket{level: 4, flags: noSession, clientID: "", user: ptr("unused"), password: &jwt}, 2}, // was 0x80
		{"3.1 (MQIsdp, level 3)", connectPacket{name: "MQIsdp", level: 3, flags: userPass, clientID: id, user: ptr("unused"), password: &jwt}, 1},
		{"MQTT at level 3", connectPacket{level: 3, flags: userPass, clientID: id, user: ptr("unused"), password: &jwt}, 1}, // was 0x82
		{"MQTT at level 6", connectPacket{level: 6, flags: userPass, clientID: id, user: ptr("unused"), password: &jwt}, 1}, // was 0x82
		{"MQTT 5: its own reason code", connectPacket{level: 5, flags: userPass, clientID: id, user: ptr("unused"), password: &jwt, v5: true}, 0x84},
		// Wills are dropped, whatever they are.
		{"3.1.1 retained will", connectPacket{level: 4, flags: userPass | 0x24, clientID: id, will: &[2]string{"/w", "gone"}, user: ptr("unused"), password: &jwt}, 0},          // was 0x9A
		{"3.1.1 will at QoS 2", connectPacket{level: 4, flags: userPass | 0x14, clientID: id, will: &[2]string{"/w", "gone"}, user: ptr("unused"), password: &jwt}, 0},          // was 0x9B
		{"3.1.1 will with an empty message", connectPacket{level: 4, flags: userPass | 0x04, clientID: id, will: &[2]string{"/w", ""}, user: ptr("unused"), password: &jwt}, 0}, // was 0x82
		{"3.1.1 will QoS without a will", connectPacket{level: 4, flags: userPass | 0x08, clientID: id, user: ptr("unused"), password: &jwt}, 0},
		// Protocol violations: closed without a CONNACK (3.1.1 section 4.8).
		{"reserved flag set", connectPacket{level: 4, flags: userPass | 0x01, clientID: id, user: ptr("unused"), password: &jwt}, noConnack},                       // was 0x82
		{"unknown protocol name", connectPacket{name: "MQTX", level: 4, flags: userPass, clientID: id, user: ptr("unused"), password: &jwt}, noConnack},            // was 0x82
		{"will retain without a will", connectPacket{level: 4, flags: userPass | 0x20, clientID: id, user: ptr("unused"), password: &jwt}, noConnack},              // was 0x82
		{"will QoS 3", connectPacket{level: 4, flags: userPass | 0x1C, clientID: id, will: &[2]string{"/w", "x"}, user: ptr("unused"), password: &jwt}, noConnack}, // was 0x82
		{"user name flag without a user name", connectPacket{level: 4, flags: userOnly, clientID: id}, noConnack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := e.connackCode(t, tc.p); got != tc.want {
				t.Fatalf("CONNACK %#x, want %#x (%d: no CONNACK)", got, tc.want, noConnack)
			}
		})
	}
}

// failingRegistries is a store that cannot read registries.
type failingRegistries struct{ store.Store }

func (failingRegistries) GetRegistry(context.Context, store.RegistryKey) (*store.Registry, error) {
	return nil, errors.New("the database is down")
}

// TestConnackServerUnavailable: when the store cannot answer, a device is
// told to come back (3), not that its credentials are wrong (5).
func TestConnackServerUnavailable(t *testing.T) {
	keys(t)
	e := newEnvWrapped(t, func(st store.Store) store.Store { return failingRegistries{st} })
	e.createDevice("dev-1", ecKey, nil)
	jwt := ecKey.jwt(t)
	p := connectPacket{level: 4, flags: 0xC2, clientID: clientID("dev-1"), user: ptr("unused"), password: &jwt}
	if got := e.connackCode(t, p); got != 3 {
		t.Fatalf("CONNACK %#x, want 3 (server unavailable)", got)
	}
	testutil.Must(e.st.GetDevice(context.Background(), store.DeviceRef{Registry: regKey, ID: "dev-1"})) // the env's own store works
}
