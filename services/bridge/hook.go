package bridge

import (
	"bytes"
	"errors"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/passerelle-iot/passerelle/pkg/devicetopic"
	"github.com/passerelle-iot/passerelle/pkg/resource"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// errQoS2 ends a connection that publishes at QoS 2.
var errQoS2 = errors.New("QoS 2 is not supported")

// hook is the bridge's mochi hook. Everything a device may do goes
// through it; mochi's own routing is never used (every publish is
// consumed here and marked ignored), so devices never see each other's
// messages.
type hook struct {
	mqtt.HookBase
	b *Bridge
}

func (h *hook) ID() string { return "passerelle-bridge" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablished, mqtt.OnACLCheck,
		mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnPublish, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnPacketProcessed, mqtt.OnDisconnect, mqtt.OnWill,
	}, []byte{b})
}

// OnConnect enforces MQTT 3.1.1 without sessions or wills, and the idle
// limit, before mochi sets the keep-alive deadline.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if cl.Properties.ProtocolVersion != 4 {
		h.b.tel.refuse(refusedProtocol)
		_ = h.b.srv.SendConnack(cl, packets.ErrUnsupportedProtocolVersion, false, nil)
		return packets.ErrUnsupportedProtocolVersion
	}
	// No persistent sessions: clean_session=0 is served as clean.
	cl.Properties.Clean = true
	// No will messages: a will is dropped, not refused, as devices
	// written for other brokers often set one.
	cl.Properties.Will = mqtt.Will{}
	// mochi closes a connection silent for 1.5 x keep-alive; capping the
	// keep-alive makes that the idle limit.
	limit := uint16(min(max(h.b.opts.idleTimeout.Seconds()/1.5, 1), 65535))
	if cl.State.Keepalive == 0 || cl.State.Keepalive > limit {
		cl.State.Keepalive = limit
	}
	return nil
}

// OnConnectAuthenticate checks the client id and the JWT. On a false
// answer mochi sends a CONNACK refusal, whose return code OnPacketEncode
// sets to the refusal's (see connack.go).
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	b := h.b
	_, span := b.tel.start(b.ctx, spanConnect, trace.SpanKindServer)
	var c *conn
	var r refusal
	if b.phase.Load() >= phaseDraining {
		// A device that was mid-handshake when the drain began: it
		// tries again, elsewhere.
		r = refusal{refusedDraining, errDraining.Error(), connackServerUnavailable}
	} else {
		c, r = b.authenticate(cl, pk)
	}
	if c != nil {
		b.mu.Lock()
		b.byCl[cl] = c
		b.byNet[c.nc] = c
		b.mu.Unlock()
		if r = b.recheckRegistry(c); r.reason != "" {
			b.unregister(c)
			c = nil
		}
	}
	if c == nil {
		b.tel.refuse(r.why)
		if tc, ok := cl.Net.Conn.(*trackedConn); ok {
			tc.connack = r.code
		}
		if span.IsRecording() {
			span.SetAttributes(attribute.String("mqtt.client_id", cl.ID), attrResult.String(refuseReasonNames[r.why]))
			span.SetStatus(codes.Error, r.reason)
		}
		span.End()
		b.log.Info("bridge: connection refused", "client_id", cl.ID, "remote", cl.Net.Remote, "reason", r.reason)
		return false
	}
	if span.IsRecording() {
		span.SetAttributes(attrDevice.String(c.self.id), attrRegistry.String(c.registry.ID),
			attribute.Bool("passerelle.is_gateway", c.gateway), attrResult.String("ok"))
	}
	span.End()
	if tc, ok := cl.Net.Conn.(*trackedConn); ok {
		tc.endPending() // no longer counts against the pending limits
	}
	return true
}

// recheckRegistry closes the race of a registry announcement with a
// CONNECT: an announcement handled after authenticate read the registry but
// before c was registered could not see c, so the registry is read again
// when any announcement came in between. Once c is registered, later
// announcements find it. It returns a refusal when c must be refused.
func (b *Bridge) recheckRegistry(c *conn) refusal {
	if b.regs.generation() == c.regGen {
		return refusal{}
	}
	reg, err := b.registry(c.registry)
	switch {
	case err != nil:
		return refuseRead(refusedRegistry, "registry", err)
	case !mqttEnabled(reg):
		return refuse(refusedMQTTDisabled, errMQTTDisabled)
	}
	return refusal{}
}

func (b *Bridge) unregister(c *conn) {
	b.mu.Lock()
	if b.byCl[c.cl] == c {
		delete(b.byCl, c.cl)
	}
	if b.byNet[c.nc] == c {
		delete(b.byNet, c.nc)
	}
	b.mu.Unlock()
}

func (b *Bridge) authenticate(cl *mqtt.Client, pk packets.Packet) (*conn, refusal) {
	name, err := resource.ParseDevice("client_id", cl.ID)
	if err != nil {
		return nil, refusal{refusedClientID, "bad client id: " + err.Error(), connackIdentifierRejected}
	}
	if _, num := name.NumID(); num {
		return nil, refusal{refusedClientID, "the client id must name the device by its id, not its numeric id", connackIdentifierRejected}
	}
	key := store.RegistryKey{Project: name.Project, Location: name.Location, ID: name.Registry.Registry}
	regGen := b.regs.generation() // before the read: see recheckRegistry
	reg, err := b.registry(key)
	if err != nil {
		return nil, refuseRead(refusedRegistry, "registry", err)
	}
	if !mqttEnabled(reg) {
		return nil, refuse(refusedMQTTDisabled, errMQTTDisabled)
	}
	ctx, cancel := b.storeCtx()
	dev, err := b.st.GetDevice(ctx, store.DeviceRef{Registry: key, ID: name.Device})
	cancel()
	if err != nil {
		return nil, refuseRead(refusedDevice, "device", err)
	}
	if dev.Blocked {
		return nil, refuse(refusedBlocked, "the device is blocked")
	}
	now := b.opts.now()
	keys, ids := b.activeKeys(dev, now)
	claims, err := b.jwt.Verify(string(pk.Connect.Password), keys, key.Project, now)
	if err != nil {
		b.recordAuthError(dev, err.Error())
		return nil, refuse(refusedJWT, err.Error())
	}
	c := &conn{
		b: b, cl: cl, nc: cl.Net.Conn, registry: key, regGen: regGen,
		gateway:     dev.GatewayType == store.GatewayTypeGateway,
		exp:         claims.ExpiresAt,
		authMethod:  dev.GatewayAuthMethod,
		devs:        make(map[string]*devState, 1),
		pids:        make(map[uint16]*devState),
		cmdInflight: make(map[uint16]struct{}),
	}
	for i, k := range keys {
		if k == claims.Key {
			c.cred = ids[i]
		}
	}
	c.self = newDevState(dev.ID, store.DeviceRef{Registry: key, NumID: dev.NumID}, false)
	c.devs[dev.ID] = c.self
	return c, refusal{}
}

func (b *Bridge) recordAuthError(dev *store.Device, msg string) {
	now := b.opts.now()
	b.fields.touch(store.DeviceRef{Registry: dev.Registry, NumID: dev.NumID}, func(f *fieldDelta) {
		f.errTime, f.errStatus = now, &store.Status{Code: codeUnauthenticated, Message: msg}
	})
}

// OnSessionEstablished runs after the CONNACK (and after mochi closed an
// older connection with the same client id): the device is now served
// here.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	c := h.b.connOf(cl)
	if c == nil {
		return
	}
	h.b.addHolder(c.self.ref.NumID, c)
	now := h.b.opts.now()
	h.b.fields.touch(c.self.ref, func(f *fieldDelta) { f.heartbeat = later(f.heartbeat, now) })
	c.mu.Lock()
	if !c.done {
		c.established = true
		c.claimPresenceLocked(now)
		h.b.tel.connections(1)
		c.expTimer = time.AfterFunc(c.exp.Add(h.b.opts.jwtSkew).Sub(now), func() {
			c.close(codeUnauthenticated, "the JWT expired")
		})
	}
	c.mu.Unlock()
	h.b.log.Debug("bridge: connected", append(c.logAttrs(), "gateway", c.gateway)...)
}

// OnWill drops any will (they are not supported).
func (h *hook) OnWill(_ *mqtt.Client, _ mqtt.Will) (mqtt.Will, error) {
	return mqtt.Will{}, errors.New("wills are not supported")
}

// OnPacketRead sees every packet first: it checks a CONNECT before mochi
// does (checkConnect), refreshes the heartbeat, refuses QoS 2 (mochi would
// downgrade it silently), and takes the device's PUBACKs for the bridge's
// own messages.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Connect {
		pk, err := checkConnect(pk)
		if err != nil {
			h.b.tel.refuse(refusedProtocol)
		}
		return pk, err
	}
	c := h.b.connOf(cl)
	if c == nil {
		return pk, nil
	}
	now := h.b.opts.now()
	h.b.fields.touch(c.self.ref, func(f *fieldDelta) { f.heartbeat = later(f.heartbeat, now) })
	if t := pk.FixedHeader.Type; t != packets.Puback && t != packets.Disconnect {
		// Only this goroutine (the connection's reader) uses c.msgs.
		if !c.msgs.take(now, h.b.lim.msgRate, h.b.lim.msgBurst, 1) {
			h.b.tel.rateLimited(kindMessages)
			c.close(codeResourceExhausted, h.b.msgRateMsg)
			return pk, packets.ErrRejectPacket
		}
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.FixedHeader.Qos > 1 {
			// mochi ignores hook errors here except ErrRejectPacket,
			// which ends the read loop.
			c.close(codeInvalidArgument, errQoS2.Error())
			return pk, packets.ErrRejectPacket
		}
	case packets.Puback:
		c.onPuback(pk.PacketID)
	}
	return pk, nil
}

// OnACLCheck lets every publish through to OnPublish, which applies the
// topic rules, and decides subscriptions.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return true
	}
	c := h.b.connOf(cl)
	if c == nil {
		return false
	}
	return c.allowSubscribe(topic)
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

// OnSubscribed records the accepted subscriptions, before mochi writes
// the SUBACK.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	c := h.b.connOf(cl)
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= 0x80 {
			continue
		}
		t, err := devicetopic.Parse(f.Filter)
		if err != nil {
			continue
		}
		qos := int(codes[i])
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
			if d.cmdStop == nil && h.b.bus != nil {
				stop, err := h.b.bus.HandleCommands(d.ref.NumID, c.commandHandler(d))
				if err != nil {
					h.b.log.Warn("bridge: routing commands", append(c.logAttrs(), "target", d.id, "err", err)...)
					continue
				}
				d.cmdStop = stop
			}
		}
	}
}

// OnUnsubscribed ends config delivery and command routing.
func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	c := h.b.connOf(cl)
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range pk.Filters {
		t, err := devicetopic.Parse(f.Filter)
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
}

func (c *conn) unsubscribeConfigLocked(d *devState) {
	d.cfgQoS, d.cfgInitial = -1, false
	if d.cfgPending != nil {
		delete(c.pids, d.cfgPending.pk.PacketID)
		d.cfgPending = nil
	}
}

// OnPacketProcessed runs after mochi answered a packet: configs go out
// after their SUBACK, and misuse closes the connection after the answer.
func (h *hook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	c := h.b.connOf(cl)
	if c == nil {
		return
	}
	if pk.FixedHeader.Type == packets.Subscribe {
		c.sendInitialConfigs()
	}
	c.mu.Lock()
	closeNow := c.closeAfter
	c.mu.Unlock()
	if closeNow {
		c.close(0, "topic rules violated") // the error is already recorded
	}
}

// OnDisconnect releases the connection's state.
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	if c := h.b.connOf(cl); c != nil {
		c.teardown(err)
	}
}
