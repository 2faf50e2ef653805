package hub_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
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
