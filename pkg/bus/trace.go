package bus

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names the bus's tracer (the otel global's).
const tracerName = "github.com/passerelle-iot/passerelle/pkg/bus"

// publishDuration is the histogram of PublishNotification's JetStream
// writes, on the otel global meter provider.
func publishDuration() metric.Float64Histogram {
	h, err := otel.Meter(tracerName).Float64Histogram("passerelle.bus.publish.duration",
		metric.WithDescription("time for the stream to acknowledge a notification (event or state) written with PublishNotification"), metric.WithUnit("s"))
	if err != nil {
		h, _ = noop.NewMeterProvider().Meter(tracerName).Float64Histogram("passerelle.bus.publish.duration")
	}
	return h
}

// tracer is the bus's tracer. The otel global's tracers follow the
// provider set later (telemetry.Setup), so it can be taken once.
var tracer = otel.Tracer(tracerName)

// startSpan starts a producer span of the bus: the hop of an announcement,
// or the JetStream write of a notification.
func startSpan(ctx context.Context, name, subject string) (context.Context, trace.Span) {
	ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", subject))
	}
	return ctx, span
}

// startChildSpan is startSpan for the write of a device's message, which
// the bridge traces in a span of its own: when that span is not sampled
// (tracing off, or the message not sampled) the write would not be
// either, so none is started (thousands a second cost allocations) and a
// no-op span stands for it.
func startChildSpan(ctx context.Context, name, subject string) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span
	}
	return startSpan(ctx, name, subject)
}

func endSpan(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Trace context crosses the bus in message headers, as W3C Trace Context
// (traceparent, tracestate) with the process's OpenTelemetry propagator:
// a notification's consumer, or the bridge running a command, continues
// the trace of the device message or the admin call that caused it.

// headerCarrier adapts nats.Header to OpenTelemetry's TextMapCarrier. NATS
// header keys are case-sensitive; the propagators use lower-case ones.
type headerCarrier nats.Header

func (h headerCarrier) Get(key string) string { return nats.Header(h).Get(key) }

func (h headerCarrier) Set(key, value string) { nats.Header(h).Set(key, value) }

func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// injectTrace writes ctx's trace context into h.
func injectTrace(ctx context.Context, h nats.Header) {
	otel.GetTextMapPropagator().Inject(ctx, headerCarrier(h))
}

// extractTrace returns ctx carrying the trace context found in h.
func extractTrace(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, headerCarrier(h))
}
