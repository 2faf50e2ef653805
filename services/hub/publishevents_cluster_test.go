package hub_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// TestPublishEventsRelayed: a PublishEvents stream on the replica that
// does not hold the gateway is served through the one that does; each
// event is answered in order and is in JetStream, and only the owner
// connects to the bridge.
func TestPublishEventsRelayed(t *testing.T) {
	e := newClusterEnv(t)
	a, b := e.addReplica("hub-a", replicaConfig{}), e.addReplica("hub-b", replicaConfig{})
	waitMembers(t, a, b)
	_, gws := clusterSetup(t, e, a, "gw-1")
	gw := gws[0]
	owner, other := ownerAndOther(gw, a, b)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	s := testutil.Must(other.client.PublishEvents(ctx))
	const n = 50
	for i := range n {
		req := &hubv1.PublishEventsRequest{DeviceId: "bound", Data: fmt.Appendf(nil, "relayed-%d", i)}
		if i == 0 {
			req.Gateway = gw
		}
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for i := range int64(n) {
		resp, err := s.Recv()
		if err != nil || resp.GetIndex() != i || resp.GetRefused() != nil {
			t.Fatalf("answer %d: %v, %v", i, resp, err)
		}
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
	if got := waitOwner(t, gw, 10*time.Second, a, b); got != owner {
		t.Fatalf("%s holds the gateway, want %s", got.name, owner.name)
	}
	js := testutil.Must(jetstream.New(e.bus.Conn()))
	stream := testutil.Must(js.Stream(ctx, e.bus.StreamName()))
	// In flight, events reach the bridge in any order: all are stored.
	info := testutil.Must(stream.Info(ctx, jetstream.WithSubjectFilter("iot.pubsub.p1.events")))
	if got := info.State.Subjects["iot.pubsub.p1.events"]; got != n {
		t.Fatalf("%d relayed events in JetStream, want %d", got, n)
	}
}
