package main

import (
	"context"
	"crypto/ecdsa"
	"encoding/binary"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
	ps "github.com/passerelle-iot/passerelle/services/pubsub"
)

// benchStack is the bridge (plain MQTT) and the Pub/Sub API on one
// embedded bus, in process, with devices of one registry whose events go to
// projects/bench/topics/events.
type benchStack struct {
	mqttAddr, psAddr string
	key              *ecdsa.PrivateKey
	reg              store.RegistryKey
	client           *pubsub.Client
}

func startBench(b *testing.B, devices int) *benchStack {
	b.Helper()
	ctx := context.Background()
	log := testutil.Logger(b)
	st := testutil.Must(sqlstore.Open(ctx, log, filepath.Join(b.TempDir(), "db.sqlite")))
	b.Cleanup(func() { _ = st.Close() })
	bs := testutil.Must(bus.Open(ctx, log, bus.Options{DataDir: filepath.Join(b.TempDir(), "nats")}))
	b.Cleanup(func() { _ = bs.Close() })
	s := &benchStack{reg: store.RegistryKey{Project: "bench", Location: "us-central1", ID: "reg"}}
	key, pubPEM := es256Key(&testing.T{})
	s.key = key
	if err := st.CreateRegistry(ctx, &store.Registry{Key: s.reg,
		EventNotificationConfigs: []store.EventNotificationConfig{{PubsubTopicName: "projects/bench/topics/events"}}}); err != nil {
		b.Fatal(err)
	}
	for i := range devices {
		if _, err := st.CreateDevice(ctx, &store.Device{Registry: s.reg, ID: fmt.Sprintf("dev-%d", i),
			Credentials: []store.Credential{{Format: int32(iotpb.PublicKeyFormat_ES256_PEM), Key: pubPEM}}}, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	br := bridge.New(log, st, bs, bridge.WithMessageRate(0, 0))
	ln := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	s.mqttAddr = ln.Addr().String()
	b.Cleanup(testutil.Serve(b, func(ctx context.Context) error { return br.Serve(ctx, ln) }))
	srv := testutil.Must(ps.New(log, bs, ps.WithAllowUnauthenticated(), ps.WithRegistryTopics(st.(ps.TopicLister).NotificationTopics)))
	pl := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	s.psAddr = pl.Addr().String()
	b.Cleanup(testutil.Serve(b, func(ctx context.Context) error { return srv.Serve(ctx, pl) }))
	s.client = testutil.Must(pubsub.NewClient(ctx, "bench", option.WithEndpoint(s.psAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))))
	b.Cleanup(func() { _ = s.client.Close() })
	return s
}

func (s *benchStack) device(b *testing.B, i int) paho.Client {
	b.Helper()
	now := time.Now()
	password := testutil.Must(jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), Audience: jwt.ClaimStrings{"bench"},
	}).SignedString(s.key))
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + s.mqttAddr).
		SetClientID(fmt.Sprintf("projects/bench/locations/us-central1/registries/reg/devices/dev-%d", i)).
		SetUsername("unused").SetPassword(password).SetProtocolVersion(4).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect: %v", tok.Error())
	}
	b.Cleanup(func() { c.Disconnect(0) })
	return c
}

func (s *benchStack) subscription(b *testing.B, id string) string {
	b.Helper()
	name := "projects/bench/subscriptions/" + id
	if _, err := s.client.SubscriptionAdminClient.CreateSubscription(context.Background(), &pubsubpb.Subscription{
		Name: name, Topic: "projects/bench/topics/events"}); err != nil { // the default 10 s deadline
		b.Fatal(err)
	}
	return name
}

// publishAll sends n QoS 1 events over the devices, each device with up to
// window PUBLISHes waiting for their PUBACK.
func publishAll(b *testing.B, devs []paho.Client, n, window int) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var toks []paho.Token
			for {
				i := next.Add(1)
				if i > int64(n) {
					break
				}
				var p [16]byte
				binary.BigEndian.PutUint64(p[:], uint64(time.Now().UnixNano()))
				toks = append(toks, d.Publish("/devices/x/events", 1, false, p[:]))
				if len(toks) >= window {
					for _, t := range toks {
						if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
							b.Errorf("publish: %v", t.Error())
						}
					}
					toks = toks[:0]
				}
			}
			for _, t := range toks {
				if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
					b.Errorf("publish: %v", t.Error())
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkPubSubThroughput: QoS 1 events from 100 devices, acknowledged
// by the bridge ("bridge"); the same while a StreamingPull subscriber
// (Google's Go client) receives and acks each ("subscriber": the time runs
// until the last is received); and the subscriber alone reading b.N events
// the bridge stored before the timer started ("drain": what the Pub/Sub
// path delivers when it does not share the machine's cores with the
// bridge and the devices). Compare the msg/s of one run: "subscriber"
// over "bridge" is the end-to-end ratio on this machine, "drain" over
// "bridge" whether the Pub/Sub path is the narrower of the two.
func BenchmarkPubSubThroughput(b *testing.B) {
	const devices, window = 100, 8
	for _, mode := range []string{"bridge", "subscriber", "drain"} {
		b.Run(mode, func(b *testing.B) {
			s := startBench(b, devices)
			devs := make([]paho.Client, devices)
			for i := range devs {
				devs[i] = s.device(b, i)
				devs[i] = reclient(devs[i], i)
			}
			var received atomic.Int64
			var stop context.CancelFunc = func() {}
			done := make(chan struct{})
			var name string
			receive := func() {
				var ctx context.Context
				ctx, stop = context.WithCancel(context.Background())
				sub := s.client.Subscriber(name)
				sub.ReceiveSettings.MaxOutstandingMessages = 10_000
				go func() {
					defer close(done)
					_ = sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) { m.Ack(); received.Add(1) })
				}()
			}
			var pubEl time.Duration
			switch mode {
			case "subscriber":
				name = s.subscription(b, "thr")
				receive()
			case "drain":
				// The subscription exists before the events, so it has
				// them all; its subscriber starts with the timer.
				name = s.subscription(b, "thr")
				publishAll(b, devs, b.N, window)
			default:
				close(done)
			}
			b.ResetTimer()
			start := time.Now()
			if mode == "drain" {
				receive()
			} else {
				publishAll(b, devs, b.N, window)
				pubEl = time.Since(start)
			}
			if mode != "bridge" {
				testutil.WaitFor(b, 5*time.Minute, func() error {
					if n := received.Load(); n < int64(b.N) {
						return fmt.Errorf("%d of %d received", n, b.N)
					}
					return nil
				})
			}
			el := time.Since(start)
			b.StopTimer()
			stop()
			<-done
			b.ReportMetric(float64(b.N)/el.Seconds(), "msg/s")
			if pubEl > 0 {
				b.ReportMetric(pubEl.Seconds(), "publish-s")
			}
		})
	}
}

// reclient publishes events on the device's own topic (publishAll writes
// a placeholder device id).
func reclient(c paho.Client, i int) paho.Client {
	return topicClient{c, fmt.Sprintf("/devices/dev-%d/events", i)}
}

type topicClient struct {
	paho.Client
	topic string
}

func (t topicClient) Publish(_ string, qos byte, retained bool, payload any) paho.Token {
	return t.Client.Publish(t.topic, qos, retained, payload)
}

// BenchmarkPubSubLatency: 1,000 events a second (4 devices, 250 each) for
// 5 s; the time from the device's PUBLISH to the subscriber's receipt.
func BenchmarkPubSubLatency(b *testing.B) {
	const devices, rate, seconds = 4, 1000, 5
	s := startBench(b, devices)
	name := s.subscription(b, "lat")
	var mu sync.Mutex
	var lat []time.Duration
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	sub := s.client.Subscriber(name)
	go func() {
		defer close(done)
		_ = sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			d := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(m.Data))))
			m.Ack()
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		})
	}()
	devs := make([]paho.Client, devices)
	for i := range devs {
		devs[i] = reclient(s.device(b, i), i)
	}
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		for _, d := range devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.NewTicker(time.Second * devices / rate)
				defer t.Stop()
				for range rate / devices * seconds {
					<-t.C
					var p [16]byte
					binary.BigEndian.PutUint64(p[:], uint64(time.Now().UnixNano()))
					d.Publish("", 1, false, p[:])
				}
			}()
		}
		wg.Wait()
	}
	testutil.WaitFor(b, time.Minute, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(lat) < b.N*rate*seconds {
			return fmt.Errorf("%d of %d received", len(lat), b.N*rate*seconds)
		}
		return nil
	})
	b.StopTimer()
	cancel()
	<-done
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}

// BenchmarkPubSubMemory: heap and goroutines per idle subscription, then
// per open StreamingPull stream (its client side, in the same process, is
// counted too).
func BenchmarkPubSubMemory(b *testing.B) {
	const n = 200
	s := startBench(b, 0)
	measure := func() (uint64, int) {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse, runtime.NumGoroutine()
	}
	for range b.N {
		h0, g0 := measure()
		names := make([]string, n)
		for i := range names {
			names[i] = s.subscription(b, fmt.Sprintf("idle-%d-%d", i, time.Now().UnixNano()))
		}
		h1, g1 := measure()
		ctx, cancel := context.WithCancel(context.Background())
		for _, name := range names {
			st, err := s.client.SubscriptionAdminClient.StreamingPull(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := st.Send(&pubsubpb.StreamingPullRequest{Subscription: name, StreamAckDeadlineSeconds: 60, ProtocolVersion: 1}); err != nil {
				b.Fatal(err)
			}
			// A ping answered means the stream is set up server-side.
			if err := st.Send(&pubsubpb.StreamingPullRequest{}); err != nil {
				b.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				b.Fatal(err)
			}
		}
		h2, g2 := measure()
		cancel()
		b.ReportMetric(float64(int64(h1)-int64(h0))/n/1024, "KiB/subscription")
		b.ReportMetric(float64(g1-g0)/n, "goroutines/subscription")
		b.ReportMetric(float64(int64(h2)-int64(h1))/n/1024, "KiB/stream")
		b.ReportMetric(float64(g2-g1)/n, "goroutines/stream")
	}
}
