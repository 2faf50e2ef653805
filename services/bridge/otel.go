package bridge

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names the bridge's tracer and meter.
const instrumentationName = "github.com/passerelle-iot/passerelle/services/bridge"

// Span names. Message spans are roots of their own (one per message), so
// that a sampler can keep some of them without keeping a connection's
// whole life.
const (
	spanConnect = "bridge.connect"
	spanAttach  = "bridge.attach"
	spanDetach  = "bridge.detach"
	spanEvent   = "bridge.event publish"
	spanState   = "bridge.state store"
	spanConfig  = "bridge.config send"
	spanCommand = "bridge.command deliver"
)

// Attribute keys of the bridge's spans.
const (
	attrDevice   = attribute.Key("passerelle.device")
	attrRegistry = attribute.Key("passerelle.registry")
	attrGateway  = attribute.Key("passerelle.gateway")
	attrResult   = attribute.Key("passerelle.result")
	attrQoS      = attribute.Key("mqtt.qos")
	attrBytes    = attribute.Key("messaging.message.body.size")
	attrVersion  = attribute.Key("passerelle.config.version")
)

// msgKind is a kind of message counted by passerelle.bridge.messages.in
// and .out.
type msgKind int

const (
	kindEvent msgKind = iota
	kindState
	kindAttach
	kindDetach
	kindConfig
	kindCommand
	kindGatewayError
	numMsgKinds
)

var msgKindNames = [numMsgKinds]string{"event", "state", "attach", "detach", "config", "command", "gateway_error"}

// refuseReason is why a CONNECT was refused, for
// passerelle.bridge.connects.refused.
type refuseReason int

const (
	refusedProtocol refuseReason = iota
	refusedClientID
	refusedRegistry
	refusedMQTTDisabled
	refusedDevice
	refusedBlocked
	refusedJWT
	refusedDraining
	numRefuseReasons
)

var refuseReasonNames = [numRefuseReasons]string{"protocol", "client_id", "registry", "mqtt_disabled", "device", "blocked", "jwt", "draining"}

// limitKind is which rate limit was hit, for passerelle.bridge.rate_limited.
type limitKind int

const (
	kindMessages limitKind = iota
	kindBytesIn
	kindBytesOut
	numLimitKinds
)

var limitKindNames = [numLimitKinds]string{"messages", "bytes_in", "bytes_out"}

// instruments holds the bridge's tracer and metric instruments, with the
// attribute sets of every measurement made up front: the hot path
// allocates nothing for metrics.
type instruments struct {
	tracer    trace.Tracer
	conns     metric.Int64UpDownCounter
	parked    metric.Int64UpDownCounter
	refused   metric.Int64Counter
	in, out   metric.Int64Counter
	attached  metric.Int64UpDownCounter
	limited   metric.Int64Counter
	accepts   metric.Int64Counter
	httpReqs  metric.Int64Counter
	httpDur   metric.Float64Histogram
	pubackDur metric.Float64Histogram
	cfgAckDur metric.Float64Histogram
	storeDur  metric.Float64Histogram

	kindOpts   [numMsgKinds]metric.AddOption
	reasonOpts [numRefuseReasons]metric.AddOption
	limitOpts  [numLimitKinds]metric.AddOption
	acceptOpts [numAcceptRefusals]metric.AddOption
}

func newInstruments(tp trace.TracerProvider, mp metric.MeterProvider) (*instruments, error) {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(instrumentationName)
	t := &instruments{tracer: tp.Tracer(instrumentationName)}
	var err error
	if t.conns, err = m.Int64UpDownCounter("passerelle.bridge.connections",
		metric.WithDescription("MQTT connections authenticated and held"), metric.WithUnit("{connection}")); err != nil {
		return nil, err
	}
	if t.parked, err = m.Int64UpDownCounter("passerelle.bridge.connections.parked",
		metric.WithDescription("idle MQTT connections held without a goroutine, in the epoll set of their listener's parker"), metric.WithUnit("{connection}")); err != nil {
		return nil, err
	}
	if t.refused, err = m.Int64Counter("passerelle.bridge.connects.refused",
		metric.WithDescription("CONNECTs refused, by reason"), metric.WithUnit("{connect}")); err != nil {
		return nil, err
	}
	if t.in, err = m.Int64Counter("passerelle.bridge.messages.in",
		metric.WithDescription("messages published by devices and gateways, by kind"), metric.WithUnit("{message}")); err != nil {
		return nil, err
	}
	if t.out, err = m.Int64Counter("passerelle.bridge.messages.out",
		metric.WithDescription("messages sent to devices and gateways, by kind"), metric.WithUnit("{message}")); err != nil {
		return nil, err
	}
	if t.attached, err = m.Int64UpDownCounter("passerelle.bridge.attached_devices",
		metric.WithDescription("devices attached to gateway connections"), metric.WithUnit("{device}")); err != nil {
		return nil, err
	}
	if t.limited, err = m.Int64Counter("passerelle.bridge.rate_limited",
		metric.WithDescription("messages refused by a rate limit, by limit"), metric.WithUnit("{message}")); err != nil {
		return nil, err
	}
	if t.accepts, err = m.Int64Counter("passerelle.bridge.accepts.refused",
		metric.WithDescription("connections closed as soon as accepted, by the limit they met"), metric.WithUnit("{connection}")); err != nil {
		return nil, err
	}
	if t.httpReqs, err = m.Int64Counter("passerelle.bridge.http.requests",
		metric.WithDescription("HTTP device bridge requests, by method (rpc) and answer (code)"), metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if t.httpDur, err = m.Float64Histogram("passerelle.bridge.http.duration",
		metric.WithDescription("time to answer an HTTP device bridge request, by method (getConfig includes its wait)"), metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.pubackDur, err = m.Float64Histogram("passerelle.bridge.puback.duration",
		metric.WithDescription("time from a QoS 1 event's arrival to its PUBACK: the durable write to the stream"), metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.cfgAckDur, err = m.Float64Histogram("passerelle.bridge.config.ack_duration",
		metric.WithDescription("time from sending a QoS 1 config (or its last resend) to the device's PUBACK"), metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.storeDur, err = m.Float64Histogram("passerelle.bridge.store.duration",
		metric.WithDescription("time of the bridge's store calls, by operation (op)"), metric.WithUnit("s")); err != nil {
		return nil, err
	}
	for i, n := range msgKindNames {
		t.kindOpts[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", n)))
	}
	for i, n := range refuseReasonNames {
		t.reasonOpts[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", n)))
	}
	for i, n := range limitKindNames {
		t.limitOpts[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("limit", n)))
	}
	for i, n := range acceptRefusalNames {
		t.acceptOpts[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("limit", n)))
	}
	return t, nil
}

// The helpers below use context.Background: metric instruments do not
// need the caller's context, and the bridge's is not per message.

func (t *instruments) msgIn(k msgKind)  { t.in.Add(context.Background(), 1, t.kindOpts[k]) }
func (t *instruments) msgOut(k msgKind) { t.out.Add(context.Background(), 1, t.kindOpts[k]) }
func (t *instruments) refuse(r refuseReason) {
	t.refused.Add(context.Background(), 1, t.reasonOpts[r])
}
func (t *instruments) rateLimited(k limitKind) {
	t.limited.Add(context.Background(), 1, t.limitOpts[k])
}
func (t *instruments) acceptRefused(r acceptRefusal) {
	t.accepts.Add(context.Background(), 1, t.acceptOpts[r])
}
func (t *instruments) httpRequest(rpc string, code int32, d time.Duration) {
	t.httpReqs.Add(context.Background(), 1, metric.WithAttributes(attribute.String("rpc", rpc), attribute.String("code", rpcCodes[code].name)))
	t.httpDur.Record(context.Background(), d.Seconds(), metric.WithAttributes(attribute.String("rpc", rpc)))
}
func (t *instruments) puback(d time.Duration) { t.pubackDur.Record(context.Background(), d.Seconds()) }
func (t *instruments) configAcked(d time.Duration) {
	t.cfgAckDur.Record(context.Background(), d.Seconds())
}
func (t *instruments) connections(n int64)     { t.conns.Add(context.Background(), n) }
func (t *instruments) parkedConns(n int64)     { t.parked.Add(context.Background(), n) }
func (t *instruments) attachedDevices(n int64) { t.attached.Add(context.Background(), n) }

// start starts a span. Its attributes are set by the caller only when
// span.IsRecording(), so an unsampled message costs no attribute slice.
func (t *instruments) start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, name, trace.WithSpanKind(kind))
}

// endSpan records err (if any) and ends span.
func endSpan(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// deviceAttrs describes d as seen on connection c.
func (c *conn) deviceAttrs(span trace.Span, d *devState) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attrDevice.String(d.id), attrRegistry.String(c.registry.ID))
	if d.proxied {
		span.SetAttributes(attrGateway.String(c.self.id))
	}
}
