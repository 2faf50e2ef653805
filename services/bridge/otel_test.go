package bridge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

func TestTelemetry(t *testing.T) {
	keys(t)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	e := newEnv(t, bridge.WithTracerProvider(tp), bridge.WithMeterProvider(mp))
	e.createDevice("dev-1", ecKey, nil)
	c := e.connect("dev-1", ecKey)
	wait(t, c.Publish("/devices/dev-1/events", 1, false, []byte("x")))
	if _, err := e.dial(clientID("nobody"), ecKey.jwt(t)); err == nil {
		t.Fatal("unknown device connected")
	}

	testutil.WaitFor(t, 5*time.Second, func() error {
		got := map[string]map[attribute.Key]attribute.Value{}
		for _, s := range spans.Ended() {
			m := map[attribute.Key]attribute.Value{}
			for _, a := range s.Attributes() {
				m[a.Key] = a.Value
			}
			got[s.Name()] = m
		}
		if a := got["bridge.connect"]; a == nil {
			return fmt.Errorf("no connect span in %v", got)
		}
		if a := got["bridge.event publish"]; a == nil || a["passerelle.device"].AsString() != "dev-1" {
			return fmt.Errorf("event span %v", a)
		}
		return nil
	})

	sums := metricSums(t, reader)
	for name, want := range map[string]int64{
		"passerelle.bridge.connections":             1,
		"passerelle.bridge.messages.in/event":       1,
		"passerelle.bridge.connects.refused/device": 1,
	} {
		if sums[name] != want {
			t.Errorf("%s = %d, want %d (all: %v)", name, sums[name], want, sums)
		}
	}
}

// metricSums collects the int64 sums of a metric reader, by name/attribute.
func metricSums(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range s.DataPoints {
					name := m.Name
					for _, a := range dp.Attributes.ToSlice() {
						name += "/" + a.Value.Emit()
					}
					out[name] += dp.Value
				}
			}
		}
	}
	return out
}
