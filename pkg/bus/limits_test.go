package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/passerelle-iot/passerelle/pkg/bus"
)

// limitsOf reads the stream's limits as JetStream holds them.
func limitsOf(t *testing.T, b *bus.Bus) jetstream.StreamConfig {
	t.Helper()
	info, err := b.StreamInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.Config
}

func checkLimits(t *testing.T, what string, got jetstream.StreamConfig, maxBytes, maxMsgs int64, maxAge time.Duration, discard jetstream.DiscardPolicy) {
	t.Helper()
	if got.MaxBytes != maxBytes || got.MaxMsgs != maxMsgs || got.MaxAge != maxAge || got.Discard != discard {
		t.Errorf("%s: stream limits max_bytes=%d max_msgs=%d max_age=%s discard=%s, want %d %d %s %s",
			what, got.MaxBytes, got.MaxMsgs, got.MaxAge, got.Discard, maxBytes, maxMsgs, maxAge, discard)
	}
}

// TestStreamLimits: a new stream gets the defaults or the limits given;
// a later Open applies the limits it is given to the existing stream
// (UpdateStream) and keeps those it is not given, so a manager or a hub,
// which give none, never undoes a bridge's.
func TestStreamLimits(t *testing.T) {
	type opener func(t *testing.T, opts bus.Options) *bus.Bus
	run := func(t *testing.T, open opener) {
		b := open(t, bus.Options{})
		checkLimits(t, "defaults", limitsOf(t, b), bus.DefaultStreamMaxBytes, -1, bus.DefaultStreamMaxAge, jetstream.DiscardOld)
		_ = b.Close()

		b = open(t, bus.Options{Stream: bus.StreamLimits{MaxBytes: 8 << 20, MaxMsgs: 1000, MaxAge: time.Hour, Discard: bus.DiscardNew}})
		checkLimits(t, "updated", limitsOf(t, b), 8<<20, 1000, time.Hour, jetstream.DiscardNew)
		_ = b.Close()

		b = open(t, bus.Options{})
		checkLimits(t, "kept by an Open without limits", limitsOf(t, b), 8<<20, 1000, time.Hour, jetstream.DiscardNew)
		_ = b.Close()

		b = open(t, bus.Options{Stream: bus.StreamLimits{MaxBytes: -1, MaxAge: -1, Discard: bus.DiscardOld}})
		checkLimits(t, "limits removed", limitsOf(t, b), -1, 1000, 0, jetstream.DiscardOld)
	}
	t.Run("embedded", func(t *testing.T) {
		dir := t.TempDir()
		run(t, func(t *testing.T, opts bus.Options) *bus.Bus {
			opts.DataDir = dir
			return openEmbedded(t, opts)
		})
	})
	if u := externalURL(t); u != "" {
		t.Run("external", func(t *testing.T) {
			id := uniqueID(t)
			run(t, func(t *testing.T, opts bus.Options) *bus.Bus {
				opts.URL = u
				opts.StreamName = "PASSERELLE_TEST_" + strings.ToUpper(id)
				opts.SubjectPrefix = "ptest." + id + ".pubsub"
				opts.ControlPrefix = "ptest." + id + ".ctl"
				return openUnique(t, opts)
			})
		})
	}
}

func TestStreamLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		l    bus.StreamLimits
		want string
	}{
		{bus.StreamLimits{MaxBytes: 1000}, "at least 1 MiB"},
		{bus.StreamLimits{MaxAge: time.Millisecond}, "at least 1s"},
		{bus.StreamLimits{Discard: "oldest"}, `give "old" or "new"`},
	} {
		err := tc.l.Validate()
		if err == nil || !errors.Is(err, bus.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an ErrInvalid saying %q", tc.l, err, tc.want)
		}
		if _, err := bus.Open(context.Background(), discard(), bus.Options{DataDir: t.TempDir(), Stream: tc.l}); !errors.Is(err, bus.ErrInvalid) {
			t.Errorf("Open with %+v: %v, want ErrInvalid", tc.l, err)
		}
	}
	for _, l := range []bus.StreamLimits{{}, {MaxBytes: -1, MaxMsgs: -1, MaxAge: -1}, {MaxBytes: 1 << 20, MaxMsgs: 1, MaxAge: time.Second, Discard: bus.DiscardNew}} {
		if err := l.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", l, err)
		}
	}
}

// fillGauge reads passerelle.bus.stream.fill; ok is false while it has no
// value.
func fillGauge(t *testing.T, r *sdkmetric.ManualReader) (v float64, ok bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "passerelle.bus.stream.fill" {
				for _, dp := range m.Data.(metricdata.Gauge[float64]).DataPoints {
					return dp.Value, true
				}
			}
		}
	}
	return 0, false
}

// TestStreamNearlyFull: with WatchStream, a stream past the warning level
// of its message limit is logged once as a warning, and the fill gauge
// says how full it is.
func TestStreamNearlyFull(t *testing.T) {
	var logs syncBuffer
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	b, err := bus.Open(context.Background(), textLogger(&logs), bus.Options{
		DataDir: t.TempDir(), Stream: bus.StreamLimits{MaxMsgs: 10},
		WatchStream: true, StreamWatchInterval: 10 * time.Millisecond, MeterProvider: mp,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	const topic = "projects/p/topics/full"
	for range 7 {
		if err := b.PublishNotification(ctxT(t), topic, bus.KindEvent, []byte("x"), bus.Attributes{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the gauge to read 0.7", func() bool { v, ok := fillGauge(t, reader); return ok && v > 0.69 && v < 0.71 })
	if strings.Contains(logs.String(), "nearly full") {
		t.Fatalf("warned at 70%%: %s", logs.String())
	}
	for range 2 {
		if err := b.PublishNotification(ctxT(t), topic, bus.KindEvent, []byte("x"), bus.Attributes{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the nearly-full warning", func() bool { return strings.Contains(logs.String(), "nearly full") })
	waitFor(t, 10*time.Second, "the gauge to read 0.9", func() bool { v, ok := fillGauge(t, reader); return ok && v > 0.89 && v < 0.91 })
	if n := strings.Count(logs.String(), "nearly full"); n != 1 {
		t.Errorf("%d warnings, want 1 until the stream is back under the level:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "fill_percent=90") {
		t.Errorf("warning without its level or figure: %s", logs.String())
	}
}
