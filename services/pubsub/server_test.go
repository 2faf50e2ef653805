package pubsub_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	ps "github.com/passerelle-iot/passerelle/services/pubsub"
)

const project = "my-project"

type env struct {
	t      *testing.T
	bus    *bus.Bus
	addr   string
	tokens map[adminauth.Role]string
}

// bearer sends a token on every call, over plaintext.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// start runs a server on an embedded bus, with a token for each role.
func start(t *testing.T, opts ...ps.Option) *env {
	t.Helper()
	logger := testutil.Logger(t)
	b, err := bus.Open(context.Background(), logger, bus.Options{DataDir: filepath.Join(t.TempDir(), "nats"), ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return startOn(t, b, opts...)
}

// startOn runs a server on b (another replica when b is a second
// connection to the same NATS).
func startOn(t *testing.T, b *bus.Bus, opts ...ps.Option) *env {
	t.Helper()
	logger := testutil.Logger(t)
	e := &env{t: t, bus: b, tokens: map[adminauth.Role]string{}}
	tokens := adminauth.NewTokens()
	for _, r := range []adminauth.Role{adminauth.RoleViewer, adminauth.RoleDeviceController, adminauth.RoleEditor} {
		tok := testutil.Must(adminauth.NewToken())
		if err := tokens.Add(r.String(), r, adminauth.HashToken(tok)); err != nil {
			t.Fatal(err)
		}
		e.tokens[r] = tok
	}
	srv, err := ps.New(logger, b, append([]ps.Option{ps.WithTokens(tokens)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	stop := testutil.Serve(t, func(ctx context.Context) error { return srv.Serve(ctx, lis) })
	t.Cleanup(stop)
	return e
}

// client is Google's Go client on the server's explicit endpoint with the
// role's token.
func (e *env) client(role adminauth.Role) *pubsub.Client {
	e.t.Helper()
	c, err := pubsub.NewClient(context.Background(), project, option.WithEndpoint(e.addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(e.tokens[role]))))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

func topic(id string) string { return fmt.Sprintf("projects/%s/topics/%s", project, id) }
func subName(id string) string {
	return fmt.Sprintf("projects/%s/subscriptions/%s", project, id)
}

func code(err error) codes.Code { return status.Code(err) }

func TestPublishReceiveAckNack(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	admin := e.client(adminauth.RoleEditor)
	if _, err := admin.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic("events")}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: subName("app"), Topic: topic("events"), AckDeadlineSeconds: 10,
	}); err != nil {
		t.Fatal(err)
	}
	pub := e.client(adminauth.RoleDeviceController).Publisher(topic("events"))
	defer pub.Stop()
	const n = 20
	ids := map[string]bool{}
	for i := range n {
		id, err := pub.Publish(ctx, &pubsub.Message{Data: fmt.Appendf(nil, "m%d", i), Attributes: map[string]string{"i": fmt.Sprint(i)}}).Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if len(ids) != n {
		t.Fatalf("%d distinct message ids for %d messages", len(ids), n)
	}

	// Nack every message once: each comes back, with the same id.
	sub := e.client(adminauth.RoleViewer).Subscriber(subName("app"))
	var mu sync.Mutex
	seen := map[string]int{}
	acked := map[string]bool{}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- sub.Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			mu.Lock()
			defer mu.Unlock()
			seen[m.ID]++
			if m.PublishTime.IsZero() || m.Attributes["i"] == "" {
				t.Errorf("message %s: publish time %v, attributes %v", m.ID, m.PublishTime, m.Attributes)
			}
			if seen[m.ID] == 1 {
				m.Nack()
				return
			}
			acked[m.ID] = true
			m.Ack()
		})
	}()
	testutil.WaitFor(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < n {
			return fmt.Errorf("%d of %d messages acked after a redelivery", len(acked), n)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for id := range acked {
		if !ids[id] {
			t.Errorf("received an id %s that Publish did not return", id)
		}
	}
	// Nothing is left: a synchronous pull finds nothing.
	resp, err := admin.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: subName("app"), MaxMessages: 10, ReturnImmediately: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ReceivedMessages) != 0 {
		t.Errorf("%d messages left after every one was acked", len(resp.ReceivedMessages))
	}
}

func TestRolesAndValidation(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	viewer := e.client(adminauth.RoleViewer)
	if _, err := viewer.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic("topic1")}); code(err) != codes.PermissionDenied {
		t.Errorf("viewer CreateTopic: %v, want PERMISSION_DENIED", err)
	}
	admin := e.client(adminauth.RoleEditor)
	for _, name := range []string{"projects/p/topics/go", "projects/p/topics/goog-x", "projects/p/topics/1abc", "projects/p/topic/abc", "topics/abc"} {
		if _, err := admin.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name}); code(err) != codes.InvalidArgument {
			t.Errorf("CreateTopic(%q): %v, want INVALID_ARGUMENT", name, err)
		}
	}
	if _, err := admin.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic("topic1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic("topic1")}); code(err) != codes.AlreadyExists {
		t.Errorf("second CreateTopic: %v, want ALREADY_EXISTS", err)
	}
	if _, err := admin.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: topic("nope")}); code(err) != codes.NotFound {
		t.Errorf("GetTopic of a missing topic: %v, want NOT_FOUND", err)
	}
	for _, s := range []*pubsubpb.Subscription{
		{Name: subName("sub1"), Topic: topic("topic1"), AckDeadlineSeconds: 5},
		{Name: subName("sub1"), Topic: topic("topic1"), AckDeadlineSeconds: 601},
		{Name: subName("sub1"), Topic: topic("topic1"), Filter: `attributes.x = `},
		{Name: subName("sub1"), Topic: topic("topic1"), DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: topic("topic1"), MaxDeliveryAttempts: 2}},
	} {
		if _, err := admin.SubscriptionAdminClient.CreateSubscription(ctx, s); code(err) != codes.InvalidArgument {
			t.Errorf("CreateSubscription(%v): %v, want INVALID_ARGUMENT", s, err)
		}
	}
	if _, err := admin.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: subName("sub1"), Topic: topic("missing")}); code(err) != codes.NotFound {
		t.Errorf("CreateSubscription on a missing topic: %v, want NOT_FOUND", err)
	}
	pubc := e.client(adminauth.RoleDeviceController).TopicAdminClient
	big := make([]*pubsubpb.PubsubMessage, 1001)
	for i := range big {
		big[i] = &pubsubpb.PubsubMessage{Data: []byte("x")}
	}
	attrs := map[string]string{}
	for i := range 101 {
		attrs[fmt.Sprint("k", i)] = "v"
	}
	for name, req := range map[string]*pubsubpb.PublishRequest{
		"1001 messages":  {Topic: topic("topic1"), Messages: big},
		"11 MB":          {Topic: topic("topic1"), Messages: []*pubsubpb.PubsubMessage{{Data: make([]byte, 11_000_000)}}},
		"101 attributes": {Topic: topic("topic1"), Messages: []*pubsubpb.PubsubMessage{{Data: []byte("x"), Attributes: attrs}}},
		"empty message":  {Topic: topic("topic1"), Messages: []*pubsubpb.PubsubMessage{{}}},
		"goog attribute": {Topic: topic("topic1"), Messages: []*pubsubpb.PubsubMessage{{Data: []byte("x"), Attributes: map[string]string{"googx": "v"}}}},
	} {
		if _, err := pubc.Publish(ctx, req); code(err) != codes.InvalidArgument {
			t.Errorf("Publish with %s: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	if _, err := viewer.TopicAdminClient.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic("topic1"), Messages: []*pubsubpb.PubsubMessage{{Data: []byte("x")}}}); code(err) != codes.PermissionDenied {
		t.Errorf("viewer Publish: %v, want PERMISSION_DENIED", err)
	}
	// Unknown ack ids are ignored, and one that is no ack subject of this
	// subscription is never published anywhere.
	if _, err := admin.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: subName("sub1"), Topic: topic("topic1")}); err != nil {
		t.Fatal(err)
	}
	if err := admin.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: subName("sub1"), AckIds: []string{"nope", "iot.pubsub.x.y"}}); err != nil {
		t.Errorf("Acknowledge of unknown ids: %v, want OK", err)
	}
	noAuth, err := pubsub.NewClient(ctx, project, option.WithEndpoint(e.addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer noAuth.Close()
	if _, err := noAuth.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: topic("topic1")}); code(err) != codes.Unauthenticated {
		t.Errorf("GetTopic without a token: %v, want UNAUTHENTICATED", err)
	}
	if err := admin.SubscriptionAdminClient.DeleteSubscription(ctx, &pubsubpb.DeleteSubscriptionRequest{Subscription: subName("sub1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: subName("sub1")}); code(err) != codes.NotFound {
		t.Errorf("GetSubscription after delete: %v, want NOT_FOUND", err)
	}
}

// Two replicas on one NATS share the records, and an ack sent to the one
// that did not deliver the message settles it.
func TestAckOnAnotherReplica(t *testing.T) {
	a := start(t)
	b2, err := bus.Open(context.Background(), testutil.Logger(t), bus.Options{URL: a.bus.Server().ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Close() })
	b := startOn(t, b2)
	ctx := context.Background()
	ca := a.client(adminauth.RoleEditor)
	if _, err := ca.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic("shared")}); err != nil {
		t.Fatal(err)
	}
	// Made on a, seen by b.
	cb := e2client(t, b)
	if _, err := cb.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: subName("shared"), Topic: topic("shared")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.TopicAdminClient.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic("shared"), Messages: []*pubsubpb.PubsubMessage{{Data: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	r, err := ca.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: subName("shared"), MaxMessages: 1})
	if err != nil || len(r.GetReceivedMessages()) != 1 {
		t.Fatalf("pull on a: %v %v", r, err)
	}
	if err := cb.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: subName("shared"),
		AckIds: []string{r.GetReceivedMessages()[0].GetAckId()}, AckDeadlineSeconds: 0}); err != nil {
		t.Fatal(err)
	}
	// Nacked through b: a delivers it again at once; acked through b: never again.
	r2, err := ca.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: subName("shared"), MaxMessages: 1})
	if err != nil || len(r2.GetReceivedMessages()) != 1 || r2.GetReceivedMessages()[0].GetMessage().GetMessageId() != r.GetReceivedMessages()[0].GetMessage().GetMessageId() {
		t.Fatalf("pull after the nack on b: %v %v", r2, err)
	}
	if err := cb.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: subName("shared"),
		AckIds: []string{r2.GetReceivedMessages()[0].GetAckId()}}); err != nil {
		t.Fatal(err)
	}
	// JetStream holds nothing out for the subscription's consumer.
	js, err := jetstream.New(a.bus.Conn())
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, a.bus.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		for info := range stream.ListConsumers(ctx).Info() {
			if info.Config.Description == "Pub/Sub subscription "+subName("shared") {
				if info.NumAckPending != 0 || info.NumPending != 0 {
					return fmt.Errorf("consumer %s: %d out, %d pending", info.Name, info.NumAckPending, info.NumPending)
				}
				return nil
			}
		}
		return fmt.Errorf("no consumer for %s", subName("shared"))
	})
}

func e2client(t *testing.T, e *env) *pubsub.Client { return e.client(adminauth.RoleEditor) }
