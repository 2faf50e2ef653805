package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The load generator speaks MQTT 3.1.1 itself rather than through paho:
// a paho client costs several goroutines, timers and a message store per
// connection, so with 10,000 connections or 20,000+ messages/s on the same
// 2 cores the load generator, not the broker, would be what is measured.
// This client is one net.Conn with buffered I/O and no goroutine of its
// own; each scenario drives it from one goroutine per connection.

// MQTT 3.1.1 packet types (high nibble of the fixed header).
const (
	pktConnect   = 1
	pktConnack   = 2
	pktPublish   = 3
	pktPuback    = 4
	pktSubscribe = 8
	pktSuback    = 9
	pktPingreq   = 12
	pktPingresp  = 13
)

// errRefused is a CONNACK with a non-zero return code.
var errRefused = errors.New("connection refused by the broker")

// mqttConn is one MQTT connection.
type mqttConn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// dialMQTT connects and completes CONNECT/CONNACK within ctx's deadline.
func dialMQTT(ctx context.Context, addr string, tlsConf *tls.Config, clientID, user, pass string, keepAlive uint16) (*mqttConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if tlsConf != nil {
		tc := tls.Client(nc, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		nc = tc
	}
	// Small buffers: at 10,000 connections the client's own memory matters.
	c := &mqttConn{nc: nc, br: bufio.NewReaderSize(nc, 512), bw: bufio.NewWriterSize(nc, 1024)}
	var body []byte
	body = appendString(body, "MQTT")
	body = append(body, 4) // protocol level 3.1.1
	flags := byte(0x02)    // clean session
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	body = append(body, flags)
	body = binary.BigEndian.AppendUint16(body, keepAlive)
	body = appendString(body, clientID)
	if user != "" {
		body = appendString(body, user)
	}
	if pass != "" {
		body = appendString(body, pass)
	}
	c.writePacket(pktConnect<<4, body)
	if err := c.bw.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	typ, b, err := c.readPacket()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("waiting for CONNACK: %w", err)
	}
	if typ>>4 != pktConnack || len(b) < 2 {
		nc.Close()
		return nil, fmt.Errorf("expected CONNACK, got packet type %d", typ>>4)
	}
	if b[1] != 0 {
		nc.Close()
		return nil, fmt.Errorf("%w: return code %d", errRefused, b[1])
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// writePacket buffers one packet; callers Flush.
func (c *mqttConn) writePacket(header byte, body []byte) {
	var hdr [5]byte
	hdr[0] = header
	n := 1
	l := len(body)
	for {
		b := byte(l % 128)
		l /= 128
		if l > 0 {
			b |= 0x80
		}
		hdr[n] = b
		n++
		if l == 0 {
			break
		}
	}
	_, _ = c.bw.Write(hdr[:n])
	_, _ = c.bw.Write(body)
}

// publish buffers a PUBLISH at qos 0 or 1.
func (c *mqttConn) publish(topic string, pid uint16, qos byte, payload []byte) {
	body := make([]byte, 0, 2+len(topic)+2+len(payload))
	body = appendString(body, topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, pid)
	}
	body = append(body, payload...)
	c.writePacket(pktPublish<<4|qos<<1, body)
}

// puback buffers a PUBACK.
func (c *mqttConn) puback(pid uint16) {
	c.writePacket(pktPuback<<4, binary.BigEndian.AppendUint16(nil, pid))
}

// subscribe buffers a SUBSCRIBE of one filter.
func (c *mqttConn) subscribe(pid uint16, filter string, qos byte) {
	body := binary.BigEndian.AppendUint16(nil, pid)
	body = appendString(body, filter)
	body = append(body, qos)
	c.writePacket(pktSubscribe<<4|0x02, body)
}

// pingreq buffers a PINGREQ.
func (c *mqttConn) pingreq() { c.writePacket(pktPingreq<<4, nil) }

func (c *mqttConn) flush() error { return c.bw.Flush() }

// readPacket reads one packet: the fixed header's first byte and the body.
// The body is a fresh slice.
func (c *mqttConn) readPacket() (byte, []byte, error) {
	h, err := c.br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	l, mult := 0, 1
	for i := 0; ; i++ {
		b, err := c.br.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		l += int(b&0x7f) * mult
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("malformed remaining length")
		}
		mult *= 128
	}
	body := make([]byte, l)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return 0, nil, err
	}
	return h, body, nil
}

// parsePublish splits a PUBLISH body into topic, packet id (0 at QoS 0)
// and payload.
func parsePublish(h byte, body []byte) (topic string, pid uint16, payload []byte, err error) {
	if len(body) < 2 {
		return "", 0, nil, errors.New("short PUBLISH")
	}
	tl := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+tl {
		return "", 0, nil, errors.New("short PUBLISH topic")
	}
	topic = string(body[2 : 2+tl])
	rest := body[2+tl:]
	if (h>>1)&3 > 0 {
		if len(rest) < 2 {
			return "", 0, nil, errors.New("short PUBLISH packet id")
		}
		pid = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
	}
	return topic, pid, rest, nil
}

func (c *mqttConn) Close() error { return c.nc.Close() }
