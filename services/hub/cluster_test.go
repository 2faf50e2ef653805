package hub_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/hub"
)

// clusterSetup makes a registry whose events go to a topic, gateways made
// through r, and a device "bound" bound to each; it returns the registry
// and the gateways' names.
func clusterSetup(t testing.TB, e *clusterEnv, r *replica, gatewayIDs ...string) (regName string, gws []string) {
	t.Helper()
	return clusterGateways(t, e, r, true, gatewayIDs...)
}

// clusterGateways is clusterSetup, binding "bound" or not (a device is
// bound to at most 10 gateways).
func clusterGateways(t testing.TB, e *clusterEnv, r *replica, bind bool, gatewayIDs ...string) (regName string, gws []string) {
	t.Helper()
	regs := e.admin.Projects.Locations.Registries
	reg := testutil.Must(regs.Create(parent, &cloudiot.DeviceRegistry{Id: "reg1",
		EventNotificationConfigs: []*cloudiot.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/events"}}}).Do())
	testutil.Must(regs.Devices.Create(reg.Name, &cloudiot.Device{Id: "bound"}).Do())
	for _, id := range gatewayIDs {
		resp, err := r.client.CreateGateway(t.Context(), &hubv1.CreateGatewayRequest{Parent: reg.Name, GatewayId: id})
		if err != nil {
			t.Fatal(err)
		}
		if bind {
			testutil.Must(regs.BindDeviceToGateway(reg.Name, &cloudiot.BindDeviceToGatewayRequest{DeviceId: "bound", GatewayId: id}).Do())
		}
		gws = append(gws, resp.GetGateway().GetName())
	}
	return reg.Name, gws
}

// ownerAndOther returns which of a and b rendezvous hashing gives gateway
// to, and the other one.
func ownerAndOther(gateway string, a, b *replica) (owner, other *replica) {
	if hub.Preferred(gateway, a.name, b.name) == a.name {
		return a, b
	}
	return b, a
}

// stateStream is a PublishState stream and what it got acknowledged.
type stateStream struct {
	t      *testing.T
	e      *clusterEnv
	s      hubv1.Hub_PublishStateClient
	acks   <-chan *hubv1.PublishStateResponse
	errc   <-chan error
	gw     string
	sent   int
	acked  []string
	prefix string
}

func openStates(t *testing.T, ctx context.Context, e *clusterEnv, r *replica, gw, prefix string) *stateStream {
	t.Helper()
	s := testutil.Must(r.client.PublishState(ctx))
	acks, errc := recvAll(s.Recv)
	return &stateStream{t: t, e: e, s: s, acks: acks, errc: errc, gw: gw, prefix: prefix}
}

// publish sends one state and waits for its acknowledgement.
func (st *stateStream) publish() {
	st.t.Helper()
	payload := fmt.Sprintf("%s-%d", st.prefix, st.sent)
	req := &hubv1.PublishStateRequest{Data: []byte(payload)}
	if st.sent == 0 {
		req.Gateway, req.DeviceId = st.gw, "bound"
	}
	if err := st.s.Send(req); err != nil {
		st.t.Fatalf("send %s: %v", payload, err)
	}
	st.sent++
	ack := next(st.t, payload, st.acks, st.errc, 30*time.Second)
	if ack.GetIndex() != int64(len(st.acked)) {
		st.t.Fatalf("ack %d, want %d", ack.GetIndex(), len(st.acked))
	}
	st.acked = append(st.acked, payload)
	// The bridge takes one state per second per device.
	st.e.clockSkew.Add(int64(1100 * time.Millisecond))
}

// checkStored fails when an acknowledged state is not in ListDeviceStates.
func (st *stateStream) checkStored(devName string) {
	st.t.Helper()
	list := testutil.Must(st.e.admin.Projects.Locations.Registries.Devices.States.List(devName).NumStates(10).Do())
	have := map[string]bool{}
	for _, s := range list.DeviceStates {
		b, _ := base64.StdEncoding.DecodeString(s.BinaryData)
		have[string(b)] = true
	}
	for _, p := range st.acked {
		if !have[p] {
			st.t.Errorf("acknowledged state %q is not in ListDeviceStates (%d states)", p, len(list.DeviceStates))
		}
	}
}

func clusterModifyConfig(t *testing.T, e *clusterEnv, devName, data string) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() error {
		_, err := e.admin.Projects.Locations.Registries.Devices.ModifyCloudToDeviceConfig(devName, &cloudiot.ModifyCloudToDeviceConfigRequest{
			BinaryData: base64.StdEncoding.EncodeToString([]byte(data)),
		}).Do()
		return err
	})
}

// openAttach attaches "bound" to gw through r and waits for "attached".
func openAttach(t *testing.T, ctx context.Context, r *replica, gw string) (<-chan *hubv1.AttachResponse, <-chan error) {
	t.Helper()
	att := testutil.Must(r.client.Attach(ctx))
	if err := att.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: "bound"}); err != nil {
		t.Fatal(err)
	}
	ch, errc := recvAll(att.Recv)
	if next(t, "attach through "+r.name, ch, errc, 15*time.Second).GetAttached() == nil {
		t.Fatal("the first attach response is not 'attached'")
	}
	return ch, errc
}

// waitEnd waits for a stream to end and returns its error.
func waitEnd[T any](t *testing.T, what string, ch <-chan T, errc <-chan error, timeout time.Duration) error {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return <-errc
			}
		case <-deadline:
			t.Fatalf("%s: still open after %s", what, timeout)
		}
	}
}

// TestRelayToTheOwner: every device call on the replica that does not
// hold the gateway is served through the one that does, and only that
// one connects to the bridge.
func TestRelayToTheOwner(t *testing.T) {
	e := newClusterEnv(t)
	a, b := e.addReplica("hub-a", replicaConfig{}), e.addReplica("hub-b", replicaConfig{})
	waitMembers(t, a, b)
	regName, gws := clusterSetup(t, e, a, "gw-1")
	gw, devName := gws[0], regName+"/devices/bound"
	owner, other := ownerAndOther(gw, a, b)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	// One relayed call first opens the replica's connection to the other,
	// which stays: the goroutines' baseline counts it.
	if _, err := other.client.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", Data: []byte("warm-up")}); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	idle := func() error {
		for _, r := range []*replica{a, b} {
			if v := r.pool.View(); len(v) != 0 {
				return fmt.Errorf("%s has %d connections open", r.name, len(v))
			}
		}
		return nil
	}
	testutil.WaitFor(t, 10*time.Second, idle)
	e.closeIdle()
	base := baseline()
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()

	attCh, attErr := openAttach(t, cctx, other, gw)
	if got := waitOwner(t, gw, 10*time.Second, a, b); got != owner {
		t.Fatalf("%s holds the gateway, want %s (its preferred replica)", got.name, owner.name)
	}
	if _, ok := other.pool.Connection(gw); ok {
		t.Fatalf("%s, which relays, has a connection of its own", other.name)
	}

	cfgs := testutil.Must(other.client.SubscribeConfig(cctx, &hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: "bound"}))
	cfgCh, cfgErr := recvAll(cfgs.Recv)
	next(t, "first config", cfgCh, cfgErr, 15*time.Second)
	clusterModifyConfig(t, e, devName, "relayed-config")
	for {
		c := next(t, "relayed config", cfgCh, cfgErr, 15*time.Second)
		if string(c.GetData()) == "relayed-config" {
			if c.GetVersion() < 2 {
				t.Errorf("relayed config has version %d", c.GetVersion())
			}
			break
		}
	}

	states := openStates(t, cctx, e, other, gw, "relayed-state")
	for range 3 {
		states.publish()
	}
	states.checkStored(devName)

	if _, err := other.client.PublishEvent(cctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", SubFolder: "a/b", Data: []byte("relayed-event")}); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	js := testutil.Must(jetstream.New(e.bus.Conn()))
	stream := testutil.Must(js.Stream(cctx, e.bus.StreamName()))
	msg, err := stream.GetLastMsgForSubject(cctx, "iot.pubsub.p1.events")
	if err != nil || string(msg.Data) != "relayed-event" || msg.Header.Get("subFolder") != "a/b" {
		t.Fatalf("the relayed event in JetStream: %v, %+v", err, msg)
	}

	cmds := testutil.Must(other.client.SubscribeCommands(cctx, &hubv1.SubscribeCommandsRequest{Gateway: gw, DeviceId: "bound"}))
	cmdCh, cmdErr := recvAll(cmds.Recv)
	testutil.WaitFor(t, 15*time.Second, func() error {
		_, err := e.admin.Projects.Locations.Registries.Devices.SendCommandToDevice(devName, &cloudiot.SendCommandToDeviceRequest{
			BinaryData: base64.StdEncoding.EncodeToString([]byte("relayed-command")), Subfolder: "sub",
		}).Do()
		return err
	})
	if c := next(t, "relayed command", cmdCh, cmdErr, 15*time.Second); string(c.GetData()) != "relayed-command" || c.GetSubFolder() != "sub" {
		t.Fatalf("command %v", c)
	}

	// The owner's pool holds it for the relayed calls; the Attach stream
	// relaying it is quiet.
	pv := testutil.Must(owner.client.GetPool(cctx, &hubv1.GetPoolRequest{}))
	if len(pv.GetConnections()) != 1 || len(pv.GetConnections()[0].GetAttachedDevices()) != 1 {
		t.Fatalf("owner's pool %v", pv)
	}
	select {
	case r := <-attCh:
		t.Fatalf("attach stream: %v", r)
	default:
	}
	_ = attErr
	e.conns.checkOnce(t, gw)

	// Every call ends: the relays end, the gateway idles out, its lease
	// goes, and no goroutine is left.
	ccancel()
	testutil.WaitFor(t, 10*time.Second, idle)
	checkNoLeaksAfter(t, base, e.closeIdle)
}

// TestOwnerKilled: the replica holding the gateway is killed (its MQTT and
// NATS connections drop, its server stops, nothing is released) while
// callers on the other replica stream configs and publish states. The
// other replica takes the gateway over once the lease lapses; the callers'
// streams carry on, every acknowledged state is stored, the bridge never
// has the gateway connected twice, and a caller whose stream was on the
// killed replica gets UNAVAILABLE.
func TestOwnerKilled(t *testing.T) {
	e := newClusterEnv(t)
	a, b := e.addReplica("hub-a", replicaConfig{}), e.addReplica("hub-b", replicaConfig{})
	waitMembers(t, a, b)
	regName, gws := clusterSetup(t, e, a, "gw-1")
	gw, devName := gws[0], regName+"/devices/bound"
	owner, other := ownerAndOther(gw, a, b)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	attCh, attErr := openAttach(t, ctx, other, gw)
	waitOwner(t, gw, 10*time.Second, a, b)
	ownCh, ownErr := openAttach(t, ctx, owner, gw) // a caller on the replica to be killed
	cfgs := testutil.Must(other.client.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: "bound"}))
	cfgCh, cfgErr := recvAll(cfgs.Recv)
	next(t, "first config", cfgCh, cfgErr, 15*time.Second)
	states := openStates(t, ctx, e, other, gw, "state")
	states.publish()
	states.publish()

	killed := time.Now()
	owner.kill()
	if err := waitEnd(t, "the killed replica's caller", ownCh, ownErr, 10*time.Second); status.Code(err) != codes.Unavailable {
		t.Errorf("the stream on the killed replica ended with %v, want UNAVAILABLE", err)
	}
	// A state sent while the gateway moves is acknowledged once it has.
	states.publish()
	waitOwner(t, gw, 15*time.Second, other)
	t.Logf("the gateway moved to %s %v after the kill (%v between the bridge's close and connect)",
		other.name, time.Since(killed).Round(time.Millisecond), e.conns.lastGap(gw).Round(time.Millisecond))

	// The Attach stream is told, the config stream carries on.
	for {
		if r := next(t, "reattached", attCh, attErr, 15*time.Second); r.GetReattached() != nil {
			break
		}
	}
	clusterModifyConfig(t, e, devName, "after-the-kill")
	configUntil(t, "config after the kill", cfgCh, cfgErr, "after-the-kill")
	states.publish()
	states.publish()
	states.checkStored(devName)
	e.conns.checkOnce(t, gw)
}

// TestOwnerCutOffFromNATS: the replica holding the gateway loses NATS only
// (its bridge connection and its server are fine): it cannot prove its
// lease, so it closes the gateway's connection before the lease lapses,
// and the other replica connects only after: the bridge never has the
// gateway twice. Callers on the other replica carry on.
func TestOwnerCutOffFromNATS(t *testing.T) {
	e := newClusterEnv(t)
	a, b := e.addReplica("hub-a", replicaConfig{}), e.addReplica("hub-b", replicaConfig{})
	waitMembers(t, a, b)
	regName, gws := clusterSetup(t, e, a, "gw-1")
	gw, devName := gws[0], regName+"/devices/bound"
	owner, other := ownerAndOther(gw, a, b)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	states := openStates(t, ctx, e, other, gw, "state")
	states.publish()
	if got := waitOwner(t, gw, 10*time.Second, a, b); got != owner {
		t.Fatalf("%s holds the gateway, want %s", got.name, owner.name)
	}
	cut := time.Now()
	owner.bus.Conn().Close()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if owner.srv.Ready(ctx) == nil {
			return errors.New("the replica cut off from NATS says it is ready")
		}
		return nil
	})
	states.publish()
	testutil.WaitFor(t, 15*time.Second, func() error {
		if owner.connected(gw) || !other.connected(gw) {
			return fmt.Errorf("%s still holds the gateway, or %s does not", owner.name, other.name)
		}
		return nil
	})
	t.Logf("the gateway moved %v after the cut; the bridge saw %v between the old connection's close and the new one",
		time.Since(cut).Round(time.Millisecond), e.conns.lastGap(gw).Round(time.Millisecond))
	states.publish()
	states.checkStored(devName)
	e.conns.checkOnce(t, gw)
}

// TestDrainHandsGatewaysOver: a draining replica says it is not ready,
// refuses new calls with UNAVAILABLE, hands its gateways over to the other
// replica (whose callers carry on) and ends its own callers' streams with
// UNAVAILABLE; no gateway is ever connected twice.
func TestDrainHandsGatewaysOver(t *testing.T) {
	e := newClusterEnv(t)
	a := e.addReplica("hub-a", replicaConfig{drain: 2 * time.Second})
	b := e.addReplica("hub-b", replicaConfig{})
	waitMembers(t, a, b)
	// Four gateways, two preferring each replica.
	var ids []string
	var onA int
	for i := 0; len(ids) < 4; i++ {
		id := fmt.Sprintf("gw-%d", i)
		name := parent + "/registries/reg1/devices/" + id
		if hub.Preferred(name, a.name, b.name) == a.name {
			if onA == 2 {
				continue
			}
			onA++
		} else if len(ids)-onA == 2 {
			continue
		}
		ids = append(ids, id)
	}
	regName, gws := clusterSetup(t, e, a, ids...)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	type caller struct {
		cfgCh  <-chan *hubv1.SubscribeConfigResponse
		cfgErr <-chan error
	}
	var onB []caller
	var attA []struct {
		ch   <-chan *hubv1.AttachResponse
		errc <-chan error
	}
	for _, gw := range gws {
		cfgs := testutil.Must(b.client.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw}))
		ch, errc := recvAll(cfgs.Recv)
		next(t, "first config", ch, errc, 15*time.Second)
		onB = append(onB, caller{ch, errc})
		ach, aerr := openAttach(t, ctx, a, gw)
		attA = append(attA, struct {
			ch   <-chan *hubv1.AttachResponse
			errc <-chan error
		}{ach, aerr})
	}
	for _, gw := range gws {
		waitOwner(t, gw, 10*time.Second, a, b)
	}

	stopped := make(chan struct{})
	go func() { a.stop(); close(stopped) }()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if a.srv.Ready(ctx) == nil {
			return errors.New("the draining replica says it is ready")
		}
		return nil
	})
	if _, err := a.client.ListGateways(ctx, &hubv1.ListGatewaysRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("a new call on the draining replica: %v, want UNAVAILABLE", err)
	}
	for _, gw := range gws {
		waitOwner(t, gw, 10*time.Second, a, b)
		if !b.connected(gw) {
			t.Errorf("%s still holds %s while draining", a.name, gw)
		}
	}
	for i, at := range attA {
		err := waitEnd(t, "a caller on the draining replica", at.ch, at.errc, 10*time.Second)
		if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "draining") {
			t.Errorf("caller %d on the draining replica ended with %v, want UNAVAILABLE (draining)", i, err)
		}
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the draining replica did not stop")
	}
	// The callers on the other replica carry on.
	for i, gw := range gws {
		clusterModifyConfig(t, e, gw, fmt.Sprintf("after-drain-%d", i))
		configUntil(t, "config after the drain", onB[i].cfgCh, onB[i].cfgErr, fmt.Sprintf("after-drain-%d", i))
		e.conns.checkOnce(t, gw)
	}
	_ = regName
}

// TestBalance: twenty gateways held through one replica; a second one
// joins and, once it has settled, the first hands it the gateways it is
// preferred for, one at a time. The callers' streams carry on through the
// relay; no gateway is ever connected twice.
func TestBalance(t *testing.T) {
	e := newClusterEnv(t)
	a := e.addReplica("hub-a", replicaConfig{})
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = fmt.Sprintf("gw-%02d", i)
	}
	_, gws := clusterGateways(t, e, a, false, ids...)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	type sub struct {
		ch   <-chan *hubv1.SubscribeConfigResponse
		errc <-chan error
	}
	subs := make([]sub, len(gws))
	for i, gw := range gws {
		cfgs := testutil.Must(a.client.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw}))
		subs[i].ch, subs[i].errc = recvAll(cfgs.Recv)
		next(t, "first config", subs[i].ch, subs[i].errc, 15*time.Second)
	}
	for _, gw := range gws {
		if waitOwner(t, gw, 10*time.Second, a) != a {
			t.Fatal("unreachable")
		}
	}

	b := e.addReplica("hub-b", replicaConfig{})
	joined := time.Now()
	want := map[string]int{}
	for _, gw := range gws {
		want[hub.Preferred(gw, a.name, b.name)]++
	}
	t.Logf("rendezvous hashing gives %d gateways to %s, %d to %s", want[a.name], a.name, want[b.name], b.name)
	if want[a.name] == 0 || want[b.name] == 0 {
		t.Fatal("pick other gateway names: one replica is preferred for none")
	}
	for _, gw := range gws {
		wantOwner := hub.Preferred(gw, a.name, b.name)
		if got := waitOwner(t, gw, 60*time.Second, a, b); got.name != wantOwner {
			// Not there yet: wait for the move.
			testutil.WaitFor(t, 60*time.Second, func() error {
				if r := waitOwner(t, gw, 10*time.Second, a, b); r.name != wantOwner {
					return fmt.Errorf("%s on %s, want %s", gw, r.name, wantOwner)
				}
				return nil
			})
		}
	}
	t.Logf("balanced %v after %s joined", time.Since(joined).Round(time.Millisecond), b.name)
	for i, gw := range gws {
		data := fmt.Sprintf("balanced-%d", i)
		clusterModifyConfig(t, e, gw, data)
		configUntil(t, "config after the balance", subs[i].ch, subs[i].errc, data)
		e.conns.checkOnce(t, gw)
	}
	for _, gw := range gws {
		if _, connects := e.conns.atOnce(gw); connects > 2 {
			t.Errorf("%s was connected %d times: it moved more than once", gw, connects)
		}
	}
}

// TestReplicaWithoutTheKey: a replica that does not share the key store
// is not given the gateways it holds no key for, even where rendezvous
// hashing prefers it: calls on either replica are served. A gateway no
// replica holds a key for is FAILED_PRECONDITION, saying so.
func TestReplicaWithoutTheKey(t *testing.T) {
	e := newClusterEnv(t)
	a := e.addReplica("hub-a", replicaConfig{})
	b := e.addReplica("hub-b", replicaConfig{keysDir: t.TempDir()})
	waitMembers(t, a, b)
	id := ""
	for i := 0; id == ""; i++ {
		if name := fmt.Sprintf("%s/registries/reg1/devices/gw-%d", parent, i); hub.Preferred(name, a.name, b.name) == b.name {
			id = fmt.Sprintf("gw-%d", i)
		}
	}
	_, gws := clusterSetup(t, e, a, id)
	gw := gws[0]
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for _, r := range []*replica{a, b} {
		if _, err := r.client.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", Data: []byte("x")}); err != nil {
			t.Fatalf("PublishEvent through %s: %v", r.name, err)
		}
	}
	cfgs := testutil.Must(b.client.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw}))
	ch, errc := recvAll(cfgs.Recv)
	next(t, "config through the replica without the key", ch, errc, 15*time.Second)
	if got := waitOwner(t, gw, 10*time.Second, a, b); got != a {
		t.Fatalf("%s holds the gateway without its key", got.name)
	}
	_, err := b.client.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: parent + "/registries/reg1/devices/nobody", Data: []byte("x")})
	wantCode(t, "a gateway nobody holds a key for", err, codes.FailedPrecondition, "holds no key")
	e.conns.checkOnce(t, gw)
}

// TestReplicaUnreachable: a replica the others cannot reach (its
// advertised address is wrong) is not given the gateways it is preferred
// for: the replica the call reached takes them.
func TestReplicaUnreachable(t *testing.T) {
	e := newClusterEnv(t)
	a := e.addReplica("hub-a", replicaConfig{})
	// Nobody listens there.
	closed := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	nowhere := closed.Addr().String()
	closed.Close()
	b := e.addReplica("hub-b", replicaConfig{advertise: nowhere})
	waitMembers(t, a, b)
	id := ""
	for i := 0; id == ""; i++ {
		if name := fmt.Sprintf("%s/registries/reg1/devices/gw-%d", parent, i); hub.Preferred(name, a.name, b.name) == b.name {
			id = fmt.Sprintf("gw-%d", i)
		}
	}
	_, gws := clusterSetup(t, e, a, id)
	gw := gws[0]
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cfgs := testutil.Must(a.client.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: "bound"}))
	ch, errc := recvAll(cfgs.Recv)
	next(t, "config through the replica that can be reached", ch, errc, 15*time.Second)
	if got := waitOwner(t, gw, 10*time.Second, a, b); got != a {
		t.Fatalf("%s holds the gateway", got.name)
	}
	if _, err := a.client.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", Data: []byte("x")}); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	e.conns.checkOnce(t, gw)
}

// TestNATSOutage: the NATS the replicas share goes away for longer than
// their leases and comes back. The replicas say they are not ready and
// close the gateway's connection (they cannot prove they hold it), the
// callers' calls wait, and everything comes back by itself: the gateway is
// connected again, once, and the callers' streams carry on.
func TestNATSOutage(t *testing.T) {
	e := newClusterEnv(t)
	ns := startNATS(t)
	e.natsURL = ns.url // the replicas' NATS; the bridge's and the manager's stays
	a, b := e.addReplica("hub-a", replicaConfig{}), e.addReplica("hub-b", replicaConfig{})
	waitMembers(t, a, b)
	regName, gws := clusterSetup(t, e, a, "gw-1")
	gw, devName := gws[0], regName+"/devices/bound"
	_, other := ownerAndOther(gw, a, b)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cfgs := testutil.Must(other.client.SubscribeConfig(ctx, &hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: "bound"}))
	cfgCh, cfgErr := recvAll(cfgs.Recv)
	next(t, "first config", cfgCh, cfgErr, 15*time.Second)
	states := openStates(t, ctx, e, other, gw, "state")
	states.publish()
	waitOwner(t, gw, 10*time.Second, a, b)

	ns.stop()
	testutil.WaitFor(t, 15*time.Second, func() error {
		for _, r := range []*replica{a, b} {
			if r.connected(gw) {
				return fmt.Errorf("%s still has the gateway connected without NATS", r.name)
			}
			if r.srv.Ready(ctx) == nil {
				return fmt.Errorf("%s says it is ready without NATS", r.name)
			}
		}
		return nil
	})
	ns.start()
	// The state sent meanwhile is acknowledged once the gateway is back.
	states.publish()
	waitOwner(t, gw, 30*time.Second, a, b)
	testutil.WaitFor(t, 15*time.Second, func() error { return other.srv.Ready(ctx) })
	waitMembers(t, a, b) // the views of the members watch again
	clusterModifyConfig(t, e, devName, "after-the-outage")
	configUntil(t, "config after the outage", cfgCh, cfgErr, "after-the-outage")
	states.publish()
	states.checkStored(devName)
	e.conns.checkOnce(t, gw)
}
