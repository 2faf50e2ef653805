package hub_test

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

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/hub"
)

// attachedGauge reads hub.devices.attached.
func attachedGauge(t *testing.T, r *sdkmetric.ManualReader) int64 {
	t.Helper()
	return sumOf(t, r, "hub.devices.attached")
}

// sumOf reads an int64 counter or gauge of the hub.
func sumOf(t *testing.T, r *sdkmetric.ManualReader, name string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				var n int64
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					n += dp.Value
				}
				return n
			}
		}
	}
	return 0
}

// TestTelemetry: each MQTT message received is a root span naming its
// gateway and device; the attached-devices gauge counts a device once
// across a reconnect, and drops when it is released.
func TestTelemetry(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	e := newEnv(t, envConfig{poolOpts: []hub.PoolOption{hub.WithPoolTracerProvider(tp), hub.WithPoolMeterProvider(mp),
		hub.WithBackoff(10*time.Millisecond, 100*time.Millisecond)}})
	_, gw := setup(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	att := testutil.Must(e.hub.Attach(ctx))
	if err := att.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: "bound"}); err != nil {
		t.Fatal(err)
	}
	attCh, attErr := recvAll(att.Recv)
	next(t, "attach", attCh, attErr, 10*time.Second)
	cfgs := testutil.Must(e.hub.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: "bound"}))
	cfgCh, cfgErr := recvAll(cfgs.Recv)
	next(t, "first config", cfgCh, cfgErr, 10*time.Second)

	testutil.WaitFor(t, 5*time.Second, func() error {
		for _, s := range rec.Ended() {
			if s.Name() != "hub.receive config" {
				continue
			}
			attrs := attribute.NewSet(s.Attributes()...)
			if s.Parent().IsValid() {
				return fmt.Errorf("receive span has a parent")
			}
			if v, _ := attrs.Value("gateway"); v.AsString() != gw {
				return fmt.Errorf("receive span gateway %q", v.AsString())
			}
			if v, _ := attrs.Value("device"); v.AsString() != "bound" {
				return fmt.Errorf("receive span device %q", v.AsString())
			}
			return nil
		}
		return fmt.Errorf("no hub.receive config span")
	})
	if n := attachedGauge(t, reader); n != 1 {
		t.Fatalf("attached gauge %d, want 1", n)
	}

	e.stopBridge()
	e.startBridge()
	for {
		if next(t, "reattached", attCh, attErr, 15*time.Second).GetReattached() != nil {
			break
		}
	}
	if n := attachedGauge(t, reader); n != 1 {
		t.Fatalf("attached gauge after a reconnect %d, want 1", n)
	}
	if n := sumOf(t, reader, "hub.gateway.reconnects"); n < 1 {
		t.Fatalf("hub.gateway.reconnects %d after a reconnect, want at least 1", n)
	}
	cancel()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if n := attachedGauge(t, reader); n != 0 {
			return fmt.Errorf("attached gauge %d after release", n)
		}
		return nil
	})
}
