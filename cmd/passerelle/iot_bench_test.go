package main

import (
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/migrate"
)

// BenchmarkMigrate10000 copies a registry of 10,000 devices (1,000
// bindings, configs, keys) from one manager into a fresh one per
// iteration and reports devices per second (go test -run '^$' -bench
// Migrate -benchtime 1x ./cmd/passerelle).
func BenchmarkMigrate10000(b *testing.B) {
	const n = 10000
	srcAPI := startManager(b)
	src := dialAPI(b, srcAPI.addr, srcAPI.token)
	populate(b, src, n)
	api := &migrate.API{Client: src, Locations: []string{"projects/p1/locations/us-central1"}, CallOptions: migrate.Retry()}
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		dstAPI := startManager(b)
		dst := dialAPI(b, dstAPI.addr, dstAPI.token)
		b.StartTimer()
		start := time.Now()
		rep, err := migrate.Run(context.Background(), slog.New(slog.DiscardHandler), api, dst, migrate.Options{Concurrency: 16, CallOptions: migrate.Retry()})
		total += time.Since(start)
		if err != nil || rep.Failed() > 0 || rep.Counts["device"][migrate.Created] != n {
			b.Fatalf("migrate: %v, %v", err, rep.Counts)
		}
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "devices/s")
}

// BenchmarkIoTHelpStartup runs the built binary's `passerelle iot --help`:
// the command line's start-up cost, package initialisation included.
func BenchmarkIoTHelpStartup(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "passerelle")
	if out, err := exec.Command("go", "build", "-trimpath", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	for b.Loop() {
		if out, err := exec.Command(bin, "iot", "--help").CombinedOutput(); err != nil {
			b.Fatalf("passerelle iot --help: %v\n%s", err, out)
		}
	}
}
