package pubsub

import (
	"context"
	"errors"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	maxPullMessages = 1000
	maxAckIDs       = 10_000 // ack ids in one Acknowledge or ModifyAckDeadline
	// pullWait bounds a Pull that waits for messages.
	pullWait = 30 * time.Second
	// Reasons of Google's exactly-once ack errors (ErrorInfo).
	eodReason        = "EXACTLY_ONCE_ACKID_FAILURE"
	permanentInvalid = "PERMANENT_FAILURE_INVALID_ACK_ID"
	transientFailure = "TRANSIENT_FAILURE_UNORDERED_ACK_ID"
)

// consumer returns the subscription's JetStream consumer.
func (s *Server) consumer(ctx context.Context, v *subView) (jetstream.Consumer, error) {
	c, err := s.js.Consumer(ctx, s.bus.StreamName(), v.consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, status.Errorf(codes.NotFound, "Resource not found (resource=%s): the subscription was deleted", v.name)
	}
	if err != nil {
		return nil, s.storeError(ctx, "get consumer", err)
	}
	return c, nil
}

func (p *subscriber) Pull(ctx context.Context, req *pubsubpb.PullRequest) (*pubsubpb.PullResponse, error) {
	s := p.s
	n := int(req.GetMaxMessages())
	if n <= 0 {
		return nil, status.Error(codes.InvalidArgument, "max_messages must be greater than 0")
	}
	n = min(n, maxPullMessages)
	v, err := s.view(ctx, req.GetSubscription())
	if err != nil {
		return nil, err
	}
	c, err := s.consumer(ctx, v)
	if err != nil {
		return nil, err
	}
	wait := pullWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)-100*time.Millisecond)
	}
	end := time.Now().Add(wait)
	resp := &pubsubpb.PullResponse{}
	for {
		// What is there now; if nothing and the caller waits, the first
		// message to come, then what came with it.
		batch, err := c.FetchNoWait(n - len(resp.ReceivedMessages))
		if err != nil {
			return nil, s.storeError(ctx, "pull", err)
		}
		s.collect(v, batch, resp)
		if len(resp.ReceivedMessages) > 0 || req.GetReturnImmediately() {
			return resp, nil
		}
		left := time.Until(end)
		if left < 10*time.Millisecond || ctx.Err() != nil {
			return resp, nil
		}
		batch, err = c.Fetch(1, jetstream.FetchMaxWait(left))
		if err != nil {
			return nil, s.storeError(ctx, "pull", err)
		}
		s.collect(v, batch, resp)
		if len(resp.ReceivedMessages) > 0 && len(resp.ReceivedMessages) < n {
			more, err := c.FetchNoWait(n - len(resp.ReceivedMessages))
			if err == nil {
				s.collect(v, more, resp)
			}
		}
		if len(resp.ReceivedMessages) > 0 {
			return resp, nil
		}
	}
}

func (s *Server) collect(v *subView, batch jetstream.MessageBatch, resp *pubsubpb.PullResponse) {
	for m := range batch.Messages() {
		if rm := s.prepare(v, m); rm != nil {
			resp.ReceivedMessages = append(resp.ReceivedMessages, rm)
		}
	}
}

func checkAckIDs(ids []string) error {
	switch {
	case len(ids) == 0:
		return status.Error(codes.InvalidArgument, "ack_ids must not be empty")
	case len(ids) > maxAckIDs:
		return status.Errorf(codes.InvalidArgument, "at most %d ack_ids are allowed in one request, not %d", maxAckIDs, len(ids))
	}
	return nil
}

func (p *subscriber) Acknowledge(ctx context.Context, req *pubsubpb.AcknowledgeRequest) (*emptypb.Empty, error) {
	s := p.s
	if err := checkAckIDs(req.GetAckIds()); err != nil {
		return nil, err
	}
	v, err := s.view(ctx, req.GetSubscription())
	if err != nil {
		return nil, err
	}
	r, err := s.acknowledge(ctx, v, req.GetAckIds())
	s.sessions.forget(v.name, r.ok)
	if err != nil {
		return nil, s.storeError(ctx, "acknowledge", err)
	}
	return &emptypb.Empty{}, eodError(v, r)
}

func (p *subscriber) ModifyAckDeadline(ctx context.Context, req *pubsubpb.ModifyAckDeadlineRequest) (*emptypb.Empty, error) {
	s := p.s
	if err := checkAckIDs(req.GetAckIds()); err != nil {
		return nil, err
	}
	sec := req.GetAckDeadlineSeconds()
	if sec < 0 || sec > maxAckDeadline {
		return nil, status.Errorf(codes.InvalidArgument, "ack_deadline_seconds must be between 0 and %d, not %d", maxAckDeadline, sec)
	}
	v, err := s.view(ctx, req.GetSubscription())
	if err != nil {
		return nil, err
	}
	r, err := s.modify(ctx, v, req.GetAckIds(), sec)
	s.sessions.extend(v.name, r.ok, sec)
	if err != nil {
		return nil, s.storeError(ctx, "modify ack deadline", err)
	}
	return &emptypb.Empty{}, eodError(v, r)
}

// eodError is how Google reports per-id failures under exactly-once
// delivery: an error with an ErrorInfo whose metadata maps each failed ack
// id to PERMANENT_... or TRANSIENT_... Without exactly-once delivery
// unknown ack ids are ignored.
func eodError(v *subView, r ackResult) error {
	if !v.eod || len(r.invalid)+len(r.failed) == 0 {
		return nil
	}
	md := make(map[string]string, len(r.invalid)+len(r.failed))
	for _, id := range r.invalid {
		md[id] = permanentInvalid
	}
	for _, id := range r.failed {
		md[id] = transientFailure
	}
	st, err := status.New(codes.InvalidArgument, "some ack ids could not be acknowledged; see the ErrorInfo metadata").
		WithDetails(&errdetails.ErrorInfo{Reason: eodReason, Domain: "pubsub.googleapis.com", Metadata: md})
	if err != nil {
		return status.Error(codes.InvalidArgument, "some ack ids could not be acknowledged")
	}
	return st.Err()
}
