package hub

import (
	"context"
	"errors"
	"io"
	"sync"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/resource"
)

// The flow control of a PublishEvents stream: events read and not yet
// answered. When either bound is reached the stream reads no more, and
// HTTP/2 flow control holds the caller back.
const (
	// eventsWindow is the most events in flight on one stream.
	eventsWindow = 256
	// eventsWindowBytes is the most payload bytes in flight on one
	// stream (16 events of the largest size).
	eventsWindowBytes = 16 * MaxEventBytes
)

// PublishEvents implements hubv1.HubServer: events for the devices of one
// gateway, each published as it is read (up to the window), answered in
// the order read.
func (s *Service) PublishEvents(stream grpc.BidiStreamingServer[hubv1.PublishEventsRequest, hubv1.PublishEventsResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	gateway := first.GetGateway()
	gwName, err := checkTarget(gateway, "")
	if err != nil {
		return err
	}
	// The gateway's connection, held for the whole stream: what is wrong
	// with the gateway (no key, refused by the bridge) ends the stream
	// before any event.
	gh, err := s.pool.Hold(ctx, gateway, "", "")
	if err != nil {
		return s.grpcError(err)
	}
	gd := &streamDevice{ready: make(chan struct{}), h: gh}
	close(gd.ready)
	es := &eventStream{s: s, ctx: ctx, gateway: gateway, gatewayID: gwName.Device,
		devices: map[string]*streamDevice{"": gd}}

	pending := make(chan *pendingEvent, eventsWindow)
	bytes := semaphore.NewWeighted(eventsWindowBytes)
	readErr := make(chan error, 1) // nil: the caller half-closed
	released := make(chan struct{})
	// The reader owns the publishes it starts: once it is done (the
	// caller half-closed, the stream failed or ended), it waits for them
	// and lets the devices go. It ends at the latest when the call does
	// (its Recv returns then).
	go func() {
		defer close(released)
		err := es.read(stream, first, pending, bytes)
		close(pending)
		readErr <- err
		es.wg.Wait()
		es.release()
	}()
	for ev := range pending {
		select {
		case <-ev.done:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		bytes.Release(ev.weight)
		resp := &hubv1.PublishEventsResponse{Index: ev.index}
		if ev.err != nil {
			st := status.Convert(s.grpcError(ev.err))
			reason := reasonOf(st)
			if !refusable(reason) {
				return st.Err()
			}
			resp.Refused = &hubv1.EventRefusal{Reason: reason, Code: int32(st.Code()), Message: st.Message()}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	err = <-readErr
	<-released
	return err
}

// refusable reports whether an event's error refuses that event only
// (the stream goes on), not the whole stream.
func refusable(r hubv1.ErrorReason) bool {
	switch r {
	case hubv1.ErrorReason_INVALID_FIELD, hubv1.ErrorReason_PAYLOAD_TOO_LARGE,
		hubv1.ErrorReason_GATEWAY_ATTACHMENT_ERROR, hubv1.ErrorReason_DEVICE_NOT_FOUND,
		hubv1.ErrorReason_DEVICE_NOT_BOUND, hubv1.ErrorReason_DEVICE_BLOCKED,
		hubv1.ErrorReason_DEVICE_TOKEN_REFUSED, hubv1.ErrorReason_TOO_MANY_DEVICES,
		hubv1.ErrorReason_DEVICE_NOT_ATTACHED, hubv1.ErrorReason_RATE_LIMITED,
		hubv1.ErrorReason_GATEWAY_ERROR, hubv1.ErrorReason_MESSAGE_DROPPED:
		return true
	}
	return false
}

// eventStream is one PublishEvents call: the devices it holds attached,
// and the publishes in flight, which it owns (wg).
type eventStream struct {
	s         *Service
	ctx       context.Context // ends with the call
	gateway   string
	gatewayID string
	wg        sync.WaitGroup // publishes in flight

	mu      sync.Mutex
	devices map[string]*streamDevice // by device id; "" is the gateway
}

// streamDevice is a device held for a stream: attached on its first
// event (ready closes when that attach is done), detached when the
// stream ends.
type streamDevice struct {
	ready chan struct{}
	h     *Holder // nil when err
	err   error
}

// pendingEvent is one event read: done closes when it is published (or
// refused, err).
type pendingEvent struct {
	index  int64
	weight int64
	done   chan struct{}
	err    error
}

// read reads the stream's events, validates each and starts its publish,
// until the caller half-closes (nil) or the stream fails.
func (es *eventStream) read(stream grpc.BidiStreamingServer[hubv1.PublishEventsRequest, hubv1.PublishEventsResponse],
	first *hubv1.PublishEventsRequest, pending chan<- *pendingEvent, bytes *semaphore.Weighted) error {
	req := first
	for i := int64(0); ; i++ {
		if i > 0 {
			var err error
			if req, err = stream.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if g := req.GetGateway(); g != "" && g != es.gateway {
				return targetChanged("request %d names another gateway than the first", i)
			}
		}
		ev := &pendingEvent{index: i, weight: int64(len(req.GetData())) + 1, done: make(chan struct{})}
		if ev.weight > eventsWindowBytes {
			ev.weight = eventsWindowBytes
		}
		if err := bytes.Acquire(es.ctx, ev.weight); err != nil {
			return status.FromContextError(err).Err()
		}
		select {
		case pending <- ev:
		case <-es.ctx.Done():
			bytes.Release(ev.weight)
			return status.FromContextError(es.ctx.Err()).Err()
		}
		suffix, err := checkEvent(req.GetSubFolder(), req.GetData())
		if err == nil {
			err = checkDevice(req.GetDeviceId())
		}
		if err != nil {
			ev.err = err
			close(ev.done)
			continue
		}
		es.wg.Add(1)
		go es.publish(ev, req, suffix)
	}
}

// checkDevice validates an event's device id ("" is the gateway).
func checkDevice(id string) error {
	if id == "" {
		return nil
	}
	if err := resource.CheckID("device_id", id); err != nil {
		return resourceError(err)
	}
	return nil
}

func (es *eventStream) publish(ev *pendingEvent, req *hubv1.PublishEventsRequest, suffix string) {
	defer es.wg.Done()
	defer close(ev.done)
	h, err := es.device(req.GetDeviceId(), req.GetAuthorization())
	if err != nil {
		ev.err = err
		return
	}
	ev.err = h.Publish(es.ctx, suffix, req.GetData())
}

// device returns the holder of a device, attaching it on its first event.
// A failed attach is told to the events waiting for it and tried again on
// the next one.
func (es *eventStream) device(id, authorization string) (*Holder, error) {
	if id == es.gatewayID {
		id = ""
	}
	es.mu.Lock()
	d, ok := es.devices[id]
	if !ok {
		d = &streamDevice{ready: make(chan struct{})}
		es.devices[id] = d
	}
	es.mu.Unlock()
	if !ok {
		d.h, d.err = es.s.pool.Hold(es.ctx, es.gateway, id, authorization)
		if d.err != nil {
			es.mu.Lock()
			delete(es.devices, id)
			es.mu.Unlock()
		}
		close(d.ready)
	}
	select {
	case <-d.ready:
	case <-es.ctx.Done():
		return nil, es.ctx.Err()
	}
	return d.h, d.err
}

// release detaches the stream's devices and lets the gateway go. Every
// publish has ended.
func (es *eventStream) release() {
	es.mu.Lock()
	defer es.mu.Unlock()
	for _, d := range es.devices {
		<-d.ready
		if d.h != nil {
			d.h.Release()
		}
	}
	es.devices = nil
}
