package pubsub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// setup makes a topic and a subscription on it, and publishes n messages
// with attributes i (0..n-1) and the ones given.
func (e *env) setup(c *pubsub.Client, topicID string, sub *pubsubpb.Subscription, n int, attrs func(i int) map[string]string) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic(topicID)}); err != nil && status.Code(err) != codes.AlreadyExists {
		e.t.Fatal(err)
	}
	sub.Topic = topic(topicID)
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, sub); err != nil {
		e.t.Fatal(err)
	}
	var msgs []*pubsubpb.PubsubMessage
	for i := range n {
		a := map[string]string{"i": fmt.Sprint(i)}
		if attrs != nil {
			for k, v := range attrs(i) {
				a[k] = v
			}
		}
		msgs = append(msgs, &pubsubpb.PubsubMessage{Data: fmt.Appendf(nil, "m%d", i), Attributes: a})
	}
	if n > 0 {
		if _, err := c.TopicAdminClient.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic(topicID), Messages: msgs}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// open starts a raw StreamingPull stream, as the clients speak it.
func open(t *testing.T, c *pubsub.Client, first *pubsubpb.StreamingPullRequest) pubsubpb.Subscriber_StreamingPullClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := c.SubscriptionAdminClient.StreamingPull(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(first); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestFilterAndDeadLetter(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.client(adminauth.RoleEditor)
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic("dead")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: subName("dead-sub"), Topic: topic("dead")}); err != nil {
		t.Fatal(err)
	}
	e.setup(c, "src", &pubsubpb.Subscription{
		Name: subName("filtered"), Filter: `attributes.deviceId = "d1" AND NOT hasPrefix(attributes.subFolder, "debug")`,
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: topic("dead"), MaxDeliveryAttempts: 5},
	}, 6, func(i int) map[string]string {
		return map[string]string{"deviceId": []string{"d1", "d2"}[i%2], "subFolder": []string{"temp", "debug"}[i/3]}
	})
	// Matching: i = 0 and 2 (d1, temp); 4 is d1 but debug.
	st := open(t, c, &pubsubpb.StreamingPullRequest{Subscription: subName("filtered"), StreamAckDeadlineSeconds: 10, ProtocolVersion: 1})
	attempts := map[string][]int32{}
	for len(attempts["m0"]) < 5 || len(attempts["m2"]) < 5 {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var nack []string
		for _, m := range resp.GetReceivedMessages() {
			d := string(m.GetMessage().GetData())
			if d != "m0" && d != "m2" {
				t.Fatalf("the filter let %s through (attributes %v)", d, m.GetMessage().GetAttributes())
			}
			attempts[d] = append(attempts[d], m.GetDeliveryAttempt())
			nack = append(nack, m.GetAckId())
		}
		secs := make([]int32, len(nack))
		if err := st.Send(&pubsubpb.StreamingPullRequest{ModifyDeadlineAckIds: nack, ModifyDeadlineSeconds: secs}); err != nil {
			t.Fatal(err)
		}
	}
	for d, a := range attempts {
		for i, n := range a[:5] {
			if n != int32(i+1) {
				t.Errorf("%s: delivery attempts %v, want 1..5", d, a)
				break
			}
		}
	}
	// After 5 attempts both go to the dead-letter topic, with Google's
	// attributes.
	pull := func() []*pubsubpb.ReceivedMessage {
		resp, err := c.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: subName("dead-sub"), MaxMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetReceivedMessages()
	}
	var dead []*pubsubpb.ReceivedMessage
	testutil.WaitFor(t, 20*time.Second, func() error {
		dead = append(dead, pull()...)
		if len(dead) < 2 {
			return fmt.Errorf("%d messages in the dead-letter subscription", len(dead))
		}
		return nil
	})
	for _, m := range dead {
		a := m.GetMessage().GetAttributes()
		if a["CloudPubSubDeadLetterSourceSubscription"] != subName("filtered") || a["CloudPubSubDeadLetterSourceDeliveryCount"] != "5" || a["deviceId"] != "d1" {
			t.Errorf("dead-lettered message attributes: %v", a)
		}
	}
}

func TestDeadlinesAndFlowControl(t *testing.T) {
	e := start(t)
	c := e.client(adminauth.RoleEditor)
	e.setup(c, "flow", &pubsubpb.Subscription{Name: subName("flow"), AckDeadlineSeconds: 10}, 10, nil)
	// At most 3 outstanding: the server sends 3 and no more until one
	// is acked.
	st := open(t, c, &pubsubpb.StreamingPullRequest{Subscription: subName("flow"), StreamAckDeadlineSeconds: 10, MaxOutstandingMessages: 3, ProtocolVersion: 1})
	var got []*pubsubpb.ReceivedMessage
	for len(got) < 3 {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.GetReceivedMessages()...)
	}
	if len(got) != 3 {
		t.Fatalf("%d messages with max_outstanding_messages 3", len(got))
	}
	// A ping is answered, and nothing more comes while 3 are out.
	if err := st.Send(&pubsubpb.StreamingPullRequest{}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetReceivedMessages()); n != 0 {
		t.Fatalf("%d more messages past max_outstanding_messages", n)
	}
	// Extend the first past its deadline and ack the other two: one
	// slot frees per ack, so exactly two more come.
	if err := st.Send(&pubsubpb.StreamingPullRequest{AckIds: []string{got[1].GetAckId(), got[2].GetAckId()},
		ModifyDeadlineAckIds: []string{got[0].GetAckId()}, ModifyDeadlineSeconds: []int32{60}}); err != nil {
		t.Fatal(err)
	}
	var more []*pubsubpb.ReceivedMessage
	for len(more) < 2 {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		more = append(more, resp.GetReceivedMessages()...)
	}
	// The extended message does not come back at its 10 s deadline on a
	// second stream (a synchronous pull that waits 12 s).
	pctx, cancel := context.WithTimeout(context.Background(), 13*time.Second)
	defer cancel()
	ids := map[string]bool{}
	deadline := time.Now().Add(12 * time.Second)
	for time.Now().Before(deadline) {
		r, err := c.SubscriptionAdminClient.Pull(pctx, &pubsubpb.PullRequest{Subscription: subName("flow"), MaxMessages: 100})
		if err != nil {
			break
		}
		for _, m := range r.GetReceivedMessages() {
			ids[m.GetMessage().GetMessageId()] = true
			if m.GetMessage().GetMessageId() == got[0].GetMessage().GetMessageId() {
				t.Fatalf("the message whose deadline was extended to 60 s came back within 12 s")
			}
		}
	}
	// The five never acked (two on the stream, three left) did come back
	// to the pull, or were still there; the acked two never.
	for _, m := range got[1:] {
		if ids[m.GetMessage().GetMessageId()] {
			t.Errorf("acked message %s was delivered again", m.GetMessage().GetMessageId())
		}
	}
	if len(ids) < 5 {
		t.Errorf("the pull got %d messages, want the 5 never sent plus the 2 left unacked past their deadline", len(ids))
	}
}

func TestBadStreamEndsAloneAndExactlyOnce(t *testing.T) {
	e := start(t)
	c := e.client(adminauth.RoleEditor)
	e.setup(c, "eod", &pubsubpb.Subscription{Name: subName("eod"), EnableExactlyOnceDelivery: true}, 2, nil)
	good := open(t, c, &pubsubpb.StreamingPullRequest{Subscription: subName("eod"), StreamAckDeadlineSeconds: 60, ProtocolVersion: 1})
	bad := open(t, c, &pubsubpb.StreamingPullRequest{Subscription: subName("eod"), StreamAckDeadlineSeconds: 60})
	// Garbage: deadlines that do not pair with the ids.
	if err := bad.Send(&pubsubpb.StreamingPullRequest{ModifyDeadlineAckIds: []string{"a", "b"}, ModifyDeadlineSeconds: []int32{1}}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := bad.Recv()
		if err == nil {
			continue // messages sent before the garbage was read
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("the bad stream ended with %v, want INVALID_ARGUMENT", err)
		}
		break
	}
	// The good one goes on, with exactly-once properties and per-id
	// confirmations.
	var msgs []*pubsubpb.ReceivedMessage
	for len(msgs) < 2 {
		resp, err := good.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetReceivedMessages()) > 0 && !resp.GetSubscriptionProperties().GetExactlyOnceDeliveryEnabled() {
			t.Error("subscription_properties do not say exactly-once")
		}
		msgs = append(msgs, resp.GetReceivedMessages()...)
	}
	if err := good.Send(&pubsubpb.StreamingPullRequest{AckIds: []string{msgs[0].GetAckId(), "bogus"}}); err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := good.Recv()
		if err != nil {
			t.Fatal(err)
		}
		conf := resp.GetAcknowledgeConfirmation()
		if conf == nil {
			continue
		}
		if len(conf.GetAckIds()) != 1 || conf.GetAckIds()[0] != msgs[0].GetAckId() || len(conf.GetInvalidAckIds()) != 1 || conf.GetInvalidAckIds()[0] != "bogus" {
			t.Errorf("ack confirmation %v", conf)
		}
		break
	}
	// Unary acks report a bad id in ErrorInfo, as Google does.
	err := c.SubscriptionAdminClient.Acknowledge(context.Background(), &pubsubpb.AcknowledgeRequest{Subscription: subName("eod"), AckIds: []string{msgs[1].GetAckId(), "bogus"}})
	st := status.Convert(err)
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil || info.GetMetadata()["bogus"] != "PERMANENT_FAILURE_INVALID_ACK_ID" || info.GetReason() != "EXACTLY_ONCE_ACKID_FAILURE" {
		t.Errorf("unary ack of a bogus id: %v, details %v", err, info)
	}
}

func TestOrderingAndRetention(t *testing.T) {
	e := start(t)
	c := e.client(adminauth.RoleEditor)
	e.setup(c, "ordered", &pubsubpb.Subscription{Name: subName("ordered"), EnableMessageOrdering: true,
		MessageRetentionDuration: durationpb.New(10 * time.Minute), RetainAckedMessages: true}, 0, nil)
	ctx := context.Background()
	p := c.Publisher(topic("ordered"))
	p.EnableMessageOrdering = true
	defer p.Stop()
	const n = 30
	for i := range n {
		if _, err := p.Publish(ctx, &pubsub.Message{Data: fmt.Appendf(nil, "%d", i), OrderingKey: "k"}).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Nack the 10th once: it comes back before anything after it.
	var order []string
	nacked := false
	rctx, cancel := context.WithCancel(ctx)
	err := c.Subscriber(subName("ordered")).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		if string(m.Data) == "10" && !nacked {
			nacked = true
			m.Nack()
			return
		}
		order = append(order, string(m.Data))
		m.Ack()
		if len(order) == n {
			cancel()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range order {
		if d != fmt.Sprint(i) {
			t.Fatalf("received in the order %v", order)
		}
	}
	// Seek to a time replays the acked messages.
	if _, err := c.SubscriptionAdminClient.Seek(ctx, &pubsubpb.SeekRequest{Subscription: subName("ordered"),
		Target: &pubsubpb.SeekRequest_Time{Time: timestamppbNow(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	r, err := c.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: subName("ordered"), MaxMessages: 1})
	if err != nil || len(r.GetReceivedMessages()) != 1 || string(r.GetReceivedMessages()[0].GetMessage().GetData()) != "0" {
		t.Errorf("pull after Seek: %v %v", r, err)
	}
}

func timestamppbNow(d time.Duration) *timestamppb.Timestamp {
	return timestamppb.New(time.Now().Add(d))
}

// TestDeletedTopicDetachesItsSubscriptions: a subscription of a deleted
// topic stays, shows _deleted-topic_ and delivers its backlog, and none
// of a topic made again with the same name, which new subscriptions get.
func TestDeletedTopicDetachesItsSubscriptions(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.client(adminauth.RoleEditor)
	e.setup(c, "doomed", &pubsubpb.Subscription{Name: subName("old")}, 2, nil)
	if err := c.TopicAdminClient.DeleteTopic(ctx, &pubsubpb.DeleteTopicRequest{Topic: topic("doomed")}); err != nil {
		t.Fatal(err)
	}
	got, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: subName("old")})
	if err != nil || got.GetTopic() != "_deleted-topic_" {
		t.Fatalf("subscription of the deleted topic: %v, %v", got, err)
	}
	// The topic again, a new subscription, and a message on it.
	e.setup(c, "doomed", &pubsubpb.Subscription{Name: subName("new")}, 0, nil)
	if _, err := c.TopicAdminClient.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic("doomed"),
		Messages: []*pubsubpb.PubsubMessage{{Data: []byte("after")}}}); err != nil {
		t.Fatal(err)
	}
	// pullAll pulls and acks until want messages came, then once more,
	// returning at once, for any extra.
	pullAll := func(sub string, want int) []string {
		var data []string
		for try := 0; try < 20; try++ {
			extra := len(data) >= want
			resp, err := c.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: subName(sub), MaxMessages: 10, ReturnImmediately: extra})
			if err != nil {
				t.Fatalf("pull %s: %v", sub, err)
			}
			var ids []string
			for _, m := range resp.ReceivedMessages {
				data = append(data, string(m.Message.Data))
				ids = append(ids, m.AckId)
			}
			if len(ids) > 0 {
				if err := c.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: subName(sub), AckIds: ids}); err != nil {
					t.Fatal(err)
				}
			}
			if extra {
				break
			}
		}
		return data
	}
	if d := pullAll("old", 2); fmt.Sprint(d) != "[m0 m1]" {
		t.Errorf("the detached subscription delivered %q, want its backlog [m0 m1]", d)
	}
	if d := pullAll("new", 1); fmt.Sprint(d) != "[after]" {
		t.Errorf("the new subscription delivered %q, want [after]", d)
	}
}
