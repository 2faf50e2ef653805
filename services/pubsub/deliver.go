package pubsub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/passerelle-iot/passerelle/services/pubsub/filter"
)

// subView is what delivering needs of a subscription, read once per pull
// or stream.
type subView struct {
	name        string
	consumer    string
	filter      *filter.Filter
	deadLetter  string // topic, "" without a dead-letter policy
	maxAttempts uint64
	retention   time.Duration
	ackDeadline time.Duration
	eod         bool
	ordering    bool
	lastSeq     uint64 // of a subscription of a deleted topic: its backlog ends there; 0: none
}

func (s *Server) view(ctx context.Context, name string) (*subView, error) {
	sub, _, err := s.getSubscription(ctx, name)
	if err != nil {
		return nil, err
	}
	f, err := filter.Parse(sub.GetFilter())
	if err != nil { // checked at creation; a record written otherwise
		return nil, status.Errorf(codes.FailedPrecondition, "the subscription's filter is invalid: %v", err)
	}
	v := &subView{
		name: name, consumer: consumerName(name), filter: f,
		retention:   sub.GetMessageRetentionDuration().AsDuration(),
		ackDeadline: time.Duration(sub.GetAckDeadlineSeconds()) * time.Second,
		eod:         sub.GetEnableExactlyOnceDelivery(),
		ordering:    sub.GetEnableMessageOrdering(),
	}
	if dl := sub.GetDeadLetterPolicy(); dl != nil {
		v.deadLetter, v.maxAttempts = dl.GetDeadLetterTopic(), uint64(dl.GetMaxDeliveryAttempts())
	}
	if sub.GetTopic() == deletedTopic {
		m, err := s.metaStore(ctx)
		if err != nil {
			return nil, s.storeError(ctx, "open bucket", err)
		}
		var last wrapperspb.UInt64Value
		if _, err := m.get(ctx, kindDetached, name, &last); err != nil && !errors.Is(err, errNotFound) {
			return nil, s.storeError(ctx, "get subscription", err)
		}
		// Without the record (a deletion from before it was kept), the
		// backlog has no end: messages of a new topic of the same name
		// may reach the subscription, as they did then.
		v.lastSeq = last.GetValue()
	}
	return v, nil
}

func (v *subView) properties() *pubsubpb.StreamingPullResponse_SubscriptionProperties {
	return &pubsubpb.StreamingPullResponse_SubscriptionProperties{
		ExactlyOnceDeliveryEnabled: v.eod, MessageOrderingEnabled: v.ordering,
	}
}

// Attributes are a stored message's Pub/Sub attributes: its headers but
// those Passerelle keeps for itself.
func Attributes(h nats.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]string, len(h))
	for k, vs := range h {
		if len(vs) == 0 || reservedHeader(k) {
			continue
		}
		out[k] = vs[0]
	}
	return out
}

// prepare returns the message to hand to the subscriber, or nil when it is
// not for it: filtered out or older than the retention (acknowledged, so
// never delivered), or past its delivery attempts (moved to the dead-letter
// topic).
func (s *Server) prepare(v *subView, m jetstream.Msg) *pubsubpb.ReceivedMessage {
	md, err := m.Metadata()
	if err != nil {
		s.logger.Warn("pubsub: a message without JetStream metadata", "subscription", v.name, "err", err)
		_ = m.Term()
		return nil
	}
	if s.journal.seen(v.consumer, md.Sequence.Stream) {
		// Acked by an earlier run under exactly-once delivery, the ack
		// lost by JetStream in a crash: ack it again, do not deliver it.
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		err := m.DoubleAck(ctx)
		cancel()
		if err != nil {
			s.logger.Warn("pubsub: acking again a message acked before a restart", "subscription", v.name, "err", err)
		}
		return nil
	}
	if v.lastSeq > 0 && md.Sequence.Stream > v.lastSeq {
		// Published after the subscription's topic was deleted: for a
		// topic of the same name made again, not for this subscription.
		_ = m.Ack()
		return nil
	}
	attrs := Attributes(m.Headers())
	if !v.filter.Match(attrs) || (v.retention > 0 && time.Since(md.Timestamp) > v.retention) {
		_ = m.Ack()
		return nil
	}
	if v.deadLetter != "" && md.NumDelivered > v.maxAttempts {
		s.deadLetter(v, m, attrs, md)
		return nil
	}
	rm := &pubsubpb.ReceivedMessage{
		AckId: m.Reply(),
		Message: &pubsubpb.PubsubMessage{
			Data: m.Data(), Attributes: attrs,
			MessageId:   strconv.FormatUint(md.Sequence.Stream, 10),
			PublishTime: timestamppb.New(md.Timestamp),
			OrderingKey: m.Headers().Get(headerOrderingKey),
		},
	}
	if v.deadLetter != "" {
		rm.DeliveryAttempt = int32(md.NumDelivered)
	}
	return rm
}

// deadLetter moves a message to the subscription's dead-letter topic with
// Google's CloudPubSubDeadLetterSource* attributes; when that fails it is
// retried a little later.
func (s *Server) deadLetter(v *subView, m jetstream.Msg, attrs map[string]string, md *jetstream.MsgMetadata) {
	subject, err := s.bus.TopicSubject(v.deadLetter)
	if err == nil {
		h := make(nats.Header, len(attrs)+5)
		for k, val := range attrs {
			h[k] = []string{val}
		}
		if k := m.Headers().Get(headerOrderingKey); k != "" {
			h[headerOrderingKey] = []string{k}
		}
		h["CloudPubSubDeadLetterSourceSubscription"] = []string{v.name}
		h["CloudPubSubDeadLetterSourceDeliveryCount"] = []string{strconv.FormatUint(md.NumDelivered-1, 10)}
		h["CloudPubSubDeadLetterSourceTopicPublishTime"] = []string{md.Timestamp.UTC().Format(time.RFC3339Nano)}
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		_, err = s.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: m.Data(), Header: h})
		cancel()
	}
	if err != nil {
		s.logger.Warn("pubsub: moving a message to the dead-letter topic", "subscription", v.name, "topic", v.deadLetter, "err", err)
		_ = m.NakWithDelay(10 * time.Second)
		return
	}
	_ = m.Ack()
}

// checkAckID reports whether id is an ack subject of this subscription's
// consumer: "$JS.ACK.<stream>.<consumer>.<5 numbers>", or with a domain and
// account hash before the stream and a token after. Anything else would
// let a caller publish to an arbitrary subject.
func (s *Server) checkAckID(v *subView, id string) bool {
	_, _, ok := s.parseAckID(v, id)
	return ok
}

// parseAckID checks id (see checkAckID) and returns when the delivery
// was made and the message's stream sequence.
func (s *Server) parseAckID(v *subView, id string) (delivered time.Time, seq uint64, ok bool) {
	rest, ok := strings.CutPrefix(id, "$JS.ACK.")
	if !ok || strings.ContainsAny(rest, " \t\r\n*>") {
		return time.Time{}, 0, false
	}
	t := strings.Split(rest, ".")
	var nums []string
	switch {
	case len(t) == 7:
		if t[0] != s.bus.StreamName() || t[1] != v.consumer {
			return time.Time{}, 0, false
		}
		nums = t[2:]
	case len(t) >= 9:
		if t[2] != s.bus.StreamName() || t[3] != v.consumer {
			return time.Time{}, 0, false
		}
		nums = t[4:9]
	default:
		return time.Time{}, 0, false
	}
	var ts uint64
	for i, n := range nums { // delivered, stream seq, consumer seq, time, pending
		x, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			return time.Time{}, 0, false
		}
		switch i {
		case 1:
			seq = x
		case 3:
			ts = x
		}
	}
	return time.Unix(0, int64(ts)), seq, true
}

// ackResult is what became of some ack ids.
type ackResult struct {
	ok, invalid, failed []string
}

// acknowledge acks ids in JetStream. Plain acks are sent and flushed (the
// server has them when this returns); with exactly-once delivery each is
// confirmed by JetStream. Ack subjects work from any connection, so an ack
// for a message another replica delivered goes straight to JetStream.
func (s *Server) acknowledge(ctx context.Context, v *subView, ids []string) (ackResult, error) {
	return s.settle(ctx, v, ids, []byte("+ACK"))
}

// modify sets the deadline of ids to seconds from now (0: redeliver now).
// A deadline within the one JetStream already keeps (the delivery time
// plus the consumer's AckWait, or the stream's deadline set at delivery)
// costs nothing: clients send one for every
// message they receive (the receipt modack), and a NAK with a delay makes
// JetStream rewrite the message's pending state.
func (s *Server) modify(ctx context.Context, v *subView, ids []string, seconds int32) (ackResult, error) {
	if seconds == 0 {
		return s.settle(ctx, v, ids, []byte("-NAK"))
	}
	until := time.Now().Add(time.Duration(seconds) * time.Second)
	var need []string
	var r ackResult
	var kept map[string]time.Time
	if !v.eod {
		kept = s.sessions.deadlines(v.name, ids)
	}
	for _, id := range ids {
		delivered, _, ok := s.parseAckID(v, id)
		switch {
		case !ok:
			r.invalid = append(r.invalid, id)
		case !v.eod && (!until.After(delivered.Add(v.ackDeadline)) || !until.After(kept[id])):
			r.ok = append(r.ok, id)
		default:
			need = append(need, id)
		}
	}
	r2, err := s.settle(ctx, v, need, fmt.Appendf(nil, `-NAK {"delay":%d}`, time.Duration(seconds)*time.Second))
	r.ok, r.invalid, r.failed = append(r.ok, r2.ok...), append(r.invalid, r2.invalid...), r2.failed
	return r, err
}

func (s *Server) settle(ctx context.Context, v *subView, ids []string, body []byte) (ackResult, error) {
	if v.eod {
		return s.settleConfirmed(ctx, v, ids, body)
	}
	var r ackResult
	nc := s.bus.Conn()
	for _, id := range ids {
		if !s.checkAckID(v, id) {
			r.invalid = append(r.invalid, id)
			continue
		}
		if err := nc.Publish(id, body); err != nil {
			return r, err
		}
		r.ok = append(r.ok, id)
	}
	if len(r.ok) > 0 {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := nc.FlushWithContext(fctx); err != nil {
			return r, err
		}
	}
	return r, nil
}

// settleConfirmed settles ids of an exactly-once subscription: each is
// sent with a reply subject, all at once, and is ok once JetStream
// answered. Acks are then journaled (see ackJournal) before they are
// reported ok, so that a crash cannot undo a confirmed ack.
func (s *Server) settleConfirmed(ctx context.Context, v *subView, ids []string, body []byte) (ackResult, error) {
	var r ackResult
	expired := s.sessions.expired(v.name, ids)
	nc := s.bus.Conn()
	type sent struct {
		id  string
		seq uint64
	}
	var out []sent
	for _, id := range ids {
		_, seq, ok := s.parseAckID(v, id)
		if !ok || expired[id] {
			r.invalid = append(r.invalid, id)
			continue
		}
		out = append(out, sent{id, seq})
	}
	if len(out) == 0 {
		return r, nil
	}
	inbox := nc.NewRespInbox()
	replies := make(chan *nats.Msg, len(out))
	sub, err := nc.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		return r, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	for i, m := range out {
		if err := nc.PublishRequest(m.id, inbox+"."+strconv.Itoa(i), body); err != nil {
			return r, err
		}
	}
	answered := make([]bool, len(out))
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
wait:
	for n := 0; n < len(out); {
		select {
		case m := <-replies:
			i, err := strconv.Atoi(m.Subject[len(inbox)+1:])
			if err == nil && i >= 0 && i < len(out) && !answered[i] {
				answered[i] = true
				n++
			}
		case <-wctx.Done():
			break wait
		}
	}
	var seqs []uint64
	var okIDs []string
	for i, m := range out {
		if answered[i] {
			okIDs = append(okIDs, m.id)
			seqs = append(seqs, m.seq)
		} else {
			r.failed = append(r.failed, m.id)
		}
	}
	if bytes.HasPrefix(body, []byte("+ACK")) && len(seqs) > 0 {
		jctx, jcancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.journal.record(jctx, v.consumer, seqs)
		jcancel()
		if err != nil {
			s.logger.Warn("pubsub: journaling exactly-once acks; the client will retry them", "subscription", v.name, "err", err)
			r.failed = append(r.failed, okIDs...)
			return r, nil
		}
	}
	r.ok = append(r.ok, okIDs...)
	return r, nil
}
