package bus_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/passerelle-iot/passerelle/pkg/bus"
)

// TestTraceContextCrossesTheBus: a notification carries its publisher's
// trace context as a W3C traceparent header any consumer can read, and a
// command handler runs in the sender's trace.
func TestTraceContextCrossesTheBus(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	const want = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	b := openEmbedded(t, bus.Options{})
	ctx := trace.ContextWithSpanContext(ctxT(t), parent)
	if err := b.PublishNotification(ctx, topic, bus.KindEvent, []byte("e"), bus.Attributes{DeviceID: "dev-1"}); err != nil {
		t.Fatal(err)
	}
	m := storedNotifications(t, ctx, b, topic, 1)[0]
	if got := m.Headers().Get("traceparent"); got != want {
		t.Errorf("notification traceparent %q, want %q", got, want)
	}

	seen := make(chan trace.SpanContext, 1)
	stop, err := b.HandleCommands(7, func(ctx context.Context, _ bus.Command) error {
		seen <- trace.SpanContextFromContext(ctx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := b.SendCommand(ctx, 7, bus.Command{Data: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got.TraceID() != parent.TraceID() || got.SpanID() != parent.SpanID() || !got.IsRemote() {
		t.Errorf("command handler's span context %v, want the sender's %v, remote", got, parent)
	}
}
