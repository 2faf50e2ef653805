package bridge

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
	"github.com/passerelle-iot/passerelle/pkg/devicetopic"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// Limits of compat-spec section 6.
const (
	maxEventBytes = 256 << 10
	maxStateBytes = 64 << 10
)

// devState is one device served on a connection: the connected device
// itself, or a device attached to a gateway connection.
type devState struct {
	id      string
	ref     store.DeviceRef // Registry and NumID
	proxied bool            // attached through the connection's gateway

	cfgQoS     int // -1: not subscribed to config
	cfgSent    int64
	cfgPending *pendingCfg // QoS 1 config waiting for its PUBACK
	cfgInitial bool        // send the latest config after the SUBACK

	cmdQoS  int // -1: not subscribed to commands
	cmdStop func()

	lastState time.Time
	in        bucket // incoming bytes; the connection's reader only
	out       bucket // outgoing bytes; under conn.mu
}

type pendingCfg struct {
	version int64
	pid     uint16
	topic   string
	data    []byte
	sentAt  time.Time
}

// credID names a credential without depending on the key cache's
// pointers, which change when the cache evicts, and without holding its
// PEM text for the life of the connection: by its format and the first
// 16 bytes of the SHA-256 of its key.
type credID struct {
	format int32
	sum    [16]byte
}

func newCredID(format int32, key string) credID {
	sum := sha256.Sum256([]byte(key))
	return credID{format: format, sum: [16]byte(sum[:16])}
}

// conn is the bridge's state for one authenticated MQTT connection.
type conn struct {
	b        *Bridge
	nc       *trackedConn
	clientID string
	registry store.RegistryKey
	regGen   uint64 // the registry cache's generation when authenticate read the registry
	gateway  bool
	cred     credID
	exp      time.Time

	mu          sync.Mutex
	self        *devState
	authMethod  int32 // the gateway's gatewayAuthMethod, kept current by announcements
	devs        map[string]*devState
	errorsSub   bool
	closeAfter  bool                 // close once the packet being processed is answered
	initial     []*devState          // configs to send after the SUBACK
	pids        map[uint16]*devState // made at the first QoS 1 delivery
	cmdInflight map[uint16]struct{}  // made at the first QoS 1 command
	nextPID     uint16
	done        bool
	established bool // counted in passerelle.bridge.connections
	expTimer    *time.Timer
	release     func() // ends the cluster-wide presence claim; nil without one

	// The keep-alive, the reader's only: the read deadline was last set
	// at set, and the keep-alive expires at expiry; resumed marks a
	// connection back from the parker.
	idle        time.Duration
	set, expiry time.Time
	resumed     bool
	// lastBurst is when the reader last handled bytes; hot, that the
	// bursts before it came less than hotGap apart (see waitHot).
	lastBurst time.Time
	hot       bool

	msgs    bucket   // incoming packets; the connection's reader only
	pubacks *pubacks // QoS 1 answers in order; made by the reader (acks)

	wmu     sync.Mutex  // one writer at a time
	stopped atomic.Bool // the socket is closed

	closeOnce    sync.Once
	teardownOnce sync.Once
}

func newDevState(id string, ref store.DeviceRef, proxied bool) *devState {
	return &devState{id: id, ref: ref, proxied: proxied, cfgQoS: -1, cmdQoS: -1}
}

func (c *conn) logAttrs() []any {
	return []any{"device", c.self.id, "registry", c.registry.ID, "project", c.registry.Project}
}

// recordError sets the device's lastErrorTime/lastErrorStatus (batched).
func (c *conn) recordError(d *devState, code int32, msg string) {
	now := c.b.opts.now()
	c.b.fields.touch(d.ref, func(f *fieldDelta) {
		f.errTime, f.errStatus = now, &store.Status{Code: code, Message: msg}
	})
}

// close ends the connection, recording why on the device when code is
// not 0. MQTT 3.1.1 has no server DISCONNECT, so the socket just closes.
func (c *conn) close(code int32, msg string) { c.closeAt(slog.LevelInfo, code, msg) }

// closeAt is close logging at level: a takeover, which a reconnect storm
// makes by the thousand, is logged at debug.
func (c *conn) closeAt(level slog.Level, code int32, msg string) {
	c.closeOnce.Do(func() {
		if code != 0 {
			c.recordError(c.self, code, msg)
		}
		c.b.log.Log(c.b.ctx, level, "bridge: closing connection", append(c.logAttrs(), "reason", msg)...)
		c.stop()
	})
}

// shed closes the connection for the bridge's drain: nothing is recorded
// on the device (it did nothing wrong), and the log line is at debug, as
// a drain sheds every connection.
func (c *conn) shed() {
	c.closeOnce.Do(func() {
		c.b.log.Debug("bridge: shedding a connection", c.logAttrs()...)
		c.stop()
	})
}

// teardown releases everything the connection holds, once its reader
// ended.
func (c *conn) teardown(err error) {
	c.teardownOnce.Do(func() {
		c.stop()
		c.mu.Lock()
		c.done = true
		if c.established {
			c.b.tel.connections(-1)
		}
		if c.expTimer != nil {
			c.expTimer.Stop()
		}
		release := c.release
		c.release = nil
		devs := c.devs
		c.devs = map[string]*devState{}
		for _, d := range devs {
			if d.proxied {
				c.b.tel.attachedDevices(-1)
			}
			if d.cmdStop != nil {
				d.cmdStop()
				d.cmdStop = nil
			}
		}
		c.mu.Unlock()
		if release != nil {
			release()
		}
		for _, d := range devs {
			c.b.removeHolder(d.ref.NumID, c)
		}
		c.b.unregister(c)
		c.b.log.Debug("bridge: connection ended", append(c.logAttrs(), "err", err)...)
	})
}

// allocPIDLocked returns a packet identifier unused by this connection's
// outgoing QoS 1 messages (the device's own identifiers are a separate
// space, as MQTT keeps them).
func (c *conn) allocPIDLocked() (uint16, bool) {
	for range 1 << 16 {
		c.nextPID++
		if c.nextPID == 0 {
			continue
		}
		if _, used := c.pids[c.nextPID]; used {
			continue
		}
		if _, used := c.cmdInflight[c.nextPID]; used {
			continue
		}
		return c.nextPID, true
	}
	return 0, false
}

// sendConfigLocked sends cfg to d at its subscribed QoS. At QoS 1 it
// replaces any unacknowledged older version.
// parent is the trace of the change (the announcement's) or the bridge's.
func (c *conn) sendConfigLocked(parent context.Context, d *devState, cfg store.DeviceConfig) {
	if c.done || d.cfgQoS < 0 {
		return
	}
	now := c.b.opts.now()
	topic := devicetopic.Name(d.id, "config")
	var pid uint16
	if d.cfgQoS == 1 {
		if d.cfgPending != nil {
			delete(c.pids, d.cfgPending.pid)
			d.cfgPending = nil
		}
		var ok bool
		if pid, ok = c.allocPIDLocked(); !ok {
			return
		}
		if c.pids == nil {
			c.pids = make(map[uint16]*devState)
		}
		c.pids[pid] = d
		d.cfgPending = &pendingCfg{version: cfg.Version, pid: pid, topic: topic, data: cfg.Data, sentAt: now}
	}
	d.cfgSent = cfg.Version
	_, span := c.b.tel.start(parent, spanConfig, trace.SpanKindProducer)
	if span.IsRecording() {
		c.deviceAttrs(span, d)
		span.SetAttributes(attrVersion.Int64(cfg.Version), attrQoS.Int(d.cfgQoS), attrBytes.Int(len(cfg.Data)))
	}
	// Configs go out whatever the byte rate (the manager allows one per
	// second, at most 64 KB) but count against it, so commands cannot
	// add to them past the limit.
	d.out.spend(now, c.b.lim.byteRate, c.b.lim.byteBurst, float64(len(topic)+len(cfg.Data)))
	err := c.writePublish(topic, byte(d.cfgQoS), pid, cfg.Data, false)
	endSpan(span, err)
	if err != nil {
		return
	}
	c.b.tel.msgOut(kindConfig)
	c.b.fields.touch(d.ref, func(f *fieldDelta) { f.configSend = later(f.configSend, now) })
}

// deliverConfig sends cfg unless that version (or a newer one) was sent.
func (c *conn) deliverConfig(parent context.Context, d *devState, cfg store.DeviceConfig, force bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !force && cfg.Version <= d.cfgSent {
		return
	}
	c.sendConfigLocked(parent, d, cfg)
}

// onPuback handles a device's PUBACK for a message the bridge sent.
func (c *conn) onPuback(pid uint16) {
	c.mu.Lock()
	delete(c.cmdInflight, pid)
	d := c.pids[pid]
	delete(c.pids, pid)
	if d == nil || d.cfgPending == nil || d.cfgPending.pid != pid {
		c.mu.Unlock()
		return
	}
	version, sentAt := d.cfgPending.version, d.cfgPending.sentAt
	d.cfgPending = nil
	c.mu.Unlock()
	now := c.b.opts.now()
	c.b.tel.configAcked(now.Sub(sentAt))
	c.b.fields.touch(d.ref, func(f *fieldDelta) {
		if version >= f.ackVersion {
			f.ackVersion, f.ackTime = version, now
		}
	})
}

func (c *conn) hasStaleConfig(cutoff time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.devs {
		if d.cfgPending != nil && !d.cfgPending.sentAt.After(cutoff) {
			return true
		}
	}
	return false
}

// resendConfigs sends again the QoS 1 configs unacknowledged since cutoff.
func (c *conn) resendConfigs(cutoff time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	now := c.b.opts.now()
	for _, d := range c.devs {
		p := d.cfgPending
		if p == nil || p.sentAt.After(cutoff) {
			continue
		}
		p.sentAt = now
		d.out.spend(now, c.b.lim.byteRate, c.b.lim.byteBurst, float64(len(p.topic)+len(p.data)))
		if err := c.writePublish(p.topic, 1, p.pid, p.data, true); err != nil {
			return
		}
	}
}

// sendInitialConfigs sends the latest config to the devices that just
// subscribed, after their SUBACK.
func (c *conn) sendInitialConfigs() {
	c.mu.Lock()
	list := c.initial
	c.initial = nil
	c.mu.Unlock()
	for _, d := range list {
		ctx, cancel := c.b.storeCtx()
		dev, err := c.b.st.GetDevice(ctx, d.ref)
		cancel()
		if err != nil {
			c.b.log.Warn("bridge: reading config", append(c.logAttrs(), "target", d.id, "err", err)...)
			continue
		}
		c.mu.Lock()
		if d.cfgInitial {
			d.cfgInitial = false
			c.sendConfigLocked(c.b.ctx, d, dev.Config)
		}
		c.mu.Unlock()
	}
}

// commandHandler delivers the bus's commands for d.
func (c *conn) commandHandler(d *devState) bus.CommandHandler {
	return func(ctx context.Context, cmd bus.Command) (err error) {
		_, span := c.b.tel.start(ctx, spanCommand, trace.SpanKindConsumer)
		if span.IsRecording() {
			c.deviceAttrs(span, d)
			span.SetAttributes(attrBytes.Int(len(cmd.Data)))
		}
		defer func() { endSpan(span, err) }()
		topic := devicetopic.Name(d.id, "commands")
		if cmd.SubFolder != "" {
			topic += "/" + cmd.SubFolder
		}
		c.mu.Lock()
		if c.done || d.cmdQoS < 0 || c.devs[d.id] != d {
			c.mu.Unlock()
			return bus.ErrNotConnected
		}
		qos := byte(d.cmdQoS)
		var pid uint16
		if !d.out.take(c.b.opts.now(), c.b.lim.byteRate, c.b.lim.byteBurst, float64(len(topic)+len(cmd.Data))) {
			c.mu.Unlock()
			c.b.tel.rateLimited(kindBytesOut)
			return c.b.errByteRateOut
		}
		if d.cmdQoS == 1 {
			if len(c.cmdInflight) >= c.b.opts.maxInflight {
				c.mu.Unlock()
				return fmt.Errorf("the device has %d commands it did not acknowledge", len(c.cmdInflight))
			}
			var ok bool
			if pid, ok = c.allocPIDLocked(); !ok {
				c.mu.Unlock()
				return errors.New("no packet identifier available")
			}
			if c.cmdInflight == nil {
				c.cmdInflight = make(map[uint16]struct{})
			}
			c.cmdInflight[pid] = struct{}{}
		}
		c.mu.Unlock()
		if err := c.writePublish(topic, qos, pid, cmd.Data, false); err != nil {
			return fmt.Errorf("%w: %v", bus.ErrNotConnected, err)
		}
		c.b.tel.msgOut(kindCommand)
		return nil
	}
}

// onDeviceAnnouncement re-reads a device this connection serves and acts
// on what changed: a new config is delivered; a blocked or deleted device,
// or one whose credential for this connection is gone, is disconnected
// (or detached from its gateway).
func (c *conn) onDeviceAnnouncement(a bus.Announcement) {
	c.mu.Lock()
	var target *devState
	for _, d := range c.devs {
		if d.ref.NumID == a.NumID {
			target = d
			break
		}
	}
	c.mu.Unlock()
	switch {
	case target == nil:
	case a.Kind == bus.ConfigChanged && a.Config != nil:
		// The announcement carries the config: no store read. (Older
		// versions than one already sent are skipped.)
		c.deliverConfig(a.Context(), target, store.DeviceConfig{Version: a.Config.Version, Data: a.Config.Data}, false)
	default:
		c.recheck(target)
	}
}

func (c *conn) recheckAll() {
	c.mu.Lock()
	list := make([]*devState, 0, len(c.devs))
	for _, d := range c.devs {
		list = append(list, d)
	}
	c.mu.Unlock()
	for _, d := range list {
		c.recheck(d)
	}
}

func (c *conn) recheck(d *devState) {
	ctx, cancel := c.b.storeCtx()
	dev, err := c.b.st.GetDevice(ctx, d.ref)
	cancel()
	reason := ""
	switch {
	case errors.Is(err, store.ErrNotFound):
		reason = "the device was deleted"
	case err != nil:
		c.b.log.Warn("bridge: re-reading a device", append(c.logAttrs(), "target", d.id, "err", err)...)
		return
	case dev.Blocked:
		reason = "the device is blocked"
	}
	self := d == c.self
	if reason == "" && self && !c.credentialActive(dev) {
		reason = "the credential that signed the connection's JWT was removed or expired"
	}
	if reason != "" {
		if self {
			c.close(codePermissionDenied, reason)
		} else {
			c.detachForError(d, codeFailedPrecondition, reason)
		}
		return
	}
	if self {
		c.mu.Lock()
		c.authMethod = dev.GatewayAuthMethod
		c.mu.Unlock()
	}
	c.deliverConfig(c.b.ctx, d, dev.Config, false)
}

func (c *conn) credentialActive(dev *store.Device) bool {
	now := c.b.opts.now()
	for _, cr := range dev.Credentials {
		if cr.Format == c.cred.format && newCredID(cr.Format, cr.Key) == c.cred && deviceauth.CredentialActive(cr.ExpirationTime, now) {
			return true
		}
	}
	return false
}

// activeKeys parses a device's unexpired credentials (through the cache).
func (b *Bridge) activeKeys(dev *store.Device, now time.Time) ([]*deviceauth.Key, []credID) {
	keys := make([]*deviceauth.Key, 0, len(dev.Credentials))
	ids := make([]credID, 0, len(dev.Credentials))
	for _, cr := range dev.Credentials {
		if !deviceauth.CredentialActive(cr.ExpirationTime, now) {
			continue
		}
		k, err := b.keys.Parse(cr.Format, cr.Key)
		if err != nil {
			b.log.Warn("bridge: a stored credential does not parse", "device", dev.ID, "err", err)
			continue
		}
		keys = append(keys, k)
		ids = append(ids, newCredID(cr.Format, cr.Key))
	}
	return keys, ids
}

func numIDString(n uint64) string { return strconv.FormatUint(n, 10) }
