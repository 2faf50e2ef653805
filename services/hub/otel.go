package hub

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

const instrumentationName = "github.com/passerelle-iot/passerelle/services/hub"

// poolTel holds the pool's tracer and instruments. Instruments that fail
// to build are no-ops: telemetry never stops the hub.
type poolTel struct {
	tracer      trace.Tracer
	connections metric.Int64UpDownCounter
	attachedN   metric.Int64UpDownCounter
	messages    metric.Int64Counter
	acks        metric.Int64Counter
	resends     metric.Int64Counter
	failures    metric.Int64Counter
	reconnects  metric.Int64Counter
	drops       metric.Int64Counter
}

func newPoolTel(tp trace.TracerProvider, mp metric.MeterProvider) *poolTel {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(instrumentationName)
	t := &poolTel{tracer: tp.Tracer(instrumentationName)}
	t.connections, _ = m.Int64UpDownCounter("hub.gateway.connections", metric.WithDescription("Gateway MQTT connections up"))
	t.attachedN, _ = m.Int64UpDownCounter("hub.devices.attached", metric.WithDescription("Devices attached through the hub"))
	t.messages, _ = m.Int64Counter("hub.messages.received", metric.WithDescription("MQTT messages received from the bridge"))
	t.acks, _ = m.Int64Counter("hub.messages.acknowledged", metric.WithDescription("QoS 1 publishes the bridge acknowledged"))
	t.resends, _ = m.Int64Counter("hub.messages.resent", metric.WithDescription("Publishes sent again after a reconnect"))
	t.failures, _ = m.Int64Counter("hub.gateway.connect_failures", metric.WithDescription("Failed gateway connection attempts"))
	t.reconnects, _ = m.Int64Counter("hub.gateway.reconnects", metric.WithDescription("Gateway connections made again after a lost or renewed one"))
	t.drops, _ = m.Int64Counter("hub.dropped", metric.WithDescription("Events dropped for slow readers"))
	return t
}

func (t *poolTel) start(ctx context.Context, name, gateway, device string) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("gateway", gateway), attribute.String("device", device))
	}
	return ctx, span
}

// receive starts the span of one MQTT message received from the bridge
// (config, command, gateway error). It is a new root: MQTT 3.1.1 carries
// no trace context, so the span is joined to nothing but names the
// gateway, the device and the kind of message.
func (t *poolTel) receive(ctx context.Context, gateway, device, kind, topic string) trace.Span {
	_, span := t.tracer.Start(ctx, "hub.receive "+receiveKind(kind),
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("gateway", gateway), attribute.String("device", device),
			attribute.String("kind", receiveKind(kind)), attribute.String("messaging.destination.name", topic))
	}
	return span
}

// receiveKind names a received message by its topic's kind, without the
// command subfolder (span names stay few).
func receiveKind(kind string) string {
	if k, _, ok := strings.Cut(kind, "/"); ok {
		return k
	}
	return kind
}

func (t *poolTel) connected(ctx context.Context, n int64) {
	if t.connections != nil {
		t.connections.Add(ctx, n)
	}
}

func (t *poolTel) attached(ctx context.Context, n int64) {
	if t.attachedN != nil {
		t.attachedN.Add(ctx, n)
	}
}

func (t *poolTel) received(ctx context.Context, kind string) {
	if t.messages != nil {
		t.messages.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind)))
	}
}

func (t *poolTel) published(ctx context.Context, suffix string) {
	if t.acks != nil {
		t.acks.Add(ctx, 1)
	}
}

func (t *poolTel) resent(ctx context.Context) {
	if t.resends != nil {
		t.resends.Add(ctx, 1)
	}
}

func (t *poolTel) reconnected(ctx context.Context) {
	if t.reconnects != nil {
		t.reconnects.Add(ctx, 1)
	}
}

func (t *poolTel) connectFailed(ctx context.Context) {
	if t.failures != nil {
		t.failures.Add(ctx, 1)
	}
}

func (t *poolTel) dropped(ctx context.Context, what string) {
	if t.drops != nil {
		t.drops.Add(ctx, 1, metric.WithAttributes(attribute.String("what", what)))
	}
}
