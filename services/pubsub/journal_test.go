package pubsub_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// TestAckJournal: an exactly-once ack is journaled before it is
// confirmed; a server started later never delivers a journaled message
// (it acks it again, as if JetStream had lost the ack in a crash), and the
// journal empties once the acks are settled.
func TestAckJournal(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	admin := e.client(adminauth.RoleEditor)
	e.setup(admin, "j-events", &pubsubpb.Subscription{Name: subName("j-app"), AckDeadlineSeconds: 10, EnableExactlyOnceDelivery: true}, 3, nil)
	resp, err := admin.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: subName("j-app"), MaxMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*pubsubpb.ReceivedMessage{}
	for len(got) < 3 {
		for _, m := range resp.GetReceivedMessages() {
			got[string(m.GetMessage().GetData())] = m
		}
		if len(got) < 3 {
			if resp, err = admin.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: subName("j-app"), MaxMessages: 10}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := admin.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{
		Subscription: subName("j-app"), AckIds: []string{got["m0"].GetAckId()}}); err != nil {
		t.Fatal(err)
	}
	js := testutil.Must(jetstream.New(e.bus.Conn()))
	journal := e.bus.StreamName() + "_ACKS"
	st, err := js.Stream(ctx, journal)
	if err != nil {
		t.Fatalf("the ack journal: %v", err)
	}
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("the journal holds %d entries after one confirmed ack, want 1", n)
	}

	// m1's ack as an earlier run journaled it (and JetStream lost it).
	consumer := strings.Split(got["m1"].GetAckId(), ".")[3]
	seq, err := strconv.ParseUint(got["m1"].GetMessage().GetMessageId(), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, journal+".earlier."+consumer, binary.AppendUvarint(nil, seq)); err != nil {
		t.Fatal(err)
	}
	// A server started now loads it: nacked m1 and m2 come back, m1 is
	// acked again without being delivered.
	e2 := startOn(t, e.bus)
	c2 := e2.client(adminauth.RoleEditor)
	if err := c2.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{
		Subscription: subName("j-app"), AckIds: []string{got["m1"].GetAckId(), got["m2"].GetAckId()}}); err != nil {
		t.Fatal(err)
	}
	var redelivered []string
	testutil.WaitFor(t, 30*time.Second, func() error {
		r, err := c2.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: subName("j-app"), MaxMessages: 10, ReturnImmediately: true})
		if err != nil {
			return err
		}
		for _, m := range r.GetReceivedMessages() {
			redelivered = append(redelivered, string(m.GetMessage().GetData()))
			if err := c2.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{
				Subscription: subName("j-app"), AckIds: []string{m.GetAckId()}}); err != nil {
				return err
			}
		}
		info, err := js.Consumer(ctx, e.bus.StreamName(), consumer)
		if err != nil {
			return err
		}
		if p := info.CachedInfo().NumAckPending; p != 0 {
			return fmt.Errorf("%d messages pending, redelivered %v", p, redelivered)
		}
		return nil
	})
	if fmt.Sprint(redelivered) != "[m2]" {
		t.Errorf("redelivered %v after m1's ack was journaled, want [m2]", redelivered)
	}
	// Settled, the entries are purged.
	testutil.WaitFor(t, 60*time.Second, func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if n := info.State.Msgs; n != 0 {
			return fmt.Errorf("the journal still holds %d entries", n)
		}
		return nil
	})
}
