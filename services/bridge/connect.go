package bridge

import (
	"errors"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/passerelle-iot/passerelle/pkg/mqttwire"
	"github.com/passerelle-iot/passerelle/pkg/resource"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3), which MQTT 3.1
// shares. A 3.1.1 client knows no other.
const (
	connackBadProtocol        = mqttwire.RefusedProtocolVersion
	connackIdentifierRejected = mqttwire.RefusedIdentifierRejected
	connackServerUnavailable  = mqttwire.RefusedServerUnavailable
	connackNotAuthorized      = mqttwire.RefusedNotAuthorized
)

// connackV5Unsupported is the CONNACK of an MQTT 5 client: its own
// encoding (a properties length after the reason code), reason code 0x84
// (unsupported protocol version), which it understands.
var connackV5Unsupported = []byte{byte(mqttwire.Connack) << 4, 3, 0, 0x84, 0}

// refusal is why the bridge refuses a CONNECT: the reason counted in
// passerelle.bridge.connects.refused, the text logged, and the CONNACK
// return code sent.
type refusal struct {
	why    refuseReason
	reason string // "" when not refused
	code   byte
}

// refuse is a refusal answered "not authorised", as every authentication
// failure is (compat-spec section 6).
func refuse(why refuseReason, reason string) refusal {
	return refusal{why, reason, connackNotAuthorized}
}

// refuseRead is the refusal after a failed store read of what the client
// id names: not authorised when it does not exist (a client learns nothing
// of which registries and devices exist), server unavailable when the
// store did not answer, so that the device tries again rather than doubt
// its credentials.
func refuseRead(why refuseReason, what string, err error) refusal {
	r := refusal{why, what + ": " + err.Error(), connackNotAuthorized}
	if !errors.Is(err, store.ErrNotFound) {
		r.code = connackServerUnavailable
	}
	return r
}

// errConnectViolation ends, without a CONNACK, a CONNECT that breaks the
// protocol (MQTT 3.1.1 section 4.8: close the network connection).
var errConnectViolation = errors.New("the CONNECT violates MQTT 3.1.1")

// connectRequest is what the bridge keeps of a CONNECT.
type connectRequest struct {
	clientID  string
	password  []byte // nil without one; a slice of the packet
	keepAlive uint16 // seconds, as capped by the idle limit
}

// parseConnect reads a CONNECT body. A protocol violation is
// errConnectViolation, answered by closing [MQTT-3.1.2-1, -3, -14, -15];
// a protocol the bridge does not serve (MQTT 3.1, MQTT 5, another level)
// is answered with its CONNACK (v5 its own). What 3.1.1 allows is
// accepted: the will is dropped, whatever it is (devices written for
// other brokers often set one), and an empty password is no password
// (authentication then fails: CONNACK 5).
func (b *Bridge) parseConnect(body []byte) (connectRequest, []byte, error) {
	var pk mqttwire.ConnectPacket
	err := mqttwire.ParseConnect(body, &pk)
	switch {
	case errors.Is(err, mqttwire.ErrUnsupported):
		if name := string(pk.ProtocolName); name != "MQTT" && name != "MQIsdp" {
			return connectRequest{}, nil, errConnectViolation
		}
		if pk.Level == 5 {
			return connectRequest{}, connackV5Unsupported, err
		}
		return connectRequest{}, mqttwire.AppendConnack(nil, false, connackBadProtocol), err
	case err != nil:
		return connectRequest{}, nil, errConnectViolation
	}
	req := connectRequest{clientID: string(pk.ClientID), keepAlive: pk.KeepAlive}
	if pk.PasswordFlag && len(pk.Password) > 0 {
		req.password = pk.Password
	}
	// A connection silent for 1.5 x keep-alive is closed; capping the
	// keep-alive makes that the idle limit.
	limit := uint16(min(max(b.opts.idleTimeout.Seconds()/1.5, 1), 65535))
	if req.keepAlive == 0 || req.keepAlive > limit {
		req.keepAlive = limit
	}
	return req, nil, nil
}

// admit authenticates a CONNECT and registers the connection, or says
// why not (the CONNACK code to send). No persistent sessions: a
// clean_session=0 CONNECT is served as clean.
func (b *Bridge) admit(tc *trackedConn, req connectRequest) (*conn, refusal) {
	_, span := b.tel.start(b.ctx, spanConnect, trace.SpanKindServer)
	var c *conn
	var r refusal
	if b.phase.Load() >= phaseDraining {
		// A device that was mid-handshake when the drain began: it
		// tries again, elsewhere.
		r = refusal{refusedDraining, errDraining.Error(), connackServerUnavailable}
	} else {
		c, r = b.authenticate(tc, req)
	}
	if c != nil {
		b.register(c)
		if r = b.recheckRegistry(c); r.reason != "" {
			b.unregister(c)
			c = nil
		}
	}
	if c == nil {
		b.tel.refuse(r.why)
		if span.IsRecording() {
			span.SetAttributes(attribute.String("mqtt.client_id", req.clientID), attrResult.String(refuseReasonNames[r.why]))
			span.SetStatus(codes.Error, r.reason)
		}
		span.End()
		b.log.Info("bridge: connection refused", "client_id", req.clientID, "remote", tc.RemoteAddr().String(), "reason", r.reason)
		return nil, r
	}
	if span.IsRecording() {
		span.SetAttributes(attrDevice.String(c.self.id), attrRegistry.String(c.registry.ID),
			attribute.Bool("passerelle.is_gateway", c.gateway), attrResult.String("ok"))
	}
	span.End()
	tc.endPending() // no longer counts against the pending limits
	return c, refusal{}
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

func (b *Bridge) authenticate(tc *trackedConn, req connectRequest) (*conn, refusal) {
	name, err := resource.ParseDevice("client_id", req.clientID)
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
	claims, err := b.jwt.Verify(string(req.password), keys, key.Project, now)
	if err != nil {
		b.recordAuthError(dev, err.Error())
		return nil, refuse(refusedJWT, err.Error())
	}
	c := &conn{
		b: b, nc: tc, clientID: req.clientID, registry: key, regGen: regGen,
		gateway:    dev.GatewayType == store.GatewayTypeGateway,
		exp:        claims.ExpiresAt,
		authMethod: dev.GatewayAuthMethod,
		devs:       make(map[string]*devState, 1),
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

// register makes c one of the bridge's connections.
func (b *Bridge) register(c *conn) {
	b.mu.Lock()
	b.conns[c] = struct{}{}
	b.mu.Unlock()
}

func (b *Bridge) unregister(c *conn) {
	b.mu.Lock()
	delete(b.conns, c)
	if b.byID[c.clientID] == c {
		delete(b.byID, c.clientID)
	}
	b.mu.Unlock()
}

// establish runs once the CONNACK is written: the connection takes the
// client id over from an older one on this bridge, which is closed with
// the lastErrorStatus of a takeover, and the device is now served here.
func (c *conn) establish() {
	b := c.b
	b.mu.Lock()
	old := b.byID[c.clientID]
	b.byID[c.clientID] = c
	b.mu.Unlock()
	if old != nil {
		old.closeAt(slog.LevelDebug, codeAlreadyExists, errTakenOver)
	}
	b.addHolder(c.self.ref.NumID, c)
	now := b.opts.now()
	b.fields.touch(c.self.ref, func(f *fieldDelta) { f.heartbeat = later(f.heartbeat, now) })
	c.mu.Lock()
	if !c.done {
		c.established = true
		c.claimPresenceLocked(now)
		b.tel.connections(1)
		c.expTimer = time.AfterFunc(c.exp.Add(b.opts.jwtSkew).Sub(now), func() {
			c.close(codeUnauthenticated, "the JWT expired")
		})
	}
	c.mu.Unlock()
	b.log.Debug("bridge: connected", append(c.logAttrs(), "gateway", c.gateway)...)
}
