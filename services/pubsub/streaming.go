package pubsub

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	// fetchWait is how long one JetStream pull of a stream waits for
	// messages; a stream that ends leaves at most that long a pull behind,
	// whose messages are given back at once (drain).
	fetchWait = 2 * time.Second
	// maxBatch bounds the messages one JetStream pull asks for.
	maxBatch = 1000
	// maxExpired bounds the expired ack ids a stream remembers.
	maxExpired = 10_000
)

// sessionRegistry finds the open streams of a subscription in this
// process, so that acks sent by unary calls free their flow-control room.
type sessionRegistry struct {
	mu    sync.Mutex
	bySub map[string]map[*session]struct{}
}

func newSessionRegistry() *sessionRegistry {
	return &sessionRegistry{bySub: make(map[string]map[*session]struct{})}
}

func (r *sessionRegistry) add(ss *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.bySub[ss.v.name]
	if m == nil {
		m = make(map[*session]struct{})
		r.bySub[ss.v.name] = m
	}
	m[ss] = struct{}{}
}

func (r *sessionRegistry) remove(ss *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.bySub[ss.v.name], ss)
	if len(r.bySub[ss.v.name]) == 0 {
		delete(r.bySub, ss.v.name)
	}
}

func (r *sessionRegistry) each(sub string, f func(*session)) {
	r.mu.Lock()
	list := make([]*session, 0, len(r.bySub[sub]))
	for ss := range r.bySub[sub] {
		list = append(list, ss)
	}
	r.mu.Unlock()
	for _, ss := range list {
		f(ss)
	}
}

// expired reports the ids a stream of this process delivered and whose
// deadline passed: under exactly-once delivery their acks are refused, since
// the message may be out again.
func (r *sessionRegistry) expired(sub string, ids []string) map[string]bool {
	var out map[string]bool
	r.each(sub, func(ss *session) {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		for _, id := range ids {
			if _, ok := ss.expired[id]; ok {
				if out == nil {
					out = make(map[string]bool)
				}
				out[id] = true
			}
		}
	})
	return out
}

// deadlines returns the deadlines this process's streams keep for ids
// they delivered.
func (r *sessionRegistry) deadlines(sub string, ids []string) map[string]time.Time {
	var out map[string]time.Time
	r.each(sub, func(ss *session) {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		for _, id := range ids {
			if e, ok := ss.out[id]; ok {
				if out == nil {
					out = make(map[string]time.Time, len(ids))
				}
				out[id] = e.deadline
			}
		}
	})
	return out
}

func (r *sessionRegistry) forget(sub string, ids []string) {
	if len(ids) > 0 {
		r.each(sub, func(ss *session) { ss.forget(ids) })
	}
}

func (r *sessionRegistry) extend(sub string, ids []string, seconds int32) {
	if len(ids) == 0 {
		return
	}
	if seconds == 0 {
		r.forget(sub, ids)
		return
	}
	r.each(sub, func(ss *session) { ss.extend(ids, time.Duration(seconds)*time.Second) })
}

// outEntry is a message a stream delivered and that is not settled yet.
type outEntry struct {
	size     int
	deadline time.Time
}

// session is one StreamingPull stream. Flow control: it asks JetStream
// for no more than the client's outstanding limits leave room for (capped
// by the server's), counting a message out until it is acked, nacked, or
// its deadline passes.
type session struct {
	s      *Server
	v      *subView
	stream pubsubpb.Subscriber_StreamingPullServer
	sendMu sync.Mutex

	mu       sync.Mutex
	out      map[string]outEntry
	outBytes int
	// expired are delivered ids whose deadline passed (exactly-once
	// subscriptions only), at most maxExpired.
	expired  map[string]struct{}
	maxMsgs  int
	maxBytes int
	deadline time.Duration // the stream's ack deadline
	protocol int64
	wake     chan struct{} // a slot freed
}

func (p *subscriber) StreamingPull(stream pubsubpb.Subscriber_StreamingPullServer) error {
	s := p.s
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetSubscription() == "" {
		return status.Error(codes.InvalidArgument, "the first request of a stream must name the subscription")
	}
	if err := checkStreamRequest(first); err != nil {
		return err
	}
	v, err := s.view(ctx, first.GetSubscription())
	if err != nil {
		return err
	}
	ss := &session{s: s, v: v, stream: stream, out: make(map[string]outEntry), expired: make(map[string]struct{}), wake: make(chan struct{}, 1),
		deadline: v.ackDeadline, protocol: first.GetProtocolVersion()}
	if d := first.GetStreamAckDeadlineSeconds(); d != 0 {
		if d < minAckDeadline || d > maxAckDeadline {
			return status.Errorf(codes.InvalidArgument, "stream_ack_deadline_seconds must be between %d and %d, not %d", minAckDeadline, maxAckDeadline, d)
		}
		ss.deadline = time.Duration(d) * time.Second
	}
	ss.maxMsgs = s.opts.maxOutstanding
	if n := first.GetMaxOutstandingMessages(); n > 0 && int(n) < ss.maxMsgs {
		ss.maxMsgs = int(n)
	}
	ss.maxBytes = maxOutstandingBytesCap
	if n := first.GetMaxOutstandingBytes(); n > 0 && int(n) < ss.maxBytes {
		ss.maxBytes = int(n)
	}
	cons, err := s.consumer(ctx, v)
	if err != nil {
		return err
	}
	if len(first.GetAckIds())+len(first.GetModifyDeadlineAckIds()) > 0 {
		if err := ss.handle(ctx, first); err != nil {
			return err
		}
	}
	s.sessions.add(ss)
	defer s.sessions.remove(ss)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readErr := make(chan error, 1)
	go func() { // ends when the stream does: cancel ends the call, and Recv with it
		err := ss.read(sctx)
		cancel()
		readErr <- err
	}()
	deliverErr := ss.deliver(sctx, cons)
	cancel()
	rerr := <-readErr
	switch {
	case s.ctx.Err() != nil:
		return status.Error(codes.Unavailable, "the server is shutting down; reconnect")
	case rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, context.Canceled):
		return rerr
	case deliverErr != nil && !errors.Is(deliverErr, context.Canceled):
		return deliverErr
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	}
	// Never OK: Node does not reopen a stream that ended with OK.
	return status.Error(codes.Unavailable, "the stream ended; reconnect")
}

// checkStreamRequest refuses what a well-behaved client never sends.
func checkStreamRequest(req *pubsubpb.StreamingPullRequest) error {
	if len(req.GetModifyDeadlineAckIds()) != len(req.GetModifyDeadlineSeconds()) {
		return status.Errorf(codes.InvalidArgument, "modify_deadline_ack_ids has %d ids but modify_deadline_seconds %d values",
			len(req.GetModifyDeadlineAckIds()), len(req.GetModifyDeadlineSeconds()))
	}
	for _, sec := range req.GetModifyDeadlineSeconds() {
		if sec < 0 || sec > maxAckDeadline {
			return status.Errorf(codes.InvalidArgument, "modify_deadline_seconds must be between 0 and %d, not %d", maxAckDeadline, sec)
		}
	}
	if len(req.GetAckIds()) > maxAckIDs || len(req.GetModifyDeadlineAckIds()) > maxAckIDs {
		return status.Errorf(codes.InvalidArgument, "at most %d ack ids are allowed in one request", maxAckIDs)
	}
	return nil
}

// read handles the client's requests until the stream ends.
func (ss *session) read(ctx context.Context) error {
	for {
		req, err := ss.stream.Recv()
		if err != nil {
			return err
		}
		if sub := req.GetSubscription(); sub != "" && sub != ss.v.name {
			return status.Error(codes.InvalidArgument, "subscription may only be set in the first request of a stream")
		}
		if req.GetMaxOutstandingMessages() != 0 || req.GetMaxOutstandingBytes() != 0 {
			return status.Error(codes.InvalidArgument, "max_outstanding_messages and max_outstanding_bytes may only be set in the first request of a stream")
		}
		if err := checkStreamRequest(req); err != nil {
			return err
		}
		if d := req.GetStreamAckDeadlineSeconds(); d != 0 {
			if d < minAckDeadline || d > maxAckDeadline {
				return status.Errorf(codes.InvalidArgument, "stream_ack_deadline_seconds must be between %d and %d, not %d", minAckDeadline, maxAckDeadline, d)
			}
			ss.mu.Lock()
			ss.deadline = time.Duration(d) * time.Second
			ss.mu.Unlock()
		}
		if len(req.GetAckIds())+len(req.GetModifyDeadlineAckIds()) == 0 {
			if ss.protocol >= 1 { // a ping: answer it, or Go v2 and Java reopen the stream
				if err := ss.send(&pubsubpb.StreamingPullResponse{}); err != nil {
					return err
				}
			}
			continue
		}
		if err := ss.handle(ctx, req); err != nil {
			return err
		}
	}
}

// handle applies a request's acks and deadline changes, and confirms them
// under exactly-once delivery.
func (ss *session) handle(ctx context.Context, req *pubsubpb.StreamingPullRequest) error {
	s := ss.s
	resp := &pubsubpb.StreamingPullResponse{}
	if ids := req.GetAckIds(); len(ids) > 0 {
		r, err := s.acknowledge(ctx, ss.v, ids)
		s.sessions.forget(ss.v.name, r.ok)
		if err != nil {
			return s.storeError(ctx, "acknowledge", err)
		}
		if ss.v.eod {
			resp.AcknowledgeConfirmation = &pubsubpb.StreamingPullResponse_AcknowledgeConfirmation{
				AckIds: r.ok, InvalidAckIds: r.invalid, TemporaryFailedAckIds: r.failed}
		}
	}
	// Group the deadline changes by value, one settle per value.
	bySec := make(map[int32][]string)
	for i, id := range req.GetModifyDeadlineAckIds() {
		sec := req.GetModifyDeadlineSeconds()[i]
		bySec[sec] = append(bySec[sec], id)
	}
	var conf *pubsubpb.StreamingPullResponse_ModifyAckDeadlineConfirmation
	for sec, ids := range bySec {
		r, err := s.modify(ctx, ss.v, ids, sec)
		s.sessions.extend(ss.v.name, r.ok, sec)
		if err != nil {
			return s.storeError(ctx, "modify ack deadline", err)
		}
		if ss.v.eod {
			if conf == nil {
				conf = &pubsubpb.StreamingPullResponse_ModifyAckDeadlineConfirmation{}
			}
			conf.AckIds = append(conf.AckIds, r.ok...)
			conf.InvalidAckIds = append(conf.InvalidAckIds, r.invalid...)
			conf.TemporaryFailedAckIds = append(conf.TemporaryFailedAckIds, r.failed...)
		}
	}
	resp.ModifyAckDeadlineConfirmation = conf
	if resp.AcknowledgeConfirmation != nil || resp.ModifyAckDeadlineConfirmation != nil {
		return ss.send(resp)
	}
	return nil
}

func (ss *session) send(resp *pubsubpb.StreamingPullResponse) error {
	ss.sendMu.Lock()
	defer ss.sendMu.Unlock()
	return ss.stream.Send(resp)
}

func (ss *session) forget(ids []string) {
	ss.mu.Lock()
	freed := false
	for _, id := range ids {
		delete(ss.expired, id)
		if e, ok := ss.out[id]; ok {
			delete(ss.out, id)
			ss.outBytes -= e.size
			freed = true
		}
	}
	ss.mu.Unlock()
	if freed {
		ss.signal()
	}
}

func (ss *session) extend(ids []string, d time.Duration) {
	deadline := time.Now().Add(d)
	ss.mu.Lock()
	for _, id := range ids {
		if e, ok := ss.out[id]; ok {
			e.deadline = deadline
			ss.out[id] = e
		}
	}
	ss.mu.Unlock()
}

func (ss *session) signal() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// room returns how many messages and bytes the stream may take now (0
// messages: none), after dropping the messages whose deadline passed, and
// when the next one will.
func (ss *session) room() (msgs, bytes int, next time.Time) {
	now := time.Now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, e := range ss.out {
		if now.After(e.deadline) {
			delete(ss.out, id)
			ss.outBytes -= e.size
			if ss.v.eod {
				if len(ss.expired) >= maxExpired {
					clear(ss.expired) // bounded; older ids are acked as unknown ones are
				}
				ss.expired[id] = struct{}{}
			}
		} else if next.IsZero() || e.deadline.Before(next) {
			next = e.deadline
		}
	}
	msgs = min(ss.maxMsgs-len(ss.out), maxBatch)
	bytes = ss.maxBytes - ss.outBytes
	if bytes <= 0 {
		msgs = 0
	}
	return msgs, bytes, next
}

// deliver pulls from JetStream within the room the client leaves and sends
// what comes, until ctx ends or the stream fails.
func (ss *session) deliver(ctx context.Context, cons jetstream.Consumer) error {
	s := ss.s
	for ctx.Err() == nil {
		n, nbytes, next := ss.room()
		if n <= 0 {
			wait := time.Second
			if !next.IsZero() {
				wait = max(time.Until(next), time.Millisecond)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-ss.wake:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(fetchWait), jetstream.FetchMaxBytes(nbytes))
		if err == nil {
			err = ss.relay(ctx, batch)
			if err == nil {
				err = batch.Error()
			}
		}
		switch {
		case err == nil, errors.Is(err, nats.ErrTimeout), errors.Is(err, context.Canceled):
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
			// Deleted, or made again by Seek: look it up again.
			c, err := s.consumer(ctx, ss.v)
			if err != nil {
				return err
			}
			cons = c
		default:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.logger.Warn("pubsub: pulling from JetStream", "subscription", ss.v.name, "err", err)
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
	return ctx.Err()
}

// relay sends a pull's messages to the client as they come, several to a
// response when several are there.
func (ss *session) relay(ctx context.Context, batch jetstream.MessageBatch) error {
	s := ss.s
	msgs := batch.Messages()
	var pending []*pubsubpb.ReceivedMessage
	var raw []jetstream.Msg
	size := 0
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := ss.send(&pubsubpb.StreamingPullResponse{ReceivedMessages: pending, SubscriptionProperties: ss.v.properties()})
		if err != nil {
			// Never received: give them back at once.
			ss.mu.Lock()
			for _, m := range pending {
				if e, ok := ss.out[m.GetAckId()]; ok {
					delete(ss.out, m.GetAckId())
					ss.outBytes -= e.size
				}
			}
			ss.mu.Unlock()
			for _, m := range raw {
				_ = m.Nak()
			}
		}
		pending, raw, size = nil, nil, 0
		return err
	}
	for {
		var m jetstream.Msg
		var ok bool
		if len(pending) == 0 {
			select {
			case m, ok = <-msgs:
			case <-ctx.Done():
				ss.drain(batch)
				return ctx.Err()
			}
		} else {
			select {
			case m, ok = <-msgs:
			default:
				if err := flush(); err != nil {
					ss.drain(batch)
					return err
				}
				continue
			}
		}
		if !ok {
			return flush()
		}
		rm := s.prepare(ss.v, m)
		if rm == nil {
			continue
		}
		sz := proto.Size(rm.GetMessage())
		ss.mu.Lock()
		ss.out[rm.GetAckId()] = outEntry{size: sz, deadline: time.Now().Add(ss.deadline)}
		ss.outBytes += sz
		differs := ss.deadline != ss.v.ackDeadline
		d := ss.deadline
		ss.mu.Unlock()
		if differs {
			// The stream's deadline, not the consumer's AckWait.
			_ = m.NakWithDelay(d)
		}
		pending = append(pending, rm)
		raw = append(raw, m)
		size += sz
		if size >= maxResponseBytes-1<<20 || len(pending) >= maxBatch {
			if err := flush(); err != nil {
				ss.drain(batch)
				return err
			}
		}
	}
}

// drain gives back, at once, what a pull still brings after its stream
// ended (for at most fetchWait), instead of leaving it to its ack deadline.
func (ss *session) drain(batch jetstream.MessageBatch) {
	for m := range batch.Messages() {
		_ = m.Nak()
	}
}
