//go:build unix

package bridge_test

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/cluster"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/pkg/testutil/natstest"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

// BenchmarkBridgeConnect is a whole MQTT connect (plain TCP, ES256 JWT)
// and disconnect of one device, one after the other, on a bridge alone
// and on a bridge with the cluster's presence (whose claim and release
// are written after the CONNACK, so the latency is about the same; the
// CPU is what they add). cpu-us/op is the whole process's: paho, the
// bridge, SQLite, the NATS server.
func BenchmarkBridgeConnect(b *testing.B) {
	keys(b)
	for _, mode := range []string{"alone", "presence"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			log := testutil.Logger(b)
			st := testutil.Must(sqlstore.Open(ctx, log, b.TempDir()+"/db.sqlite"))
			b.Cleanup(func() { _ = st.Close() })
			if err := st.CreateRegistry(ctx, &store.Registry{Key: regKey}); err != nil {
				b.Fatal(err)
			}
			if _, err := st.CreateDevice(ctx, &store.Device{Registry: regKey, ID: "dev", Credentials: []store.Credential{ecKey.cred}}, time.Now()); err != nil {
				b.Fatal(err)
			}
			bs := testutil.Must(bus.Open(ctx, log, bus.Options{URL: natstest.Server(b).ClientURL()}))
			b.Cleanup(func() { _ = bs.Close() })
			var opts []bridge.Option
			var p *cluster.Presence
			if mode == "presence" {
				p = testutil.Must(cluster.NewPresence(ctx, log, testutil.Must(jetstream.New(bs.Conn())), cluster.NewInstanceID(), 1))
				b.Cleanup(func() { _ = p.Close() })
				opts = append(opts, bridge.WithPresence(p))
			}
			br := bridge.New(log, st, bs, append(opts, bridge.WithMessageRate(0, 0))...)
			ln := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
			sctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- br.Serve(sctx, ln) }()
			b.Cleanup(func() { cancel(); <-done })
			token := ecKey.jwt(b)
			o := paho.NewClientOptions().AddBroker("tcp://" + ln.Addr().String()).SetClientID(clientID("dev")).
				SetUsername("unused").SetPassword(token).SetProtocolVersion(4).SetAutoReconnect(false).
				SetConnectTimeout(10 * time.Second)
			connect := func() {
				c := paho.NewClient(o)
				if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					b.Fatalf("connect: %v", tok.Error())
				}
				c.Disconnect(0)
			}
			testutil.WaitFor(b, 10*time.Second, func() error { return br.Ready(ctx) })
			connect() // warm the caches
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				connect()
			}
			b.StopTimer()
			if p != nil {
				testutil.WaitFor(b, time.Minute, func() error {
					if n := p.Pending(); n > 0 {
						return errPending(n)
					}
					return nil
				})
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

type errPending int

func (e errPending) Error() string { return "presence writes pending" }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
