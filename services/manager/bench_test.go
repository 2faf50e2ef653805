package manager_test

// Benchmarks of the admin API through Google's gRPC client, on SQLite always
// and on PostgreSQL when PASSERELLE_TEST_POSTGRES_URL is set. Durability is
// on in both (SQLite synchronous=FULL, PostgreSQL synchronous_commit on): a
// write is on disk when the call returns.
//
//	make bench                      # or:
//	go test -run '^$' -bench . -benchtime 3s ./services/manager/

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

func BenchmarkCreateDevice(b *testing.B) {
	forEachBackend(b, func(b *testing.B, env *apiEnv) {
		reg := env.createRegistry(b, "bench-create")
		var n atomic.Int64
		b.SetParallelism(8) // 16 callers on 2 cores
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := fmt.Sprintf("dev-%d", n.Add(1))
				_, err := env.grpc.CreateDevice(context.Background(), &iotpb.CreateDeviceRequest{
					Parent: reg, Device: &iotpb.Device{Id: id},
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "devices/s")
	})
}

func BenchmarkGetDevice(b *testing.B) {
	forEachBackend(b, func(b *testing.B, env *apiEnv) {
		reg := env.createRegistry(b, "bench-get")
		const devices = 1000
		names := make([]string, devices)
		g, ctx := errgroup.WithContext(context.Background())
		g.SetLimit(16)
		for i := range devices {
			g.Go(func() error {
				d, err := env.grpc.CreateDevice(ctx, &iotpb.CreateDeviceRequest{
					Parent: reg, Device: &iotpb.Device{Id: fmt.Sprintf("dev-%d", i)},
				})
				if err == nil {
					names[i] = d.GetName()
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		var n atomic.Int64
		b.SetParallelism(16 / runtime.GOMAXPROCS(0))
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				name := names[int(n.Add(1))%devices]
				if _, err := env.grpc.GetDevice(context.Background(), &iotpb.GetDeviceRequest{Name: name}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "gets/s")
	})
}

// BenchmarkListDevices100k lists a registry of 100,000 devices in pages of
// 1,000 through the gRPC client; one op is the whole listing.
func BenchmarkListDevices100k(b *testing.B) {
	forEachBackend(b, func(b *testing.B, env *apiEnv) {
		const total = 100_000
		reg := env.createRegistry(b, "bench-list")
		key := registryKey(b, reg)
		// Provision through the store: going through the API would only
		// measure CreateDevice again, for a minute.
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > total {
						return
					}
					_, err := env.store.CreateDevice(context.Background(), &store.Device{
						Registry: key, ID: fmt.Sprintf("dev-%06d", i),
						Metadata: map[string]string{"site": "bench"},
					}, time.Now())
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			return
		}
		b.ResetTimer()
		for b.Loop() {
			it := env.grpc.ListDevices(context.Background(), &iotpb.ListDevicesRequest{Parent: reg, PageSize: 1000})
			seen := 0
			for {
				_, err := it.Next()
				if err == iterator.Done {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				seen++
			}
			if seen != total {
				b.Fatalf("listed %d devices, want %d", seen, total)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/listing")
	})
}
