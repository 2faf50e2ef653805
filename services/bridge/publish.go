package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/devicetopic"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// Gateway error types of compat-spec section 7.
const (
	gwAttachmentError = "GATEWAY_ATTACHMENT_ERROR"
	gwDeviceNotFound  = "GATEWAY_DEVICE_NOT_FOUND"
	gwDetachmentError = "GATEWAY_DETACHMENT_DEVICE_ERROR"
)

// handlePublish answers answerPuback when the publish is accepted,
// answerNone when it is refused, or answerPending when a QoS 1 event went
// to the stream: its answer then goes to the PUBACK queue's entry seq.
func (c *conn) handlePublish(pk publish, seq uint64) answer {
	t, err := devicetopic.Parse(pk.Topic)
	if err != nil || !t.Kind.Publishable() {
		c.close(codePermissionDenied, "publish to "+pk.Topic+" is not allowed")
		return answerNone
	}
	if pk.Retain {
		c.close(codeInvalidArgument, "retained messages are not supported")
		return answerNone
	}
	c.mu.Lock()
	d := c.devs[t.DeviceID]
	c.mu.Unlock()
	switch t.Kind {
	case devicetopic.Attach, devicetopic.Detach:
		if !c.gateway {
			c.close(codePermissionDenied, "only gateways may attach or detach devices")
			return answerNone
		}
		if t.DeviceID == c.self.id {
			c.gatewayError(gwAttachmentError, "a gateway cannot attach itself", t.DeviceID, pk)
			return answerNone
		}
		if t.Kind == devicetopic.Attach {
			c.b.tel.msgIn(kindAttach)
			return answerOf(c.attachTraced(t.DeviceID, pk))
		}
		c.b.tel.msgIn(kindDetach)
		_, span := c.b.tel.start(c.b.ctx, spanDetach, trace.SpanKindServer)
		if span.IsRecording() {
			span.SetAttributes(attrDevice.String(t.DeviceID), attrRegistry.String(c.registry.ID), attrGateway.String(c.self.id))
		}
		c.detach(t.DeviceID)
		span.End()
		return answerPuback
	}
	if d == nil {
		if c.gateway {
			c.gatewayError(gwDeviceNotFound, "the device is not attached to this gateway", t.DeviceID, pk)
			return answerNone
		}
		c.close(codePermissionDenied, "publish to another device's topic "+pk.Topic)
		return answerNone
	}
	// Only this goroutine (the connection's reader) uses d.in.
	if !d.in.take(c.b.opts.now(), c.b.lim.byteRate, c.b.lim.byteBurst, float64(len(pk.Topic)+len(pk.Payload))) {
		c.b.tel.rateLimited(kindBytesIn)
		if d.proxied {
			c.detachForError(d, codeResourceExhausted, c.b.byteRateMsg)
			return answerNone
		}
		c.close(codeResourceExhausted, c.b.byteRateMsg)
		return answerNone
	}
	if d.proxied {
		now := c.b.opts.now()
		gw := c.self.id
		c.b.fields.touch(d.ref, func(f *fieldDelta) { f.gatewayID, f.gatewayTime = gw, later(f.gatewayTime, now) })
	}
	if t.Kind == devicetopic.Events {
		c.b.tel.msgIn(kindEvent)
		return c.publishEvent(d, t.SubFolder, pk, seq)
	}
	c.b.tel.msgIn(kindState)
	return answerOf(c.publishState(d, pk))
}

func answerOf(accepted bool) answer {
	if accepted {
		return answerPuback
	}
	return answerNone
}

func (c *conn) attributes(d *devState, subFolder string) bus.Attributes {
	a := bus.Attributes{
		DeviceID:               d.id,
		DeviceNumID:            numIDString(d.ref.NumID),
		DeviceRegistryID:       c.registry.ID,
		DeviceRegistryLocation: c.registry.Location,
		ProjectID:              c.registry.Project,
		SubFolder:              subFolder,
	}
	if d.proxied {
		a.GatewayID = c.self.id
	}
	return a
}

func (c *conn) publishEvent(d *devState, subFolder string, pk publish, seq uint64) answer {
	if len(pk.Payload) > maxEventBytes {
		c.close(codeInvalidArgument, "event larger than 256 KB")
		return answerNone
	}
	reg, err := c.b.registry(c.registry)
	if err != nil {
		c.close(codeUnavailable, "cannot read the registry")
		return answerNone
	}
	topic := eventTopic(reg, subFolder)
	if topic == "" || c.b.bus == nil {
		c.close(codeFailedPrecondition, "the registry has no event notification config for this event")
		return answerNone
	}
	attrs := c.attributes(d, subFolder)
	data := bytes.Clone(pk.Payload) // the read buffer is reused; the bus may send it again
	ctx, span := c.b.tel.start(c.b.ctx, spanEvent, trace.SpanKindProducer)
	if span.IsRecording() {
		c.deviceAttrs(span, d)
		span.SetAttributes(attrQoS.Int(int(pk.QoS)), attrBytes.Int(len(pk.Payload)))
	}
	if pk.QoS == 0 {
		// At most once: not sent again through a failover. The span ends
		// with the stream's acknowledgement.
		err = c.b.bus.PublishNotificationAtMostOnce(ctx, topic, bus.KindEvent, data, attrs, func(err error) {
			endSpan(span, err)
			if err != nil {
				c.b.log.Log(c.b.ctx, failureLevel(err), "bridge: a QoS 0 event was lost", append(c.logAttrs(), "err", err)...)
			}
		})
		if err != nil {
			endSpan(span, err)
			c.b.log.Log(c.b.ctx, failureLevel(err), "bridge: forwarding an event", append(c.logAttrs(), "err", err)...)
		}
		c.touchEvent(d)
		return answerPuback
	}
	// PUBACK only once the stream holds the event; meanwhile the reader
	// goes on with the next packets, so the event travels as a copy.
	// The bus rides out a stream leader election (it sends the event again
	// until its PublishTimeout, stored once), so a failover holds these
	// PUBACKs up rather than closing the connection. ctx, the bridge's,
	// ends the resends when Serve stops.
	start := time.Now()
	q := c.pubacks
	c.b.events.Add(1)
	err = c.b.bus.PublishNotificationAsync(ctx, topic, bus.KindEvent, data, attrs, func(err error) {
		defer c.b.events.Done()
		endSpan(span, err)
		if err != nil {
			c.eventFailed(q, err)
			return
		}
		c.b.tel.puback(time.Since(start))
		c.touchEvent(d)
		q.ready(seq, answerPuback, false)
	})
	if err != nil {
		c.b.events.Done()
		endSpan(span, err)
		c.eventFailed(q, err)
		return answerNone
	}
	return answerPending
}

// eventFailed ends a connection whose QoS 1 event the stream did not
// take, even sent again for the bus's PublishTimeout: without a PUBACK
// the device would wait for ever; closing makes it reconnect and send
// again (this one and every later one, which the queue no longer
// acknowledges).
func (c *conn) eventFailed(q *pubacks, err error) {
	q.fail()
	c.b.log.Log(c.b.ctx, failureLevel(err), "bridge: forwarding an event", append(c.logAttrs(), "err", err)...)
	c.close(codeUnavailable, "the event could not be forwarded")
}

func (c *conn) touchEvent(d *devState) {
	now := c.b.opts.now()
	c.b.fields.touch(d.ref, func(f *fieldDelta) { f.event = later(f.event, now) })
}

func (c *conn) publishState(d *devState, pk publish) bool {
	if len(pk.Payload) > maxStateBytes {
		c.close(codeInvalidArgument, "state larger than 64 KB")
		return false
	}
	now := c.b.opts.now()
	c.mu.Lock()
	tooFast := !d.lastState.IsZero() && now.Sub(d.lastState) < c.b.opts.stateInterval
	if !tooFast {
		d.lastState = now
	}
	c.mu.Unlock()
	if tooFast {
		const msg = "more than one state update per second"
		if d.proxied {
			c.detachForError(d, codeResourceExhausted, msg)
		} else {
			c.close(codeResourceExhausted, msg)
		}
		return false
	}
	if err := c.b.saveState(c.b.ctx, d.ref, c.attributes(d, ""), bytes.Clone(pk.Payload), now, func(span trace.Span) { c.deviceAttrs(span, d) }); err != nil {
		c.close(codeUnavailable, "the state could not be stored")
		return false
	}
	return true
}

// saveState stores a device's state and then notifies it on the
// registry's state topic (the notification does not hold up the answer to
// the device), for every front end. describe adds the device's attributes
// to the span when it records.
func (b *Bridge) saveState(parent context.Context, ref store.DeviceRef, attrs bus.Attributes, data []byte, now time.Time, describe func(trace.Span)) error {
	sctx, span := b.tel.start(parent, spanState, trace.SpanKindInternal)
	if span.IsRecording() {
		describe(span)
		span.SetAttributes(attrBytes.Int(len(data)))
	}
	ctx, cancel := context.WithTimeout(sctx, b.opts.storeTimeout)
	err := b.st.AddState(ctx, ref, store.DeviceState{UpdateTime: now, Data: data})
	cancel()
	endSpan(span, err)
	logAttrs := []any{"device", attrs.DeviceID, "registry", attrs.DeviceRegistryID, "project", attrs.ProjectID}
	if err != nil {
		b.log.Log(b.ctx, failureLevel(err), "bridge: storing a state", append(logAttrs, "err", err)...)
		return err
	}
	key := store.RegistryKey{Project: attrs.ProjectID, Location: attrs.DeviceRegistryLocation, ID: attrs.DeviceRegistryID}
	if reg, err := b.registry(key); err == nil && reg.StateNotificationTopic != "" && b.bus != nil {
		// The state is stored: its notification need not hold the answer.
		// Resends end with the bridge, not with an HTTP request: the
		// bridge's context, carrying the span.
		pctx := trace.ContextWithSpanContext(b.ctx, trace.SpanContextFromContext(sctx))
		err := b.bus.PublishNotificationAsync(pctx, reg.StateNotificationTopic, bus.KindState, data, attrs, func(err error) {
			if err != nil {
				b.log.Log(b.ctx, failureLevel(err), "bridge: a state notification was lost", append(logAttrs, "err", err)...)
			}
		})
		if err != nil {
			b.log.Log(b.ctx, failureLevel(err), "bridge: notifying a state", append(logAttrs, "err", err)...)
		}
	}
	return nil
}

// gatewayError publishes an error for the gateway on its errors topic, if
// it subscribed to it.
func (c *conn) gatewayError(kind, desc, deviceID string, pk publish) {
	c.mu.Lock()
	c.gatewayErrorLocked(kind, desc, deviceID, "PUBLISH", pk.Topic, pk.PacketID)
	c.mu.Unlock()
}

type gatewayErrorMsg struct {
	ErrorType   string          `json:"error_type"`
	Description string          `json:"description"`
	DeviceID    string          `json:"device_id"`
	MessageInfo mqttMessageInfo `json:"mqtt_message_info"`
}

type mqttMessageInfo struct {
	MessageType string `json:"message_type"`
	Topic       string `json:"topic"`
	PacketID    uint16 `json:"packet_id"`
}

func (c *conn) gatewayErrorLocked(kind, desc, deviceID, msgType, topic string, pid uint16) {
	c.b.log.Info("bridge: gateway error", append(c.logAttrs(), "error_type", kind, "target", deviceID, "description", desc)...)
	if !c.errorsSub || c.done {
		return
	}
	data, _ := json.Marshal(gatewayErrorMsg{
		ErrorType: kind, Description: desc, DeviceID: deviceID,
		MessageInfo: mqttMessageInfo{MessageType: msgType, Topic: topic, PacketID: pid},
	})
	if c.writePublish(devicetopic.Name(c.self.id, "errors"), 0, 0, data, false) == nil {
		c.b.tel.msgOut(kindGatewayError)
	}
}

// attachTraced is attach in a span.
func (c *conn) attachTraced(deviceID string, pk publish) bool {
	_, span := c.b.tel.start(c.b.ctx, spanAttach, trace.SpanKindServer)
	ok := c.attach(deviceID, pk)
	if span.IsRecording() {
		result := "attached"
		if !ok {
			result = "refused"
			span.SetStatus(codes.Error, "attach refused")
		}
		span.SetAttributes(attrDevice.String(deviceID), attrRegistry.String(c.registry.ID),
			attrGateway.String(c.self.id), attrResult.String(result))
	}
	span.End()
	return ok
}

// attach checks an attach request against the gateway's auth method and
// reports whether the device is now attached (to be PUBACKed).
func (c *conn) attach(deviceID string, pk publish) bool {
	refuse := func(desc string) bool {
		c.gatewayError(gwAttachmentError, desc, deviceID, pk)
		return false
	}
	c.mu.Lock()
	_, already := c.devs[deviceID]
	n := len(c.devs) - 1
	method := c.authMethod
	c.mu.Unlock()
	if already {
		return true
	}
	if n >= c.b.opts.maxAttached {
		return refuse("the gateway connection already has the most attached devices")
	}
	var req struct {
		Authorization string `json:"authorization"`
	}
	if len(pk.Payload) > 0 {
		if err := json.Unmarshal(pk.Payload, &req); err != nil {
			return refuse("the attach payload is not JSON {\"authorization\": \"<jwt>\"}")
		}
	}
	ctx, cancel := c.b.storeCtx()
	defer cancel()
	dev, err := c.b.st.GetDevice(ctx, store.DeviceRef{Registry: c.registry, ID: deviceID})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse("the device does not exist")
	case err != nil:
		c.b.log.Warn("bridge: reading a device to attach", append(c.logAttrs(), "target", deviceID, "err", err)...)
		return refuse("the device could not be read")
	}
	if err := c.b.checkDelegation(ctx, c.self.ref, method, dev, req.Authorization); err != nil {
		return refuse(err.Error())
	}
	d := newDevState(dev.ID, store.DeviceRef{Registry: c.registry, NumID: dev.NumID}, true)
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return false
	}
	if _, raced := c.devs[deviceID]; raced {
		c.mu.Unlock()
		return true
	}
	c.devs[deviceID] = d
	c.mu.Unlock()
	c.b.tel.attachedDevices(1)
	c.b.addHolder(dev.NumID, c)
	now := c.b.opts.now()
	gwID := c.self.id
	c.b.fields.touch(d.ref, func(f *fieldDelta) {
		f.gatewayID, f.gatewayTime = gwID, later(f.gatewayTime, now)
		f.heartbeat = later(f.heartbeat, now)
	})
	return true
}

// detach ends a device's attachment; detaching what is not attached is
// not an error.
func (c *conn) detach(deviceID string) *devState {
	c.mu.Lock()
	d := c.devs[deviceID]
	if d == nil || d == c.self {
		c.mu.Unlock()
		return nil
	}
	delete(c.devs, deviceID)
	c.b.tel.attachedDevices(-1)
	c.unsubscribeConfigLocked(d)
	if d.cmdStop != nil {
		d.cmdStop()
		d.cmdStop = nil
	}
	d.cmdQoS = -1
	c.mu.Unlock()
	c.b.removeHolder(d.ref.NumID, c)
	return d
}

// detachForError detaches a proxied device and tells the gateway why.
func (c *conn) detachForError(d *devState, code int32, reason string) {
	if c.detach(d.id) == nil {
		return
	}
	c.recordError(d, code, reason)
	c.mu.Lock()
	c.gatewayErrorLocked(gwDetachmentError, reason, d.id, "PUBLISH", devicetopic.Name(d.id, "state"), 0)
	c.mu.Unlock()
}
