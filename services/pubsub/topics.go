package pubsub

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Limits of Publish (pubsub-spec section 2).
const (
	maxPublishMessages  = 1000
	maxPublishBytes     = 10_000_000
	maxAttributes       = 100
	maxAttributeKey     = 256
	maxAttributeValue   = 1024
	maxOrderingKeyBytes = 1024
)

// Headers the server keeps for itself; a message's other headers are its
// attributes.
const (
	headerOrderingKey = "passerelle-ordering-key"
	headerKind        = "iot-kind"
)

func reservedHeader(k string) bool {
	return k == headerOrderingKey || k == headerKind || k == "traceparent" || k == "tracestate" ||
		strings.HasPrefix(k, "Nats-") || strings.HasPrefix(k, "passerelle-")
}

// publisher serves google.pubsub.v1.Publisher.
type publisher struct {
	pubsubpb.UnimplementedPublisherServer
	s *Server
}

// topicExists reports whether a topic was created or is named by a
// registry.
func (s *Server) topicExists(ctx context.Context, name string) error {
	m, err := s.metaStore(ctx)
	if err != nil {
		return s.storeError(ctx, "open bucket", err)
	}
	var t pubsubpb.Topic
	_, err = m.get(ctx, kindTopic, name, &t)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, errNotFound):
		return s.storeError(ctx, "get topic", err)
	}
	named, err := s.registryTopic(ctx, name)
	if err != nil {
		return err
	}
	if !named {
		return status.Errorf(codes.NotFound, "Resource not found (resource=%s): create the topic, or name it as a registry's notification topic", name)
	}
	return nil
}

func (s *Server) registryTopic(ctx context.Context, name string) (bool, error) {
	if s.opts.registryTopics == nil {
		return false, nil
	}
	names, err := s.opts.registryTopics(ctx)
	if err != nil {
		return false, s.storeError(ctx, "list registry topics", err)
	}
	return slices.Contains(names, name), nil
}

func (p *publisher) CreateTopic(ctx context.Context, t *pubsubpb.Topic) (*pubsubpb.Topic, error) {
	s := p.s
	if _, _, err := parseName("name", "topics", t.GetName()); err != nil {
		return nil, err
	}
	if d := t.GetMessageRetentionDuration(); d != nil {
		if err := checkDuration("message_retention_duration", d.AsDuration(), minRetention, maxTopicRetention); err != nil {
			return nil, err
		}
	}
	if t.GetKmsKeyName() != "" || t.GetSchemaSettings() != nil || t.GetIngestionDataSourceSettings() != nil {
		return nil, status.Error(codes.Unimplemented, "kms_key_name, schema_settings and ingestion_data_source_settings are not supported by Passerelle")
	}
	m, err := s.metaStore(ctx)
	if err != nil {
		return nil, s.storeError(ctx, "open bucket", err)
	}
	out := &pubsubpb.Topic{Name: t.GetName(), Labels: t.GetLabels(), MessageRetentionDuration: t.GetMessageRetentionDuration(),
		MessageStoragePolicy: t.GetMessageStoragePolicy(), State: pubsubpb.Topic_ACTIVE}
	if named, err := s.registryTopic(ctx, t.GetName()); err != nil {
		return nil, err
	} else if named {
		// A registry named it first: creating it now records it (with its
		// labels), as the demo's create_iot_topic expects to succeed.
		var existing pubsubpb.Topic
		if _, err := m.get(ctx, kindTopic, t.GetName(), &existing); err == nil {
			return nil, status.Errorf(codes.AlreadyExists, "Resource already exists in the project (resource=%s).", t.GetName())
		}
	}
	switch err := m.create(ctx, kindTopic, t.GetName(), out); {
	case errors.Is(err, errExists):
		return nil, status.Errorf(codes.AlreadyExists, "Resource already exists in the project (resource=%s).", t.GetName())
	case err != nil:
		return nil, s.storeError(ctx, "create topic", err)
	}
	return out, nil
}

func (p *publisher) GetTopic(ctx context.Context, req *pubsubpb.GetTopicRequest) (*pubsubpb.Topic, error) {
	s := p.s
	if _, _, err := parseName("topic", "topics", req.GetTopic()); err != nil {
		return nil, err
	}
	m, err := s.metaStore(ctx)
	if err != nil {
		return nil, s.storeError(ctx, "open bucket", err)
	}
	var t pubsubpb.Topic
	if _, err := m.get(ctx, kindTopic, req.GetTopic(), &t); err == nil {
		return &t, nil
	} else if !errors.Is(err, errNotFound) {
		return nil, s.storeError(ctx, "get topic", err)
	}
	if err := s.topicExists(ctx, req.GetTopic()); err != nil {
		return nil, err
	}
	return &pubsubpb.Topic{Name: req.GetTopic(), State: pubsubpb.Topic_ACTIVE}, nil
}

func (p *publisher) UpdateTopic(ctx context.Context, req *pubsubpb.UpdateTopicRequest) (*pubsubpb.Topic, error) {
	return nil, status.Error(codes.Unimplemented, "UpdateTopic is not supported by Passerelle: delete and create the topic to change it")
}

func (p *publisher) ListTopics(ctx context.Context, req *pubsubpb.ListTopicsRequest) (*pubsubpb.ListTopicsResponse, error) {
	s := p.s
	project, err := parseProject("project", req.GetProject())
	if err != nil {
		return nil, err
	}
	names, err := s.topicNames(ctx, project)
	if err != nil {
		return nil, err
	}
	page, next, err := pageOf(names, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &pubsubpb.ListTopicsResponse{NextPageToken: next}
	m, _ := s.metaStore(ctx)
	for _, n := range page {
		t := &pubsubpb.Topic{Name: n, State: pubsubpb.Topic_ACTIVE}
		if _, err := m.get(ctx, kindTopic, n, t); err != nil && !errors.Is(err, errNotFound) {
			return nil, s.storeError(ctx, "get topic", err)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// topicNames lists a project's topics, created or named by registries.
func (s *Server) topicNames(ctx context.Context, project string) ([]string, error) {
	m, err := s.metaStore(ctx)
	if err != nil {
		return nil, s.storeError(ctx, "open bucket", err)
	}
	all, err := m.names(ctx, kindTopic)
	if err != nil {
		return nil, s.storeError(ctx, "list topics", err)
	}
	if s.opts.registryTopics != nil {
		named, err := s.opts.registryTopics(ctx)
		if err != nil {
			return nil, s.storeError(ctx, "list registry topics", err)
		}
		all = append(all, named...)
	}
	prefix := "projects/" + project + "/topics/"
	var out []string
	for _, n := range all {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (p *publisher) ListTopicSubscriptions(ctx context.Context, req *pubsubpb.ListTopicSubscriptionsRequest) (*pubsubpb.ListTopicSubscriptionsResponse, error) {
	s := p.s
	project, _, err := parseName("topic", "topics", req.GetTopic())
	if err != nil {
		return nil, err
	}
	if err := s.topicExists(ctx, req.GetTopic()); err != nil {
		return nil, err
	}
	subs, err := s.subscriptions(ctx, project)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, sub := range subs {
		if sub.GetTopic() == req.GetTopic() {
			names = append(names, sub.GetName())
		}
	}
	page, next, err := pageOf(names, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &pubsubpb.ListTopicSubscriptionsResponse{Subscriptions: page, NextPageToken: next}, nil
}

func (p *publisher) ListTopicSnapshots(ctx context.Context, req *pubsubpb.ListTopicSnapshotsRequest) (*pubsubpb.ListTopicSnapshotsResponse, error) {
	if _, _, err := parseName("topic", "topics", req.GetTopic()); err != nil {
		return nil, err
	}
	if err := p.s.topicExists(ctx, req.GetTopic()); err != nil {
		return nil, err
	}
	return &pubsubpb.ListTopicSnapshotsResponse{}, nil // snapshots are not supported: there are none
}

func (p *publisher) DeleteTopic(ctx context.Context, req *pubsubpb.DeleteTopicRequest) (*emptypb.Empty, error) {
	s := p.s
	project, _, err := parseName("topic", "topics", req.GetTopic())
	if err != nil {
		return nil, err
	}
	m, err := s.metaStore(ctx)
	if err != nil {
		return nil, s.storeError(ctx, "open bucket", err)
	}
	var t pubsubpb.Topic
	if _, err := m.get(ctx, kindTopic, req.GetTopic(), &t); errors.Is(err, errNotFound) {
		if named, err := s.registryTopic(ctx, req.GetTopic()); err != nil {
			return nil, err
		} else if named {
			return nil, status.Errorf(codes.FailedPrecondition, "the topic %s is a registry's notification topic: change the registry's eventNotificationConfigs and stateNotificationConfig first", req.GetTopic())
		}
		return nil, status.Errorf(codes.NotFound, "Resource not found (resource=%s).", req.GetTopic())
	} else if err != nil {
		return nil, s.storeError(ctx, "get topic", err)
	}
	if err := m.delete(ctx, kindTopic, req.GetTopic()); err != nil {
		return nil, s.storeError(ctx, "delete topic", err)
	}
	_ = m.delete(ctx, kindPolicy, req.GetTopic())
	// Its subscriptions stay, detached from it, as on Google's service:
	// they deliver their backlog, the messages stored until now, and none
	// of a topic made again with the same name.
	subs, err := s.subscriptions(ctx, project)
	if err != nil {
		return nil, err
	}
	var last uint64
	if len(subs) > 0 {
		st, err := s.js.Stream(ctx, s.bus.StreamName())
		if err != nil {
			return nil, s.storeError(ctx, "read the stream", err)
		}
		last = st.CachedInfo().State.LastSeq
	}
	for _, sub := range subs {
		if sub.GetTopic() != req.GetTopic() {
			continue
		}
		if err := m.put(ctx, kindDetached, sub.GetName(), wrapperspb.UInt64(last)); err != nil {
			s.logger.WarnContext(ctx, "pubsub: recording the backlog of a subscription of a deleted topic", "subscription", sub.GetName(), "err", err)
			continue
		}
		if err := s.updateSubscription(ctx, sub.GetName(), func(sub *pubsubpb.Subscription) { sub.Topic = deletedTopic }); err != nil {
			s.logger.WarnContext(ctx, "pubsub: marking a subscription of a deleted topic", "subscription", sub.GetName(), "err", err)
		}
	}
	return &emptypb.Empty{}, nil
}

func (p *publisher) DetachSubscription(ctx context.Context, req *pubsubpb.DetachSubscriptionRequest) (*pubsubpb.DetachSubscriptionResponse, error) {
	return nil, status.Error(codes.Unimplemented, "DetachSubscription is not supported by Passerelle: delete the subscription instead")
}

// Publish stores every message in the stream before it answers.
func (p *publisher) Publish(ctx context.Context, req *pubsubpb.PublishRequest) (*pubsubpb.PublishResponse, error) {
	s := p.s
	if _, _, err := parseName("topic", "topics", req.GetTopic()); err != nil {
		return nil, err
	}
	if err := checkPublish(req); err != nil {
		return nil, err
	}
	if err := s.topicExists(ctx, req.GetTopic()); err != nil {
		return nil, err
	}
	subject, err := s.bus.TopicSubject(req.GetTopic())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "the topic name %s cannot be stored: %v", req.GetTopic(), err)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(req.GetMessages()))
	for _, m := range req.GetMessages() {
		h := make(nats.Header, len(m.GetAttributes())+1)
		for k, v := range m.GetAttributes() {
			h[k] = []string{v}
		}
		if m.GetOrderingKey() != "" {
			h[headerOrderingKey] = []string{m.GetOrderingKey()}
		}
		f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: m.GetData(), Header: h})
		if err != nil {
			return nil, s.storeError(ctx, "publish", err)
		}
		futures = append(futures, f)
	}
	resp := &pubsubpb.PublishResponse{MessageIds: make([]string, len(futures))}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			resp.MessageIds[i] = strconv.FormatUint(ack.Sequence, 10)
		case err := <-f.Err():
			return nil, s.storeError(ctx, "publish", err)
		case <-ctx.Done():
			return nil, s.storeError(ctx, "publish", ctx.Err())
		}
	}
	return resp, nil
}

// checkPublish applies Google's limits to a publish request.
func checkPublish(req *pubsubpb.PublishRequest) error {
	msgs := req.GetMessages()
	switch {
	case len(msgs) == 0:
		return status.Error(codes.InvalidArgument, "The request must contain at least one message.")
	case len(msgs) > maxPublishMessages:
		return status.Errorf(codes.InvalidArgument, "The request has %d messages; at most %d are allowed.", len(msgs), maxPublishMessages)
	}
	if n := proto.Size(req); n > maxPublishBytes {
		return status.Errorf(codes.InvalidArgument, "The request is %d bytes; at most %d are allowed.", n, maxPublishBytes)
	}
	key := msgs[0].GetOrderingKey()
	for i, m := range msgs {
		if len(m.GetData()) == 0 && len(m.GetAttributes()) == 0 {
			return status.Errorf(codes.InvalidArgument, "messages[%d]: a message must have data or at least one attribute", i)
		}
		if len(m.GetAttributes()) > maxAttributes {
			return status.Errorf(codes.InvalidArgument, "messages[%d] has %d attributes; at most %d are allowed", i, len(m.GetAttributes()), maxAttributes)
		}
		for k, v := range m.GetAttributes() {
			if err := checkAttribute(k, v); err != nil {
				return status.Errorf(codes.InvalidArgument, "messages[%d]: %v", i, err)
			}
		}
		if m.GetOrderingKey() != key {
			return status.Error(codes.InvalidArgument, "all messages of a publish request must have the same ordering_key")
		}
	}
	if len(key) > maxOrderingKeyBytes {
		return status.Errorf(codes.InvalidArgument, "the ordering_key is %d bytes; at most %d are allowed", len(key), maxOrderingKeyBytes)
	}
	return nil
}

type attrError string

func (e attrError) Error() string { return string(e) }

// checkAttribute applies Google's rules, and those of NATS headers, which
// carry the attributes.
func checkAttribute(k, v string) error {
	switch {
	case k == "":
		return attrError("an attribute key must not be empty")
	case len(k) > maxAttributeKey:
		return attrError("the attribute key " + strconv.Quote(k[:32]+"...") + " is longer than 256 bytes")
	case len(v) > maxAttributeValue:
		return attrError("the value of attribute " + strconv.Quote(k) + " is longer than 1024 bytes")
	case strings.HasPrefix(k, "goog"):
		return attrError("the attribute key " + strconv.Quote(k) + " starts with the reserved prefix \"goog\"")
	case reservedHeader(k):
		return attrError("the attribute key " + strconv.Quote(k) + " is reserved by Passerelle")
	case !utf8.ValidString(k) || !utf8.ValidString(v):
		return attrError("attribute keys and values must be UTF-8")
	case strings.ContainsAny(v, "\r\n"):
		return attrError("the value of attribute " + strconv.Quote(k) + " contains a line break, which Passerelle cannot store")
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c == ':' || c == 0x7f {
			return attrError("the attribute key " + strconv.Quote(k) + " contains a space, a colon or a control character, which Passerelle cannot store")
		}
	}
	return nil
}
