package hub

import (
	"encoding/json"
	"strings"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// route handles every message of the connection. It never blocks: config
// subscribers keep the newest version, command subscribers have bounded
// buffers, events are dropped for slow readers.
func (g *gw) route(_ paho.Client, m paho.Message) {
	now := g.p.o.now()
	rest, ok := strings.CutPrefix(m.Topic(), "/devices/")
	if !ok {
		return
	}
	id, kind, _ := strings.Cut(rest, "/")
	g.p.tel.received(g.ctx, kind)
	// A root span: an MQTT message carries no trace context to join.
	span := g.p.tel.receive(g.ctx, g.name, id, kind, m.Topic())
	defer span.End()
	switch {
	case kind == "errors" && id == g.id:
		var ge GatewayError
		if err := json.Unmarshal(m.Payload(), &ge); err != nil {
			g.log.Warn("hub: unreadable gateway error", "payload", string(m.Payload()))
			return
		}
		g.routeError(&ge)
	case kind == "config":
		g.mu.Lock()
		if ts := g.topics[configTopic(id)]; ts != nil {
			ts.offerConfigLocked(Config{Data: m.Payload(), ReceiveTime: now})
		}
		g.mu.Unlock()
	case kind == "commands" || strings.HasPrefix(kind, "commands/"):
		sub, _ := strings.CutPrefix(kind, "commands")
		sub = strings.TrimPrefix(sub, "/")
		g.mu.Lock()
		if ts := g.topics[commandsTopic(id)]; ts != nil {
			ts.offerCommandLocked(Command{SubFolder: sub, Data: m.Payload(), ReceiveTime: now})
		}
		g.mu.Unlock()
	}
}

func (g *gw) routeError(ge *GatewayError) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log.Info("hub: gateway error", "device", ge.DeviceID, "error_type", ge.ErrorType, "description", ge.Description)
	if ge.ErrorType == ErrorTypeAttachment {
		if w := g.attachWait[ge.DeviceID]; w != nil {
			select {
			case w <- ge:
			default:
			}
		}
	}
	d := g.devices[ge.DeviceID]
	if d == nil {
		return
	}
	for h := range d.holders {
		h.sendLocked(Event{Error: ge})
	}
	if ge.ErrorType == ErrorTypeDeviceNotFound || ge.ErrorType == ErrorTypeDetachmentError {
		// The bridge no longer has the device attached: its pending
		// publishes will get no PUBACK.
		for w := range d.pubWaiters {
			select {
			case w <- ge:
			default:
			}
		}
		if d.attachedGen == g.gen && g.connected && len(d.holders) > 0 {
			g.clearAttachedLocked(d)
			for _, ts := range g.topics {
				if ts.deviceID == d.id {
					ts.subscribedGen = 0
				}
			}
			g.p.wg.Add(1)
			go func() { defer g.p.wg.Done(); g.restoreDevice(d) }()
		}
	}
}
