//go:build unix

package hub_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// BenchmarkPublishEvents: QoS 1 events acknowledged per second, 1,000
// devices on 10 gateways, 100-byte payloads, measured four ways in one
// run (issue 10):
//
//   - unary-unattached: PublishEvent from 64 callers, no stream holding
//     the devices (each call attaches and detaches its device);
//   - unary-attached: the same with every device held by an Attach stream;
//   - stream: one PublishEvents stream per gateway (10);
//   - bridge-qos1: the bridge itself, one paho MQTT connection per gateway
//     (10 other gateways, 1,000 other devices, attached beforehand) with
//     as many QoS 1 publishes in flight as a stream's window (256).
//
// An op is 20,000 events. Run it with:
//
//	go test -run '^$' -bench PublishEvents -benchtime 3x ./services/hub/
func BenchmarkPublishEvents(b *testing.B) {
	const (
		gateways = 10
		perGW    = 100
		round    = 20000
		callers  = 64
		window   = 256
	)
	e := newBenchEnv(b, 4)
	f := e.provision(b, gateways, perGW)
	direct := e.provisionAs(b, "direct-", gateways, perGW)
	payload := []byte(strings.Repeat("x", 100))

	// report gives the rate, and the CPU each message costs the whole
	// process (callers, hub, bridge, NATS): 2 cores / cpu-µs/msg bounds
	// the rate on an idle machine.
	report := func(b *testing.B, msgs int64, cpu0 time.Duration) {
		b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
		cpu := cpuTime() - cpu0
		b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(msgs), "cpu-µs/msg")
		b.ReportMetric(cpu.Seconds()/b.Elapsed().Seconds(), "cores")
	}
	unary := func(b *testing.B) {
		var msgs int64
		cpu0 := cpuTime()
		for b.Loop() {
			var next atomic.Int64
			var wg sync.WaitGroup
			var failed atomic.Value
			for w := range callers {
				wg.Go(func() {
					c := e.client(w)
					for {
						n := next.Add(1) - 1
						if n >= round {
							return
						}
						g, d := int(n)%gateways, int(n/gateways)%perGW
						if _, err := c.PublishEvent(context.Background(), &hubv1.PublishEventRequest{Gateway: f.gateways[g], DeviceId: f.devices[g][d], Data: payload}); err != nil {
							failed.Store(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err, ok := failed.Load().(error); ok {
				b.Fatalf("PublishEvent: %v", err)
			}
			msgs += round
		}
		report(b, msgs, cpu0)
	}
	b.Run("unary-unattached", unary)
	as := e.attachAll(b, f, 64)
	b.Run("unary-attached", unary)
	e.detachAll(b, f, as)

	b.Run("stream", func(b *testing.B) {
		var msgs int64
		cpu0 := cpuTime()
		for b.Loop() {
			var wg sync.WaitGroup
			var failed atomic.Value
			for g := range gateways {
				wg.Go(func() {
					if err := publishStream(e.client(g), f.gateways[g], f.devices[g], round/gateways, payload); err != nil {
						failed.Store(err)
					}
				})
			}
			wg.Wait()
			if err, ok := failed.Load().(error); ok {
				b.Fatalf("PublishEvents: %v", err)
			}
			msgs += round
		}
		report(b, msgs, cpu0)
	})

	b.Run("bridge-qos1", func(b *testing.B) {
		conns := make([]paho.Client, gateways)
		for g := range gateways {
			conns[g] = e.dialGateway(b, direct.gateways[g], direct.devices[g])
		}
		var msgs int64
		cpu0 := cpuTime()
		for b.Loop() {
			var wg sync.WaitGroup
			var failed atomic.Value
			for g := range gateways {
				wg.Go(func() {
					if err := publishQoS1(conns[g], direct.devices[g], round/gateways, window, payload); err != nil {
						failed.Store(err)
					}
				})
			}
			wg.Wait()
			if err, ok := failed.Load().(error); ok {
				b.Fatalf("QoS 1 publish: %v", err)
			}
			msgs += round
		}
		report(b, msgs, cpu0)
	})
}

// publishStream sends n events round-robin over devices on one
// PublishEvents stream and reads every answer.
func publishStream(c hubv1.HubClient, gw string, devices []string, n int, payload []byte) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.PublishEvents(ctx)
	if err != nil {
		return err
	}
	sendErr := make(chan error, 1)
	go func() {
		for i := range n {
			req := &hubv1.PublishEventsRequest{DeviceId: devices[i%len(devices)], Data: payload}
			if i == 0 {
				req.Gateway = gw
			}
			if err := s.Send(req); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- s.CloseSend()
	}()
	for i := range n {
		resp, err := s.Recv()
		if err != nil {
			return fmt.Errorf("answer %d: %w", i, err)
		}
		if resp.GetRefused() != nil {
			return fmt.Errorf("answer %d: %v", i, resp)
		}
	}
	return <-sendErr
}

// dialGateway connects to the bridge as gateway (its key from the hub's
// key store) and attaches devices.
func (e *benchEnv) dialGateway(tb testing.TB, gateway string, devices []string) paho.Client {
	tb.Helper()
	key := testutil.Must(e.keys.Get(gateway))
	tok := testutil.Must(key.Sign(time.Now(), time.Now().Add(time.Hour)))
	o := paho.NewClientOptions().AddBroker("ssl://" + e.bridgeAddr).SetClientID(gateway).
		SetUsername("unused").SetPassword(tok).SetTLSConfig(e.bridgeTLS).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(60 * time.Second)
	cl := paho.NewClient(o)
	if err := waitToken(cl.Connect()); err != nil {
		tb.Fatalf("connect %s: %v", gateway, err)
	}
	tb.Cleanup(func() { cl.Disconnect(0) })
	for _, d := range devices {
		if err := waitToken(cl.Publish("/devices/"+d+"/attach", 1, false, []byte{})); err != nil {
			tb.Fatalf("attach %s: %v", d, err)
		}
	}
	return cl
}

// publishQoS1 publishes n QoS 1 events round-robin over devices with up
// to window in flight, and waits for every PUBACK.
func publishQoS1(cl paho.Client, devices []string, n, window int, payload []byte) error {
	toks := make(chan paho.Token, window)
	done := make(chan error, 1)
	go func() {
		var first error
		for t := range toks {
			if err := waitToken(t); err != nil && first == nil {
				first = err
			}
		}
		done <- first
	}()
	for i := range n {
		toks <- cl.Publish("/devices/"+devices[i%len(devices)]+"/events", 1, false, payload)
	}
	close(toks)
	return <-done
}

func waitToken(t paho.Token) error {
	if !t.WaitTimeout(30 * time.Second) {
		return errors.New("timed out")
	}
	return t.Error()
}
