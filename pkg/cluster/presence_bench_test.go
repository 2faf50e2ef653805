//go:build unix

package cluster_test

import (
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/cluster"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/pkg/testutil/natstest"
)

// BenchmarkPresenceConnect is the cost of the one-connection-per-client
// rule across processes, per connect: two Presences (bridges A and B),
// each on its own TCP connection to one NATS server in this process. A
// holds every client; each operation is a client connecting again through
// B: B's compare-and-set of its record (a read and a write), and A's watch
// delivering it and closing A's connection. The time is from B's Claim to
// A's lost callback. cpu-us/op is the CPU of the whole process (both
// Presences and the NATS server) per connect.
//
//   - takeover: one connect at a time (the latency of the rule);
//   - storm: every connect at once (a reconnect storm: throughput, and the
//     latency under it).
//
// A first connect (no record yet: a read and a create) costs about the
// same as B's side of a takeover, and nothing on A.
func BenchmarkPresenceConnect(b *testing.B) {
	url := natstest.Server(b).ClientURL()
	for _, mode := range []string{"takeover", "storm"} {
		b.Run(mode, func(b *testing.B) {
			// Instance ids are unique per start, also across rounds.
			pa, pb := benchNode(b, url, "a-"+cluster.NewInstanceID()), benchNode(b, url, "b-"+cluster.NewInstanceID())
			keys := make([]string, b.N)
			lost := make([]chan time.Time, b.N)
			t0 := time.Now()
			for i := range keys {
				keys[i] = mode + "-" + strconv.Itoa(i)
				lost[i] = make(chan time.Time, 1)
				if _, err := pa.Claim(keys[i], t0, func() { lost[i] <- time.Now() }); err != nil {
					b.Fatal(err)
				}
			}
			testutil.WaitFor(b, time.Minute, func() error {
				if n := pa.Pending(); n > 0 {
					return errPending(n)
				}
				return nil
			})
			lat := make([]time.Duration, b.N)
			cpu0 := cpuTime()
			b.ResetTimer()
			start := time.Now()
			if mode == "takeover" {
				for i, k := range keys {
					at := time.Now()
					if _, err := pb.Claim(k, at, nil); err != nil {
						b.Fatal(err)
					}
					lat[i] = (<-lost[i]).Sub(at)
				}
			} else {
				ats := make([]time.Time, b.N)
				for i, k := range keys {
					ats[i] = time.Now()
					if _, err := pb.Claim(k, ats[i], nil); err != nil {
						b.Fatal(err)
					}
				}
				for i := range keys {
					lat[i] = (<-lost[i]).Sub(ats[i])
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cpu := cpuTime() - cpu0
			slices.Sort(lat)
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "connects/s")
		})
	}
}

type errPending int

func (e errPending) Error() string { return strconv.Itoa(int(e)) + " claims pending" }

func benchNode(b *testing.B, url, instance string) *cluster.Presence {
	b.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	p, err := cluster.NewPresence(b.Context(), testutil.Logger(b), js, instance, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() })
	return p
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
