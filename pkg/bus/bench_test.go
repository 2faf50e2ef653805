package bus_test

import (
	"context"
	"sync"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/bus"
)

var benchAttrs = bus.Attributes{
	DeviceID: "device-000001", DeviceNumID: "2820000000000001", DeviceRegistryID: "bench-registry",
	DeviceRegistryLocation: "europe-west1", ProjectID: "bench-project",
}

// eachBenchBackend runs f on the embedded server and, when
// PASSERELLE_TEST_NATS_URL is set, on the external one.
func eachBenchBackend(b *testing.B, f func(b *testing.B, bs *bus.Bus)) {
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) { f(b, be.open(b, bus.Options{})) })
	}
}

// BenchmarkPublishNotification: one publisher waiting for each PubAck, as a
// bridge would if it handled one QoS 1 message at a time.
func BenchmarkPublishNotification(b *testing.B) {
	data := make([]byte, 100)
	eachBenchBackend(b, func(b *testing.B, bs *bus.Bus) {
		ctx := context.Background()
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := bs.PublishNotification(ctx, topic, bus.KindEvent, data, benchAttrs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkPublishNotificationAsync: many publishes in flight, each
// completed by its PubAck, as a bridge with many devices does.
func BenchmarkPublishNotificationAsync(b *testing.B) {
	benchAsync(b, (*bus.Bus).PublishNotificationAsync)
}

// BenchmarkPublishNotificationAtMostOnce: the same for QoS 0 events, with
// no message id (no duplicate-window entry in the stream).
func BenchmarkPublishNotificationAtMostOnce(b *testing.B) {
	benchAsync(b, (*bus.Bus).PublishNotificationAtMostOnce)
}

func benchAsync(b *testing.B, publish func(*bus.Bus, context.Context, string, bus.Kind, []byte, bus.Attributes, func(error)) error) {
	data := make([]byte, 100)
	eachBenchBackend(b, func(b *testing.B, bs *bus.Bus) {
		ctx := context.Background()
		var wg sync.WaitGroup
		done := func(err error) {
			if err != nil {
				b.Error(err)
			}
			wg.Done()
		}
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			wg.Add(1)
			if err := publish(bs, ctx, topic, bus.KindEvent, data, benchAttrs, done); err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkPublishNotificationParallel: synchronous publishes from many
// goroutines (one per connection handler in a bridge).
func BenchmarkPublishNotificationParallel(b *testing.B) {
	data := make([]byte, 100)
	eachBenchBackend(b, func(b *testing.B, bs *bus.Bus) {
		ctx := context.Background()
		b.SetBytes(int64(len(data)))
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := bs.PublishNotification(ctx, topic, bus.KindEvent, data, benchAttrs); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
