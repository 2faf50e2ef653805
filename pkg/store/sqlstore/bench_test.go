package sqlstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

var benchReg = store.RegistryKey{Project: "p", Location: "us-central1", ID: "bench"}

// backends runs a benchmark on SQLite and, when configured, PostgreSQL.
func backends(b *testing.B, fn func(b *testing.B, s store.Store)) {
	b.Run("sqlite", func(b *testing.B) {
		s := openSQLite(b)
		defer s.Close()
		fn(b, s)
	})
	b.Run("postgres", func(b *testing.B) {
		s := openPostgres(b)
		defer s.Close()
		fn(b, s)
	})
}

func benchRegistry(b *testing.B, s store.Store) {
	if err := s.CreateRegistry(context.Background(), &store.Registry{Key: benchReg}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCreateDevice creates devices from concurrent callers, as the
// API does, with durable commits.
func BenchmarkCreateDevice(b *testing.B) {
	backends(b, func(b *testing.B, s store.Store) {
		benchRegistry(b, s)
		var n atomic.Int64
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := fmt.Sprintf("d%d", n.Add(1))
				if _, err := s.CreateDevice(context.Background(), &store.Device{Registry: benchReg, ID: id,
					Credentials: []store.Credential{{Format: 2, Key: "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"}},
					Metadata:    map[string]string{"k": "v"}}, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
	})
}

// BenchmarkGetDeviceParallel reads devices by id from 16 callers.
func BenchmarkGetDeviceParallel(b *testing.B) {
	backends(b, func(b *testing.B, s store.Store) {
		benchRegistry(b, s)
		const n = 1000
		createMany(b, s, n)
		var i atomic.Int64
		b.SetParallelism(max(1, 16/b.N+16)) // ~16 goroutines per GOMAXPROCS/2 machine
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := fmt.Sprintf("d%d", i.Add(1)%n)
				if _, err := s.GetDevice(context.Background(), store.DeviceRef{Registry: benchReg, ID: id}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
	})
}

// BenchmarkListDevices100k lists 100,000 devices in pages of 1,000.
func BenchmarkListDevices100k(b *testing.B) {
	backends(b, func(b *testing.B, s store.Store) {
		benchRegistry(b, s)
		const n = 100000
		createMany(b, s, n)
		b.ResetTimer()
		for range b.N {
			var after uint64
			total := 0
			for {
				page, err := s.ListDevices(context.Background(), store.DeviceQuery{Registry: benchReg, AfterNumID: after, Limit: 1000})
				if err != nil {
					b.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				total += len(page)
				after = page[len(page)-1].NumID
			}
			if total != n {
				b.Fatalf("listed %d devices, want %d", total, n)
			}
		}
	})
}

// createMany creates devices d0..d(n-1) from 32 concurrent callers.
func createMany(b *testing.B, s store.Store, n int) {
	b.Helper()
	const workers = 32
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := w; i < n; i += workers {
				if _, err := s.CreateDevice(context.Background(), &store.Device{Registry: benchReg, ID: fmt.Sprintf("d%d", i),
					Metadata: map[string]string{"k": "v"}}, time.Now()); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}
