package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/passerelle-iot/passerelle/pkg/telemetry"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// resetGlobals puts no-op providers back so tests do not leak SDKs into
// each other.
func resetGlobals(t *testing.T) {
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
	})
}

func TestSetupOffWithoutEndpoint(t *testing.T) {
	resetGlobals(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "")
	tel, err := telemetry.Setup(t.Context(), discard(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		t.Error("an SDK tracer provider was installed with telemetry off")
	}
	// Metrics are on all the same, for /metrics.
	c, err := otel.Meter("test").Int64Counter("passerelle.test.things", metric.WithUnit("{thing}"))
	if err != nil {
		t.Fatal(err)
	}
	c.Add(t.Context(), 3, metric.WithAttributes(attribute.String("kind", "a")))
	rec := httptest.NewRecorder()
	tel.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, `passerelle_test_things_total{kind="a",otel_scope_name="test"`) || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d\n%s", rec.Code, body)
	}
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestSetupOnIsBoundedByShutdownContext(t *testing.T) {
	resetGlobals(t)
	// Nothing listens on port 1: export fails, and shutdown must still end
	// when its context does.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_SDK_DISABLED", "")
	tel, err := telemetry.Setup(t.Context(), discard(), "passerelle-test")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); !ok {
		t.Fatalf("tracer provider is %T, want the SDK's", otel.GetTracerProvider())
	}
	if _, ok := otel.GetMeterProvider().(*sdkmetric.MeterProvider); !ok {
		t.Fatalf("meter provider is %T, want the SDK's", otel.GetMeterProvider())
	}
	_, span := otel.Tracer("test").Start(context.Background(), "span")
	span.End()

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = tel.Shutdown(ctx) // an error is expected: the collector is unreachable
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v, want it bounded by its context", d)
	}
}
