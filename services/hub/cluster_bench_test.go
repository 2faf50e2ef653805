package hub_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// BenchmarkGatewayMove: the time for a gateway to move between hub
// replicas while a caller on another replica holds it: from the moment
// its owner is killed (kill: its leases lapse, 3 s after their last
// refresh) or starts draining (drain: it hands the gateway over), to the
// moment the caller's replica has it connected and an event through it is
// acknowledged. Each iteration adds a replica for the next move. Metrics:
// ms/move (mean) and max-ms.
func BenchmarkGatewayMove(b *testing.B) {
	for _, how := range []string{"kill", "drain"} {
		b.Run(how, func(b *testing.B) {
			e := newClusterEnv(b)
			// Replicas settle for a minute: no balance moves meanwhile.
			cfg := replicaConfig{drain: 2 * time.Second, settle: time.Minute}
			owner := e.addReplica("hub-0", cfg)
			_, gws := clusterSetup(b, e, owner, "gw-1")
			gw := gws[0]
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// The first owner holds the gateway itself.
			cfgs := testutil.Must(owner.client.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw}))
			testutil.Must(cfgs.Recv())
			waitOwner(b, gw, 10*time.Second, owner)
			var moves []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				caller := e.addReplica(fmt.Sprintf("hub-%d", i+1), cfg)
				waitMembers(b, owner, caller)
				s := testutil.Must(caller.client.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw}))
				testutil.Must(s.Recv())
				if got := waitOwner(b, gw, 10*time.Second, owner, caller); got != owner {
					b.Fatalf("%s took the gateway before the move", got.name)
				}
				b.StartTimer()
				start := time.Now()
				stopped := make(chan struct{})
				if how == "kill" {
					owner.kill()
					close(stopped)
				} else {
					go func() { owner.stop(); close(stopped) }()
				}
				waitOwner(b, gw, 20*time.Second, caller)
				if _, err := caller.client.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, Data: []byte("moved")}); err != nil {
					b.Fatalf("event after the move: %v", err)
				}
				moves = append(moves, time.Since(start))
				b.StopTimer()
				<-stopped
				e.conns.checkOnce(b, gw)
				owner = caller
				b.StartTimer()
			}
			var sum time.Duration
			for _, d := range moves {
				sum += d
			}
			b.ReportMetric(float64(sum.Milliseconds())/float64(len(moves)), "ms/move")
			b.ReportMetric(float64(slices.Max(moves).Milliseconds()), "max-ms")
		})
	}
}

// BenchmarkRelayedPublishEvent: PublishEvent for 10 devices of one
// gateway (each held attached by an Attach stream on the replica called)
// by 16 concurrent callers, called on the replica that holds the gateway
// (direct) and on another one (relayed), to show what a relay costs. One
// op is a round of 1,000 events.
func BenchmarkRelayedPublishEvent(b *testing.B) {
	e := newClusterEnv(b, bridge.WithMessageRate(0, 0), bridge.WithByteRate(0))
	a, c := e.addReplica("hub-a", replicaConfig{}), e.addReplica("hub-b", replicaConfig{})
	waitMembers(b, a, c)
	_, gws := clusterGateways(b, e, a, false, "gw-1")
	gw := gws[0]
	owner, other := ownerAndOther(gw, a, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const devices, workers, round = 10, 16, 1000
	for _, r := range []*replica{owner, other} {
		for d := range devices {
			att := testutil.Must(r.client.Attach(ctx))
			if err := att.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: fmt.Sprintf("dev-%d", d), CreateIfMissing: true, BindIfNeeded: true}); err != nil {
				b.Fatal(err)
			}
			testutil.Must(att.Recv())
		}
	}
	for _, tc := range []struct {
		name string
		r    *replica
	}{{"direct", owner}, {"relayed", other}} {
		b.Run(tc.name, func(b *testing.B) {
			var msgs int64
			var lat []time.Duration
			var mu sync.Mutex
			for b.Loop() {
				var next atomic.Int64
				var wg sync.WaitGroup
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var mine []time.Duration
						for {
							n := next.Add(1) - 1
							if n >= round {
								break
							}
							start := time.Now()
							if _, err := tc.r.client.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: fmt.Sprintf("dev-%d", n%devices), Data: []byte("x")}); err != nil {
								b.Error(err)
								return
							}
							mine = append(mine, time.Since(start))
						}
						mu.Lock()
						lat = append(lat, mine...)
						mu.Unlock()
					}()
				}
				wg.Wait()
				msgs += round
			}
			b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
			reportLatencies(b, "call-", lat)
		})
	}
}
