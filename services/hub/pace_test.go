package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
)

// TestStatesPacedThroughARelay: states that reach the hub closer together
// than the bridge takes them (a caller's queue, a relay, a gateway move
// squeeze the spacing the caller kept) are held back, not refused: sent
// back to back on the replica that relays them, every one is
// acknowledged, in order, the stream stays open and every one is stored.
// (Before the pacing, the bridge detached the device for the second state
// and the stream ended with RESOURCE_EXHAUSTED.)
func TestStatesPacedThroughARelay(t *testing.T) {
	e := newClusterEnv(t)
	a, b := e.addReplica("hub-a", replicaConfig{}), e.addReplica("hub-b", replicaConfig{})
	waitMembers(t, a, b)
	regName, gws := clusterSetup(t, e, a, "gw-1")
	gw, devName := gws[0], regName+"/devices/bound"
	_, other := ownerAndOther(gw, a, b)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// The bridge's clock is left alone: it takes one state a second.
	states := openStates(t, ctx, e, other, gw, "burst")
	const n = 4
	for i := range n {
		req := &hubv1.PublishStateRequest{Data: fmt.Appendf(nil, "burst-%d", i)}
		if i == 0 {
			req.Gateway, req.DeviceId = gw, "bound"
		}
		if err := states.s.Send(req); err != nil {
			t.Fatalf("send burst-%d: %v", i, err)
		}
	}
	for i := range n {
		payload := fmt.Sprintf("burst-%d", i)
		if ack := next(t, payload, states.acks, states.errc, 30*time.Second); ack.GetIndex() != int64(i) {
			t.Fatalf("ack %d, want %d", ack.GetIndex(), i)
		}
		states.acked = append(states.acked, payload)
	}
	select {
	case err := <-states.errc:
		t.Fatalf("the stream ended: %v", err)
	default:
	}
	states.checkStored(devName)
}
