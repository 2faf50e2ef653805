package bridge

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/devicetopic"
	"github.com/passerelle-iot/passerelle/pkg/mqttwire"
)

// errQoS2 ends a connection that publishes at QoS 2.
var errQoS2 = errors.New("QoS 2 is not supported")

var (
	errNotConnect = errors.New("the first packet is not a CONNECT")
	errClosed     = errors.New("the connection is closed")
	errEnded      = errors.New("the bridge ended the connection")
)

// connackAccepted is the CONNACK of an accepted CONNECT: no session is
// ever present.
var connackAccepted = mqttwire.AppendConnack(nil, false, mqttwire.Accepted)

// serveConn runs one accepted connection, on its own goroutine, from the
// CONNECT (under the connect deadline the listener set) to its end. It
// returns why the connection ended; nil when the device disconnected; or
// errParked when the device went silent and the connection now waits
// in the listener's parker, which calls serveConn again, on a new
// goroutine, to resume it.
//
// Everything a device may do goes through here: there is no routing
// between clients, no retained message and no session, so devices never
// see each other's messages.
func (b *Bridge) serveConn(tc *trackedConn) error {
	c := tc.c
	if c == nil {
		var err error
		if c, err = b.connect(tc, &tc.rd); c == nil {
			tc.rd.release()
			return err
		}
		tc.c = c
	}
	err := c.run(&tc.rd)
	if errors.Is(err, errParked) {
		return err
	}
	tc.rd.release()
	c.teardown(err)
	return err
}

// errParked is serveConn's when the connection's goroutine handed it to
// the parker and ended.
var errParked = errors.New("the connection is parked")

// connect reads the CONNECT and answers it, returning the connection
// established, or nil and why not.
//
//go:noinline
func (b *Bridge) connect(tc *trackedConn, rd *pktReader) (*conn, error) {
	if err := rd.wait(); err != nil {
		return nil, err
	}
	h, body, ok, err := rd.next()
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, io.ErrUnexpectedEOF
	case h.Type != mqttwire.Connect:
		return nil, errNotConnect
	}
	req, answer, err := b.parseConnect(body)
	if err != nil {
		b.tel.refuse(refusedProtocol)
		if answer != nil {
			_, _ = tc.Write(answer)
		}
		return nil, err
	}
	c, r := b.admit(tc, req)
	if c == nil {
		_, _ = tc.Write(mqttwire.AppendConnack(nil, false, r.code))
		return nil, errors.New(r.reason)
	}
	// Established before the CONNACK: once a device reads it, a second
	// connection with its client id takes this one over, never the
	// other way round.
	c.establish()
	if err := c.write(connackAccepted); err != nil {
		c.teardown(err)
		return nil, err
	}
	c.idle = time.Duration(req.keepAlive) * 1500 * time.Millisecond
	return c, nil
}

// run reads and handles the device's packets until the connection ends,
// or until it is parked. Its loop is the bottom of the connection's stack
// while the device is silent, so what it calls to handle packets is kept
// out of its frame.
func (c *conn) run(rd *pktReader) error {
	if c.resumed {
		// Back from the parker: the keep-alive runs from before (the
		// parker also resumes a connection whose keep-alive ran out).
		c.resumed = false
		c.untilExpiry()
	} else {
		c.keepAlive(time.Now())
	}
	for {
		var err error
		if c.hot {
			err = rd.waitHot()
		} else {
			err = rd.wait()
		}
		if err != nil {
			c.hot = false // its buffer is given back; the next wait holds none
			if !c.idleTimeout(err) {
				return c.readFailed(err)
			}
			// Silent for parkAfter, and within its keep-alive.
			c.resumed = true // before park: once parked, another goroutine may resume
			if c.nc.parker.park(c.nc, c.expiry) {
				return errParked
			}
			c.resumed = false
			c.untilExpiry() // wait here instead
			continue
		}
		if err := c.handleBuffered(rd); err != nil {
			if errors.Is(err, errDisconnect) {
				return nil
			}
			return err
		}
		now := time.Now()
		c.hot = c.nc.plain && now.Sub(c.lastBurst) < hotGap
		c.lastBurst = now
		c.keepAlive(now)
	}
}

// hotGap is how close together a plain connection's bursts of packets
// come for its reader to wait with a buffer (waitHot), sparing the
// one-byte read's second system call per burst: a device streaming ten
// events a second or more, not one sending now and then. Such a device
// holds a 4 KiB buffer while it streams, and until it is parked.
const hotGap = 100 * time.Millisecond

// keepAlive moves the read deadline after a packet: the keep-alive
// expires one and a half keep-alive periods after it (MQTT 3.1.1 section
// 3.1.2.10), and a parkable connection times out parkAfter after it, to
// be parked. It is refreshed at most every second: setting it costs a
// timer update.
func (c *conn) keepAlive(now time.Time) {
	if now.Sub(c.set) < min(time.Second, c.idle/4) {
		return
	}
	c.set, c.expiry = now, now.Add(c.idle)
	d := c.expiry
	if after := c.b.opts.parkAfter; c.nc.raw != nil && after > 0 && after < c.idle {
		d = now.Add(after)
	}
	c.nc.keepAliveDeadline(d, c.expiry)
}

// untilExpiry moves the read deadline to the end of the keep-alive, and
// has the next packet set it again.
func (c *conn) untilExpiry() {
	c.nc.keepAliveDeadline(c.expiry, c.expiry)
	c.set = time.Time{}
}

// idleTimeout reports whether err is the read deadline of a connection
// silent for parkAfter rather than the end of its keep-alive.
func (c *conn) idleTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(c.expiry)
}

// handleBuffered handles the packets read, and those whose beginning was
// read, until every byte read is handled.
//
//go:noinline
func (c *conn) handleBuffered(rd *pktReader) error {
	for {
		h, body, ok, err := rd.next()
		if err != nil {
			if c.idleTimeout(err) {
				// A packet arriving slowly: it has until the keep-alive.
				c.untilExpiry()
				continue
			}
			return c.readFailed(err)
		}
		if !ok {
			return nil
		}
		if err := c.handle(h, body); err != nil {
			return err
		}
		c.mu.Lock()
		closeNow := c.closeAfter
		c.mu.Unlock()
		if closeNow {
			c.close(0, "topic rules violated") // the error is already recorded
			return errEnded
		}
	}
}

// errDisconnect is the device's DISCONNECT.
var errDisconnect = errors.New("the device disconnected")

// readFailed records why a read ended the connection, when the device
// can learn from it (a packet it got wrong).
func (c *conn) readFailed(err error) error {
	switch {
	case errors.Is(err, mqttwire.ErrTooLarge):
		c.close(codeInvalidArgument, fmt.Sprintf("a packet larger than %d bytes", maxPacket))
	case errors.Is(err, mqttwire.ErrMalformed):
		c.close(codeInvalidArgument, "a malformed MQTT packet: "+err.Error())
	}
	return err
}

// violation ends the connection for a packet that breaks MQTT 3.1.1.
func (c *conn) violation(err error) error {
	c.close(codeInvalidArgument, "a malformed MQTT packet: "+err.Error())
	return err
}

// handle handles one packet of an established connection.
func (c *conn) handle(h mqttwire.Header, body []byte) error {
	b := c.b
	now := b.opts.now()
	b.fields.touch(c.self.ref, func(f *fieldDelta) { f.heartbeat = later(f.heartbeat, now) })
	if h.Type != mqttwire.Puback && h.Type != mqttwire.Disconnect {
		// Only this goroutine (the connection's reader) uses c.msgs.
		if !c.msgs.take(now, b.lim.msgRate, b.lim.msgBurst, 1) {
			b.tel.rateLimited(kindMessages)
			c.close(codeResourceExhausted, b.msgRateMsg)
			return errEnded
		}
	}
	switch h.Type {
	case mqttwire.Publish:
		return c.onPublish(h, body)
	case mqttwire.Puback:
		pid, err := mqttwire.ParsePacketID(body)
		if err != nil {
			return c.violation(err)
		}
		c.onPuback(pid)
	case mqttwire.Subscribe:
		return c.onSubscribe(body)
	case mqttwire.Unsubscribe:
		return c.onUnsubscribe(body)
	case mqttwire.Pingreq:
		if err := mqttwire.ParseEmpty(body); err != nil {
			return c.violation(err)
		}
		return c.write(pingresp)
	case mqttwire.Disconnect:
		return errDisconnect
	default:
		// A second CONNECT [MQTT-3.1.0-2], a server's packet, or QoS 2's
		// PUBREC, PUBREL and PUBCOMP, which the bridge never asks for.
		return c.violation(fmt.Errorf("%w: unexpected packet of type %d", mqttwire.ErrMalformed, h.Type))
	}
	return nil
}

var pingresp = mqttwire.AppendPingresp(nil)

// onPublish handles a PUBLISH: at QoS 0 it is forwarded (or refused); at
// QoS 1 it is answered by the connection's PUBACK queue (pubacks), in
// order, once it is handled (an event: once the stream holds it), and
// nothing answers a refused one.
func (c *conn) onPublish(h mqttwire.Header, body []byte) error {
	var p mqttwire.PublishPacket
	if err := mqttwire.ParsePublish(h, body, &p); err != nil {
		if errors.Is(err, mqttwire.ErrUnsupported) {
			c.close(codeInvalidArgument, errQoS2.Error())
			return errEnded
		}
		return c.violation(err)
	}
	pk := publish{Topic: string(p.Topic), Payload: p.Payload, QoS: p.QoS, PacketID: p.PacketID, Retain: p.Retain}
	if pk.QoS == 0 {
		c.handlePublish(pk, 0)
		return nil
	}
	q := c.acks()
	seq, ok := q.reserve(pk.PacketID)
	if !ok {
		return nil // the queue failed, or the bridge stops: the connection is closing
	}
	if a := c.handlePublish(pk, seq); a != answerPending {
		q.ready(seq, a, true)
	}
	return nil
}

// publish is a device's PUBLISH. Payload is a slice of the read buffer,
// valid while the packet is handled: what outlives it is a copy.
type publish struct {
	Topic    string
	Payload  []byte
	QoS      byte
	PacketID uint16
	Retain   bool
}

// onSubscribe answers a SUBSCRIBE: each filter is granted (at QoS 1 at
// most) or refused (0x80), the accepted ones are recorded before the
// SUBACK, and the latest configs of the devices that subscribed to theirs
// go out after it.
func (c *conn) onSubscribe(body []byte) error {
	pid, filters, err := mqttwire.ParseSubscribe(body)
	if err != nil {
		return c.violation(err)
	}
	var codesBuf [8]byte
	codes := codesBuf[:0]
	list := filters
	for f, qos, ok := list.Next(); ok; f, qos, ok = list.Next() {
		code := mqttwire.SubackFailure
		if c.allowSubscribe(string(f)) {
			code = min(qos, 1)
		}
		codes = append(codes, code)
	}
	c.subscribed(filters, codes)
	var out [16]byte
	if err := c.write(mqttwire.AppendSuback(out[:0], pid, codes)); err != nil {
		return err
	}
	c.sendInitialConfigs()
	return nil
}

func (c *conn) allowSubscribe(filter string) bool {
	t, err := devicetopic.Parse(filter)
	if err != nil || t.Kind.Publishable() {
		c.misuse("subscription to " + filter + " is not allowed")
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Kind == devicetopic.Errors {
		if !c.gateway || t.DeviceID != c.self.id {
			c.misuseLocked("subscription to " + filter + " is not allowed")
			return false
		}
		return true
	}
	if c.devs[t.DeviceID] == nil {
		if c.gateway {
			c.gatewayErrorLocked(gwDeviceNotFound, "the device is not attached to this gateway", t.DeviceID, "SUBSCRIBE", filter, 0)
			return false
		}
		c.misuseLocked("subscription to another device's topic " + filter)
		return false
	}
	return true
}

// misuse marks the connection to be closed once the current packet is
// answered (so that a refused SUBSCRIBE still gets its SUBACK 0x80).
func (c *conn) misuse(msg string) {
	c.mu.Lock()
	c.misuseLocked(msg)
	c.mu.Unlock()
}

func (c *conn) misuseLocked(msg string) {
	if !c.closeAfter {
		c.closeAfter = true
		c.recordError(c.self, codePermissionDenied, msg)
	}
}

// subscribed records the accepted subscriptions: config delivery and
// command routing.
func (c *conn) subscribed(filters mqttwire.Filters, codes []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := 0
	for f, _, ok := filters.Next(); ok; f, _, ok = filters.Next() {
		code := codes[i]
		i++
		if code >= 0x80 {
			continue
		}
		t, err := devicetopic.Parse(string(f))
		if err != nil {
			continue
		}
		qos := int(code)
		switch t.Kind {
		case devicetopic.Errors:
			c.errorsSub = true
		case devicetopic.Config:
			if d := c.devs[t.DeviceID]; d != nil {
				d.cfgQoS, d.cfgInitial = qos, true
				c.initial = append(c.initial, d)
			}
		case devicetopic.Commands:
			d := c.devs[t.DeviceID]
			if d == nil {
				continue
			}
			d.cmdQoS = qos
			if d.cmdStop == nil && c.b.bus != nil {
				stop, err := c.b.bus.HandleCommands(d.ref.NumID, c.commandHandler(d))
				if err != nil {
					c.b.log.Warn("bridge: routing commands", append(c.logAttrs(), "target", d.id, "err", err)...)
					continue
				}
				d.cmdStop = stop
			}
		}
	}
}

// onUnsubscribe ends config delivery and command routing, and answers
// with an UNSUBACK.
func (c *conn) onUnsubscribe(body []byte) error {
	pid, filters, err := mqttwire.ParseUnsubscribe(body)
	if err != nil {
		return c.violation(err)
	}
	c.mu.Lock()
	for f, _, ok := filters.Next(); ok; f, _, ok = filters.Next() {
		t, err := devicetopic.Parse(string(f))
		if err != nil {
			continue
		}
		d := c.devs[t.DeviceID]
		switch {
		case t.Kind == devicetopic.Errors:
			c.errorsSub = false
		case d == nil:
		case t.Kind == devicetopic.Config:
			c.unsubscribeConfigLocked(d)
		case t.Kind == devicetopic.Commands:
			d.cmdQoS = -1
			if d.cmdStop != nil {
				d.cmdStop()
				d.cmdStop = nil
			}
		}
	}
	c.mu.Unlock()
	var out [4]byte
	return c.write(mqttwire.AppendUnsuback(out[:0], pid))
}

func (c *conn) unsubscribeConfigLocked(d *devState) {
	d.cfgQoS, d.cfgInitial = -1, false
	if d.cfgPending != nil {
		delete(c.pids, d.cfgPending.pid)
		d.cfgPending = nil
	}
}

// write writes whole packets in one write, in turn with the connection's
// other writers (the reader, PUBACK flushers, config and command
// deliveries). The connection's trackedConn bounds it by the write
// timeout; a failed write closes the connection.
func (c *conn) write(p []byte) error {
	if c.stopped.Load() {
		return errClosed
	}
	c.wmu.Lock()
	_, err := c.nc.Write(p)
	c.wmu.Unlock()
	if err != nil {
		c.close(0, "writing to the device failed: "+err.Error())
	}
	return err
}

// writePublish writes a PUBLISH from the bridge (a config, a command, a
// gateway error) at qos, encoded in a pooled buffer; dup marks a QoS 1
// PUBLISH sent again.
func (c *conn) writePublish(topic string, qos byte, pid uint16, payload []byte, dup bool) error {
	bp := getBuf(len(topic) + len(payload) + 9)
	var pk []byte
	if dup {
		pk = mqttwire.AppendPublishDup((*bp)[:0], topic, pid, payload)
	} else {
		pk = mqttwire.AppendPublish((*bp)[:0], topic, qos, pid, payload)
	}
	err := c.write(pk)
	putBuf(bp)
	return err
}

// stop closes the socket, once: the reader's next read fails and the
// connection is torn down.
func (c *conn) stop() {
	if c.stopped.CompareAndSwap(false, true) {
		_ = c.nc.Close()
	}
}
