package pubsub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/passerelle-iot/passerelle/services/pubsub/filter"
)

// Subscription settings and their ranges (pubsub-spec section 2).
const (
	defaultAckDeadline   = 10
	minAckDeadline       = 10
	maxAckDeadline       = 600
	minRetention         = 10 * time.Minute
	maxSubRetention      = 31 * 24 * time.Hour
	maxTopicRetention    = 31 * 24 * time.Hour
	defaultRetention     = 7 * 24 * time.Hour
	defaultMaxDeliveries = 5
	minMaxDeliveries     = 5
	maxMaxDeliveries     = 100
	maxBackoff           = 600 * time.Second
	// maxAckPending bounds the messages JetStream holds out for one
	// subscription, across its clients.
	maxAckPending = 100_000
)

// consumerName is the durable JetStream consumer of a subscription: a hash,
// since subscription names hold bytes consumer names may not.
func consumerName(sub string) string {
	h := sha256.Sum256([]byte(sub))
	return "pubsub-" + hex.EncodeToString(h[:16])
}

func checkDuration(field string, d, lo, hi time.Duration) error {
	if d < lo || d > hi {
		return status.Errorf(codes.InvalidArgument, "%s must be between %s and %s, not %s", field, lo, hi, d)
	}
	return nil
}

// normalize checks a subscription as CreateSubscription receives it and
// fills in the defaults.
func (s *Server) normalize(ctx context.Context, in *pubsubpb.Subscription) (*pubsubpb.Subscription, error) {
	sub := proto.Clone(in).(*pubsubpb.Subscription)
	if _, _, err := parseName("name", "subscriptions", sub.GetName()); err != nil {
		return nil, err
	}
	if _, _, err := parseName("topic", "topics", sub.GetTopic()); err != nil {
		return nil, err
	}
	switch d := sub.GetAckDeadlineSeconds(); {
	case d == 0:
		sub.AckDeadlineSeconds = defaultAckDeadline
	case d < minAckDeadline || d > maxAckDeadline:
		return nil, status.Errorf(codes.InvalidArgument, "ack_deadline_seconds must be between %d and %d, not %d", minAckDeadline, maxAckDeadline, d)
	}
	if sub.GetMessageRetentionDuration() == nil {
		sub.MessageRetentionDuration = durationpb.New(defaultRetention)
	} else if err := checkDuration("message_retention_duration", sub.GetMessageRetentionDuration().AsDuration(), minRetention, maxSubRetention); err != nil {
		return nil, err
	}
	if _, err := filter.Parse(sub.GetFilter()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid filter: %v", err)
	}
	if pc := sub.GetPushConfig(); pc.GetPushEndpoint() != "" {
		return nil, status.Error(codes.Unimplemented, "push subscriptions are not supported by Passerelle: use a pull subscription")
	}
	if sub.GetBigqueryConfig() != nil || sub.GetCloudStorageConfig() != nil {
		return nil, status.Error(codes.Unimplemented, "BigQuery and Cloud Storage subscriptions are not supported by Passerelle")
	}
	if dl := sub.GetDeadLetterPolicy(); dl != nil {
		if _, _, err := parseName("dead_letter_policy.dead_letter_topic", "topics", dl.GetDeadLetterTopic()); err != nil {
			return nil, err
		}
		if err := s.topicExists(ctx, dl.GetDeadLetterTopic()); err != nil {
			return nil, err
		}
		switch n := dl.GetMaxDeliveryAttempts(); {
		case n == 0:
			dl.MaxDeliveryAttempts = defaultMaxDeliveries
		case n < minMaxDeliveries || n > maxMaxDeliveries:
			return nil, status.Errorf(codes.InvalidArgument, "dead_letter_policy.max_delivery_attempts must be between %d and %d, not %d", minMaxDeliveries, maxMaxDeliveries, n)
		}
	}
	if rp := sub.GetRetryPolicy(); rp != nil {
		if rp.GetMinimumBackoff() == nil {
			rp.MinimumBackoff = durationpb.New(10 * time.Second)
		}
		if rp.GetMaximumBackoff() == nil {
			rp.MaximumBackoff = durationpb.New(maxBackoff)
		}
		lo, hi := rp.GetMinimumBackoff().AsDuration(), rp.GetMaximumBackoff().AsDuration()
		if err := checkDuration("retry_policy.minimum_backoff", lo, 0, maxBackoff); err != nil {
			return nil, err
		}
		if err := checkDuration("retry_policy.maximum_backoff", hi, lo, maxBackoff); err != nil {
			return nil, err
		}
	}
	if ep := sub.GetExpirationPolicy(); ep != nil && ep.GetTtl() != nil {
		if ttl := ep.GetTtl().AsDuration(); ttl < 24*time.Hour {
			return nil, status.Errorf(codes.InvalidArgument, "expiration_policy.ttl must be at least 1 day, not %s", ttl)
		}
	}
	sub.State = pubsubpb.Subscription_ACTIVE
	sub.Detached = false
	return sub, nil
}

// consumerConfig is the JetStream consumer of a subscription.
func (s *Server) consumerConfig(sub *pubsubpb.Subscription, subject string) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       consumerName(sub.GetName()),
		Description:   "Pub/Sub subscription " + sub.GetName(),
		FilterSubject: subject,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Duration(sub.GetAckDeadlineSeconds()) * time.Second,
		MaxDeliver:    -1, // dead-lettering is the server's, see prepare
		MaxAckPending: maxAckPending,
		MaxWaiting:    4096,
	}
	if sub.GetEnableMessageOrdering() {
		// One message out at a time: every key is delivered in order,
		// a redelivery before anything after it.
		cfg.MaxAckPending = 1
	}
	return cfg
}

type subscriber struct {
	pubsubpb.UnimplementedSubscriberServer
	s *Server
}

func (p *subscriber) CreateSubscription(ctx context.Context, in *pubsubpb.Subscription) (*pubsubpb.Subscription, error) {
	s := p.s
	sub, err := s.normalize(ctx, in)
	if err != nil {
		return nil, err
	}
	if err := s.topicExists(ctx, sub.GetTopic()); err != nil {
		return nil, err
	}
	subject, err := s.bus.TopicSubject(sub.GetTopic())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "topic %s: %v", sub.GetTopic(), err)
	}
	m, err := s.metaStore(ctx)
	if err != nil {
		return nil, s.storeError(ctx, "open bucket", err)
	}
	// The record first: it reserves the name, so a concurrent create of
	// the same subscription never touches this one's consumer.
	switch err := m.create(ctx, kindSubscription, sub.GetName(), sub); {
	case errors.Is(err, errExists):
		return nil, status.Errorf(codes.AlreadyExists, "Resource already exists in the project (resource=%s).", sub.GetName())
	case err != nil:
		return nil, s.storeError(ctx, "create subscription", err)
	}
	if _, err := s.js.CreateOrUpdateConsumer(ctx, s.bus.StreamName(), s.consumerConfig(sub, subject)); err != nil {
		_ = m.delete(context.WithoutCancel(ctx), kindSubscription, sub.GetName())
		return nil, s.storeError(ctx, "create consumer", err)
	}
	return sub, nil
}

func (s *Server) getSubscription(ctx context.Context, name string) (*pubsubpb.Subscription, uint64, error) {
	if _, _, err := parseName("subscription", "subscriptions", name); err != nil {
		return nil, 0, err
	}
	m, err := s.metaStore(ctx)
	if err != nil {
		return nil, 0, s.storeError(ctx, "open bucket", err)
	}
	var sub pubsubpb.Subscription
	rev, err := m.get(ctx, kindSubscription, name, &sub)
	if errors.Is(err, errNotFound) {
		return nil, 0, status.Errorf(codes.NotFound, "Resource not found (resource=%s).", name)
	}
	if err != nil {
		return nil, 0, s.storeError(ctx, "get subscription", err)
	}
	return &sub, rev, nil
}

func (p *subscriber) GetSubscription(ctx context.Context, req *pubsubpb.GetSubscriptionRequest) (*pubsubpb.Subscription, error) {
	sub, _, err := p.s.getSubscription(ctx, req.GetSubscription())
	return sub, err
}

// subscriptions lists a project's subscriptions ("" for every project).
func (s *Server) subscriptions(ctx context.Context, project string) ([]*pubsubpb.Subscription, error) {
	m, err := s.metaStore(ctx)
	if err != nil {
		return nil, s.storeError(ctx, "open bucket", err)
	}
	names, err := m.names(ctx, kindSubscription)
	if err != nil {
		return nil, s.storeError(ctx, "list subscriptions", err)
	}
	var out []*pubsubpb.Subscription
	for _, n := range names {
		if p, _, err := parseName("", "subscriptions", n); err != nil || (project != "" && p != project) {
			continue
		}
		var sub pubsubpb.Subscription
		if _, err := m.get(ctx, kindSubscription, n, &sub); errors.Is(err, errNotFound) {
			continue
		} else if err != nil {
			return nil, s.storeError(ctx, "get subscription", err)
		}
		out = append(out, &sub)
	}
	return out, nil
}

func (p *subscriber) ListSubscriptions(ctx context.Context, req *pubsubpb.ListSubscriptionsRequest) (*pubsubpb.ListSubscriptionsResponse, error) {
	project, err := parseProject("project", req.GetProject())
	if err != nil {
		return nil, err
	}
	subs, err := p.s.subscriptions(ctx, project)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*pubsubpb.Subscription, len(subs))
	names := make([]string, 0, len(subs))
	for _, sub := range subs {
		byName[sub.GetName()] = sub
		names = append(names, sub.GetName())
	}
	page, next, err := pageOf(names, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &pubsubpb.ListSubscriptionsResponse{NextPageToken: next}
	for _, n := range page {
		resp.Subscriptions = append(resp.Subscriptions, byName[n])
	}
	return resp, nil
}

// updateSubscription changes a subscription's record (retrying when
// another replica wrote it in between) and its consumer.
func (s *Server) updateSubscription(ctx context.Context, name string, change func(*pubsubpb.Subscription)) error {
	m, err := s.metaStore(ctx)
	if err != nil {
		return s.storeError(ctx, "open bucket", err)
	}
	for range 10 {
		sub, rev, err := s.getSubscription(ctx, name)
		if err != nil {
			return err
		}
		change(sub)
		switch err := m.update(ctx, kindSubscription, name, sub, rev); {
		case errors.Is(err, errConflict):
			continue
		case err != nil:
			return s.storeError(ctx, "update subscription", err)
		}
		return nil
	}
	return status.Error(codes.Aborted, "the subscription is being changed concurrently; retry")
}

func (p *subscriber) UpdateSubscription(ctx context.Context, req *pubsubpb.UpdateSubscriptionRequest) (*pubsubpb.Subscription, error) {
	s := p.s
	in := req.GetSubscription()
	cur, _, err := s.getSubscription(ctx, in.GetName())
	if err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, status.Error(codes.InvalidArgument, "update_mask must name at least one field")
	}
	next := proto.Clone(cur).(*pubsubpb.Subscription)
	for _, path := range paths {
		switch path {
		case "ack_deadline_seconds", "ackDeadlineSeconds":
			next.AckDeadlineSeconds = in.GetAckDeadlineSeconds()
		case "retain_acked_messages", "retainAckedMessages":
			next.RetainAckedMessages = in.GetRetainAckedMessages()
		case "message_retention_duration", "messageRetentionDuration":
			next.MessageRetentionDuration = in.GetMessageRetentionDuration()
		case "labels":
			next.Labels = in.GetLabels()
		case "dead_letter_policy", "deadLetterPolicy":
			next.DeadLetterPolicy = in.GetDeadLetterPolicy()
		case "retry_policy", "retryPolicy":
			next.RetryPolicy = in.GetRetryPolicy()
		case "expiration_policy", "expirationPolicy":
			next.ExpirationPolicy = in.GetExpirationPolicy()
		case "enable_exactly_once_delivery", "enableExactlyOnceDelivery":
			next.EnableExactlyOnceDelivery = in.GetEnableExactlyOnceDelivery()
		case "push_config", "pushConfig":
			next.PushConfig = in.GetPushConfig()
		default:
			return nil, status.Errorf(codes.InvalidArgument, "the field %q cannot be updated", path)
		}
	}
	topic := next.GetTopic()
	if topic == deletedTopic {
		next.Topic = "projects/p/topics/deleted" // only for normalize's checks
	}
	norm, err := s.normalize(ctx, next)
	if err != nil {
		return nil, err
	}
	norm.Topic = topic
	if err := s.updateSubscription(ctx, norm.GetName(), func(sub *pubsubpb.Subscription) {
		t := sub.GetTopic()
		proto.Reset(sub)
		proto.Merge(sub, norm)
		sub.Topic = t
	}); err != nil {
		return nil, err
	}
	if norm.GetAckDeadlineSeconds() != cur.GetAckDeadlineSeconds() && topic != deletedTopic {
		subject, _ := s.bus.TopicSubject(topic)
		if _, err := s.js.UpdateConsumer(ctx, s.bus.StreamName(), s.consumerConfig(norm, subject)); err != nil {
			return nil, s.storeError(ctx, "update consumer", err)
		}
	}
	return norm, nil
}

func (p *subscriber) DeleteSubscription(ctx context.Context, req *pubsubpb.DeleteSubscriptionRequest) (*emptypb.Empty, error) {
	s := p.s
	if _, _, err := s.getSubscription(ctx, req.GetSubscription()); err != nil {
		return nil, err
	}
	err := s.js.DeleteConsumer(ctx, s.bus.StreamName(), consumerName(req.GetSubscription()))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, s.storeError(ctx, "delete consumer", err)
	}
	if err := s.journal.drop(ctx, consumerName(req.GetSubscription())); err != nil {
		s.logger.Warn("pubsub: dropping the journaled acks of a deleted subscription", "subscription", req.GetSubscription(), "err", err)
	}
	m, _ := s.metaStore(ctx)
	if err := m.delete(ctx, kindSubscription, req.GetSubscription()); err != nil {
		return nil, s.storeError(ctx, "delete subscription", err)
	}
	_ = m.delete(ctx, kindPolicy, req.GetSubscription())
	_ = m.delete(ctx, kindDetached, req.GetSubscription())
	return &emptypb.Empty{}, nil
}

func (p *subscriber) ModifyPushConfig(ctx context.Context, req *pubsubpb.ModifyPushConfigRequest) (*emptypb.Empty, error) {
	if req.GetPushConfig().GetPushEndpoint() != "" {
		return nil, status.Error(codes.Unimplemented, "push subscriptions are not supported by Passerelle: use a pull subscription")
	}
	if _, _, err := p.s.getSubscription(ctx, req.GetSubscription()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Seek to a time replays the messages the stream holds from that time on:
// the subscription's consumer is made again to start there. Snapshots are
// not supported.
func (p *subscriber) Seek(ctx context.Context, req *pubsubpb.SeekRequest) (*pubsubpb.SeekResponse, error) {
	s := p.s
	sub, _, err := s.getSubscription(ctx, req.GetSubscription())
	if err != nil {
		return nil, err
	}
	t := req.GetTime()
	if t == nil {
		return nil, status.Error(codes.Unimplemented, "snapshots are not supported by Passerelle: seek to a time")
	}
	if sub.GetTopic() == deletedTopic {
		return nil, status.Error(codes.FailedPrecondition, "the subscription's topic was deleted")
	}
	subject, err := s.bus.TopicSubject(sub.GetTopic())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "topic %s: %v", sub.GetTopic(), err)
	}
	cfg := s.consumerConfig(sub, subject)
	start := t.AsTime()
	cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
	cfg.OptStartTime = &start
	if err := s.js.DeleteConsumer(ctx, s.bus.StreamName(), cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, s.storeError(ctx, "seek", err)
	}
	// Replayed messages are delivered, though acked before.
	if err := s.journal.drop(ctx, cfg.Durable); err != nil {
		return nil, s.storeError(ctx, "seek", fmt.Errorf("drop the journaled acks: %w", err))
	}
	if _, err := s.js.CreateConsumer(ctx, s.bus.StreamName(), cfg); err != nil {
		return nil, s.storeError(ctx, "seek", fmt.Errorf("re-create the consumer: %w", err))
	}
	return &pubsubpb.SeekResponse{}, nil
}

func (p *subscriber) CreateSnapshot(context.Context, *pubsubpb.CreateSnapshotRequest) (*pubsubpb.Snapshot, error) {
	return nil, status.Error(codes.Unimplemented, "snapshots are not supported by Passerelle: Seek to a time to replay")
}

func (p *subscriber) ListSnapshots(ctx context.Context, req *pubsubpb.ListSnapshotsRequest) (*pubsubpb.ListSnapshotsResponse, error) {
	if _, err := parseProject("project", req.GetProject()); err != nil {
		return nil, err
	}
	return &pubsubpb.ListSnapshotsResponse{}, nil
}
