package hub_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/cloudiot/v1"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
	"github.com/passerelle-iot/passerelle/services/hub"
)

// recvAll reads a stream into a channel until it ends; the error that
// ended it goes to errc.
func recvAll[T any](recv func() (T, error)) (<-chan T, <-chan error) {
	ch, errc := make(chan T, 64), make(chan error, 1)
	go func() {
		defer close(ch)
		for {
			m, err := recv()
			if err != nil {
				errc <- err
				return
			}
			ch <- m
		}
	}()
	return ch, errc
}

// next returns the next message of ch, failing the test after timeout.
func next[T any](t *testing.T, what string, ch <-chan T, errc <-chan error, timeout time.Duration) T {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: stream ended: %v", what, <-errc)
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("%s: nothing after %s", what, timeout)
	}
	panic("unreachable")
}

// configUntil reads configs until one carries data.
func configUntil(t *testing.T, what string, ch <-chan *hubv1.SubscribeConfigResponse, errc <-chan error, data string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c := next(t, what, ch, errc, time.Until(deadline))
		if string(c.GetData()) == data {
			return
		}
	}
}

// modifyConfig sets a device's config, retrying while the manager's one
// update per second per device refuses it.
func modifyConfig(t *testing.T, e *env, devName, data string) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() error {
		_, err := e.admin.Projects.Locations.Registries.Devices.ModifyCloudToDeviceConfig(devName, &cloudiot.ModifyCloudToDeviceConfigRequest{
			BinaryData: base64.StdEncoding.EncodeToString([]byte(data)),
		}).Do()
		return err
	})
}

// TestBridgeRestart stops the bridge in the middle of an Attach, a
// SubscribeConfig and a PublishState stream and starts another on the
// same store, bus and port: the streams carry on, the Attach stream is
// told of the re-attach, a config changed while the bridge was down
// and one changed after are delivered, and every acknowledged state is
// in ListDeviceStates.
func TestBridgeRestart(t *testing.T) {
	e := newEnv(t, envConfig{poolOpts: []hub.PoolOption{hub.WithBackoff(10*time.Millisecond, 100*time.Millisecond)}})
	regName, gw := setup(t, e)
	devName := regName + "/devices/bound"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	att := testutil.Must(e.hub.Attach(ctx))
	if err := att.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: "bound"}); err != nil {
		t.Fatal(err)
	}
	attCh, attErr := recvAll(att.Recv)
	if next(t, "attach", attCh, attErr, 10*time.Second).GetAttached() == nil {
		t.Fatal("first attach response is not 'attached'")
	}
	cfgs := testutil.Must(e.hub.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: "bound"}))
	cfgCh, cfgErr := recvAll(cfgs.Recv)
	next(t, "first config", cfgCh, cfgErr, 10*time.Second)

	states := testutil.Must(e.hub.PublishState(ctx))
	ackCh, ackErr := recvAll(states.Recv)
	var acked []string
	sent := 0
	publish := func(wantAck bool) {
		t.Helper()
		payload := fmt.Sprintf("state-%d", sent)
		req := &hubv1.PublishStateRequest{Data: []byte(payload)}
		if sent == 0 {
			req.Gateway, req.DeviceId = gw, "bound"
		}
		if err := states.Send(req); err != nil {
			t.Fatal(err)
		}
		sent++
		if wantAck {
			ack := next(t, payload, ackCh, ackErr, 20*time.Second)
			if ack.GetIndex() != int64(len(acked)) {
				t.Fatalf("ack %d, want %d", ack.GetIndex(), len(acked))
			}
			acked = append(acked, payload)
			// The bridge takes one state per second per device.
			e.clockSkew.Add(int64(1100 * time.Millisecond))
		}
	}
	for i := 0; i < 3; i++ {
		publish(true)
	}

	e.stopBridge()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if v, _ := e.pool.Connection(gw); v.State == hub.StateConnected {
			return fmt.Errorf("the pool has not seen the bridge go")
		}
		return nil
	})
	// While the bridge is down: a config change, and a state that can
	// only be acknowledged by the next bridge.
	modifyConfig(t, e, devName, "while-down")
	publish(false)
	e.startBridge()

	// The state sent while down is acknowledged once the hub is back.
	ack := next(t, "state sent while down", ackCh, ackErr, 20*time.Second)
	if ack.GetIndex() != int64(len(acked)) {
		t.Fatalf("ack %d, want %d", ack.GetIndex(), len(acked))
	}
	acked = append(acked, fmt.Sprintf("state-%d", sent-1))
	e.clockSkew.Add(int64(1100 * time.Millisecond))

	// The Attach stream is told.
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := next(t, "reattached", attCh, attErr, time.Until(deadline))
		if ra := r.GetReattached(); ra != nil {
			if ra.GetReconnects() < 1 {
				t.Fatalf("reattached with %d reconnects", ra.GetReconnects())
			}
			break
		}
	}
	configUntil(t, "config changed while down", cfgCh, cfgErr, "while-down")
	modifyConfig(t, e, devName, "after")
	configUntil(t, "config changed after", cfgCh, cfgErr, "after")
	for i := 0; i < 3; i++ {
		publish(true)
	}
	if err := states.CloseSend(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ackCh:
		if ok {
			t.Fatal("an ack too many")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the state stream did not end")
	}

	list := testutil.Must(e.admin.Projects.Locations.Registries.Devices.States.List(devName).NumStates(10).Do())
	have := map[string]bool{}
	for _, s := range list.DeviceStates {
		b, _ := base64.StdEncoding.DecodeString(s.BinaryData)
		have[string(b)] = true
	}
	for _, p := range acked {
		if !have[p] {
			t.Errorf("acknowledged state %q is not in ListDeviceStates (%d states)", p, len(list.DeviceStates))
		}
	}
	if len(acked) != 7 {
		t.Fatalf("%d states acknowledged, want 7", len(acked))
	}
}

// TestTokenRenewal: gateway JWTs of two seconds, renewed one second
// before expiry, renew several times during Attach and SubscribeConfig
// streams; the bridge allows no skew, so a late renewal would be a cut.
// Every config change and every event gets through.
func TestTokenRenewal(t *testing.T) {
	e := newEnv(t, envConfig{
		bridgeOpts: []bridge.Option{bridge.WithJWTSkew(0)},
		poolOpts: []hub.PoolOption{hub.WithTokenLifetime(2*time.Second, time.Second),
			hub.WithBackoff(10*time.Millisecond, 100*time.Millisecond)},
	})
	regName, gw := setup(t, e)
	devName := regName + "/devices/bound"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	att := testutil.Must(e.hub.Attach(ctx))
	if err := att.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: "bound"}); err != nil {
		t.Fatal(err)
	}
	attCh, attErr := recvAll(att.Recv)
	next(t, "attach", attCh, attErr, 10*time.Second)
	cfgs := testutil.Must(e.hub.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: "bound"}))
	cfgCh, cfgErr := recvAll(cfgs.Recv)
	next(t, "first config", cfgCh, cfgErr, 10*time.Second)

	const renewals = 3
	reconnects := func() int64 {
		pv := testutil.Must(e.hub.GetPool(ctx, &hubv1.GetPoolRequest{}))
		if len(pv.GetConnections()) != 1 {
			t.Fatalf("pool %v", pv)
		}
		return pv.GetConnections()[0].GetReconnects()
	}
	for i := 0; reconnects() < renewals; i++ {
		if _, err := e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", Data: []byte("x")}); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		data := fmt.Sprintf("config-%d", i)
		modifyConfig(t, e, devName, data)
		configUntil(t, data, cfgCh, cfgErr, data)
	}
	// Each renewal re-attached the device and said so.
	reattached := 0
	for reattached < renewals {
		if next(t, "reattached", attCh, attErr, 10*time.Second).GetReattached() != nil {
			reattached++
		}
	}
	v, _ := e.pool.Connection(gw)
	if v.State != hub.StateConnected || len(v.Devices) != 1 || !v.Devices[0].Attached {
		t.Fatalf("after renewals: %+v", v)
	}
}

// TestManyCallers: 100 callers on 10 gateways, each with an Attach
// stream, a SubscribeConfig stream and a few events, then all go: no
// goroutine is left and the pool is empty after the idle timeout.
func TestManyCallers(t *testing.T) {
	e := newEnv(t, envConfig{poolOpts: []hub.PoolOption{hub.WithIdleTimeout(100 * time.Millisecond)}})
	ctx := context.Background()
	regs := e.admin.Projects.Locations.Registries
	reg := testutil.Must(regs.Create(parent, &cloudiot.DeviceRegistry{Id: "many", EventNotificationConfigs: []*cloudiot.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/events"}}}).Do())
	const gateways, perGateway = 10, 10
	gws := make([]string, gateways)
	for i := range gws {
		r, err := e.hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{Parent: reg.Name, GatewayId: fmt.Sprintf("gw-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		gws[i] = r.GetGateway().GetName()
	}
	testutil.Must(e.hub.ListGateways(ctx, &hubv1.ListGatewaysRequest{}))
	base := baseline()

	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	for i := 0; i < gateways*perGateway; i++ {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			readied := false
			defer func() {
				if !readied {
					ready.Done()
				}
			}()
			gw, dev := gws[i%gateways], fmt.Sprintf("dev-%d", i)
			sctx, scancel := context.WithCancel(cctx)
			defer scancel()
			att, err := e.hub.Attach(sctx)
			if err == nil {
				err = att.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: dev, CreateIfMissing: true, BindIfNeeded: true})
			}
			if err == nil {
				_, err = att.Recv()
			}
			if err != nil {
				t.Errorf("caller %d: attach: %v", i, err)
				return
			}
			cfgs, err := e.hub.SubscribeConfig(sctx, &hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: dev})
			if err == nil {
				_, err = cfgs.Recv()
			}
			if err != nil {
				t.Errorf("caller %d: config: %v", i, err)
				return
			}
			for j := 0; j < 3; j++ {
				if _, err := e.hub.PublishEvent(sctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: dev, Data: []byte("x")}); err != nil {
					t.Errorf("caller %d: event %d: %v", i, j, err)
					return
				}
			}
			readied = true
			ready.Done()
			<-release
			// Half the callers hang up cleanly, half just go.
			if i%2 == 0 {
				_ = att.CloseSend()
				_, _ = att.Recv()
			}
		}()
	}
	ready.Wait()
	if t.Failed() {
		close(release)
		done.Wait()
		t.FailNow()
	}
	pv := e.pool.View()
	attached := 0
	for _, v := range pv {
		for _, d := range v.Devices {
			if d.Attached {
				attached++
			}
		}
	}
	if len(pv) != gateways || attached != gateways*perGateway {
		t.Fatalf("%d connections, %d devices attached; want %d and %d", len(pv), attached, gateways, gateways*perGateway)
	}
	close(release)
	done.Wait()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if v := e.pool.View(); len(v) != 0 {
			return fmt.Errorf("%d connections still open", len(v))
		}
		return nil
	})
	checkNoLeaks(t, e, base)
}
