package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/cluster"
)

// Relays reach the replica that holds a gateway over its own Hub API: the
// owner serves a relayed call exactly as a caller's, with the caller's
// authorization, and no protocol of our own is needed. A relayed call
// carries relayHeader (the relaying replica's id): the owner serves it
// itself or refuses it (GATEWAY_MOVED), never relays it again.
const relayHeader = "passerelle-relayed-by"

// A relaying replica follows the gateway on any UNAVAILABLE but
// reasonBridgeUnavailable, which it passes on to its caller; a
// FAILED_PRECONDITION with reasonNoKey from a replica it placed the
// gateway on makes it place the gateway elsewhere.
const (
	reasonBridgeUnavailable = hubv1.ErrorReason_BRIDGE_UNAVAILABLE
	reasonMoved             = hubv1.ErrorReason_GATEWAY_MOVED
	reasonClosing           = hubv1.ErrorReason_HUB_CLOSING
	reasonDraining          = hubv1.ErrorReason_HUB_DRAINING
	reasonNoKey             = hubv1.ErrorReason_GATEWAY_KEY_MISSING
)

// isRelayed reports whether ctx is a call another replica relayed here.
func isRelayed(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(relayHeader)) > 0
}

// relay links h through the replica target: the gateway's holder, or
// (placing) the replica preferred to take it.
func (r *replicaSet) relay(ctx context.Context, h *Holder, target cluster.Holding, placing bool) (link, error) {
	if target.Addr == "" {
		r.distrust(target.Instance)
		return nil, fmt.Errorf("%w: replica %s has no address", errMoved, target.Instance)
	}
	cc, err := r.conn(target.Addr)
	if err != nil {
		return nil, err
	}
	md := metadata.MD{}
	if in, ok := metadata.FromIncomingContext(h.ctx); ok {
		if auth := in.Get("authorization"); len(auth) > 0 {
			md.Set("authorization", auth...)
		}
	}
	md.Set(relayHeader, r.self)
	lctx, cancel := context.WithCancel(metadata.NewOutgoingContext(h.ctx, md))
	l := &remoteLink{r: r, h: h, target: target, placing: placing, client: hubv1.NewHubClient(cc), md: md, ctx: lctx, cancel: cancel}
	if h.deviceID != "" && !h.brief {
		if err := l.attach(ctx); err != nil {
			cancel()
			return nil, err
		}
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	r.remotes[l] = struct{}{}
	r.mu.Unlock()
	if l.att != nil && !r.p.goOwned(l.readAttach) {
		l.release()
		return nil, ErrClosed
	}
	if l.att != nil {
		r.trust(target.Instance)
	}
	r.log.Debug("hub: relaying a call to the gateway's replica", "gateway", h.gateway, "device", h.deviceID, "to", target.Instance)
	return l, nil
}

// remoteLink is a Holder's link through another replica: an Attach stream
// held open for a device (it keeps the device attached on the owner and
// brings its events), and a call or stream per operation.
type remoteLink struct {
	r       *replicaSet
	h       *Holder
	target  cluster.Holding
	placing bool // target did not hold the gateway: it was to take it
	client  hubv1.HubClient
	md      metadata.MD
	// ctx carries md and the caller's values; it ends with release or
	// breakOff, and every relayed call with it.
	ctx    context.Context
	cancel context.CancelFunc
	broken atomic.Pointer[error] // why breakOff cut the link

	sawHeld bool // the lease view showed target holding the gateway (under r.mu)

	attMu sync.Mutex // Attach sends
	att   grpc.BidiStreamingClient[hubv1.AttachRequest, hubv1.AttachResponse]

	stateMu sync.Mutex // one state publish at a time on one stream
	state   *relayedStates
}

type relayedStates struct {
	s      grpc.BidiStreamingClient[hubv1.PublishStateRequest, hubv1.PublishStateResponse]
	cancel context.CancelFunc
	sent   bool
}

// auth is the holder's device JWT now.
func (l *remoteLink) auth() string {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	return l.h.auth
}

// attach opens the Attach stream and waits for the owner's "attached".
func (l *remoteLink) attach(ctx context.Context) error {
	att, err := l.client.Attach(l.ctx)
	if err != nil {
		return l.classify(err)
	}
	stop := context.AfterFunc(ctx, l.cancel)
	defer stop()
	if err := att.Send(&hubv1.AttachRequest{Gateway: l.h.gateway, DeviceId: l.h.deviceID, Authorization: l.auth()}); err != nil && !errors.Is(err, io.EOF) {
		return l.classify(err)
	}
	resp, err := att.Recv()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return l.classify(err)
	}
	if resp.GetAttached() == nil {
		return fmt.Errorf("hub replica %s answered an attach with %v", l.target.Instance, resp)
	}
	l.att = att
	return nil
}

// readAttach passes the owner's events to the holder until the stream
// ends; an end the holder did not ask for is a move or the hold's end.
func (l *remoteLink) readAttach() {
	for {
		resp, err := l.att.Recv()
		if err != nil {
			if l.released() {
				return
			}
			err = l.classify(err)
			l.r.log.Debug("hub: a relayed attach ended", "gateway", l.h.gateway, "device", l.h.deviceID, "to", l.target.Instance, "err", err)
			l.h.linkLost(l, err)
			return
		}
		switch {
		case resp.GetReattached() != nil:
			l.h.offer(Event{Reattached: true, Reconnects: resp.GetReattached().GetReconnects()})
		case resp.GetError() != nil:
			e := resp.GetError()
			ge := &GatewayError{ErrorType: e.GetErrorType(), Description: e.GetDescription(), DeviceID: e.GetDeviceId()}
			ge.Info.Topic, ge.Info.PacketID = e.GetTopic(), int(e.GetPacketId())
			l.h.offer(Event{Error: ge})
		}
	}
}

// released reports whether the link was released (not broken off).
func (l *remoteLink) released() bool { return l.ctx.Err() != nil && l.broken.Load() == nil }

// classify turns a relayed call's error into what the holder acts on:
// errMoved when the gateway is to be looked for again (the owner moved it,
// drains, stops or cannot be reached), the owner's status otherwise.
func (l *remoteLink) classify(err error) error {
	if err == nil {
		return nil
	}
	if b := l.broken.Load(); b != nil {
		return *b
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%w: %v", errMoved, err)
	}
	switch st.Code() {
	case codes.Unavailable:
		switch reasonOf(st) {
		case reasonBridgeUnavailable:
			return err
		case hubv1.ErrorReason_ERROR_REASON_UNSPECIFIED:
			// Not an answer of the owner's: it cannot be reached.
			l.r.distrust(l.target.Instance)
		}
		return fmt.Errorf("%w: replica %s: %s", errMoved, l.target.Instance, st.Message())
	case codes.Canceled:
		if l.ctx.Err() == nil {
			return fmt.Errorf("%w: replica %s ended the call", errMoved, l.target.Instance)
		}
	case codes.FailedPrecondition:
		if l.placing && reasonOf(st) == reasonNoKey {
			// The replica preferred for the gateway cannot connect it:
			// place it on another.
			l.r.lacksKey(l.h.gateway, l.target.Instance)
			return fmt.Errorf("%w: replica %s holds no key for the gateway", errMoved, l.target.Instance)
		}
	}
	return err
}

// breakOff cuts the link (its gateway moved, or the pool closes): calls
// in flight on it fail with err, and the holder follows the gateway.
func (l *remoteLink) breakOff(err error) {
	if !l.broken.CompareAndSwap(nil, &err) {
		return
	}
	l.cancel()
	l.h.linkLost(l, err)
}

func (l *remoteLink) release() {
	l.cancel()
	l.forget()
}

func (l *remoteLink) abandon() {
	err := error(errMoved)
	l.broken.CompareAndSwap(nil, &err)
	l.cancel()
	l.forget()
}

// forget drops the link from the replica set's relays.
func (l *remoteLink) forget() {
	l.r.mu.Lock()
	delete(l.r.remotes, l)
	l.r.mu.Unlock()
}

func (l *remoteLink) setAuthorization(token string) {
	l.attMu.Lock()
	defer l.attMu.Unlock()
	if l.att != nil {
		_ = l.att.Send(&hubv1.AttachRequest{Authorization: token})
	}
}

// call returns the context of one relayed call: ctx's values and deadline,
// the relay's metadata, ended by the link's end too.
func (l *remoteLink) call(ctx context.Context) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, l.md))
	stop := context.AfterFunc(l.ctx, cancel)
	return cctx, func() { stop(); cancel() }
}

func (l *remoteLink) publish(ctx context.Context, suffix string, payload []byte) error {
	if suffix == "state" {
		return l.publishState(ctx, payload)
	}
	sub, _ := strings.CutPrefix(strings.TrimPrefix(suffix, "events"), "/")
	cctx, done := l.call(ctx)
	defer done()
	_, err := l.client.PublishEvent(cctx, &hubv1.PublishEventRequest{
		Gateway: l.h.gateway, DeviceId: l.h.deviceID, Authorization: l.auth(), SubFolder: sub, Data: payload,
	})
	if err == nil {
		l.r.trust(l.target.Instance)
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return l.classify(err)
}

// publishState sends one state on the link's PublishState stream and
// waits for its acknowledgement. A caller that gives up cuts the stream
// (the owner may still deliver the state: at least once, as MQTT QoS 1).
func (l *remoteLink) publishState(ctx context.Context, payload []byte) error {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if l.state == nil {
		sctx, cancel := context.WithCancel(l.ctx)
		s, err := l.client.PublishState(sctx)
		if err != nil {
			cancel()
			return l.classify(err)
		}
		l.state = &relayedStates{s: s, cancel: cancel}
	}
	st := l.state
	req := &hubv1.PublishStateRequest{Data: payload}
	if !st.sent {
		req.Gateway, req.DeviceId, req.Authorization = l.h.gateway, l.h.deviceID, l.auth()
	}
	stop := context.AfterFunc(ctx, st.cancel)
	defer stop()
	err := st.s.Send(req)
	if err == nil {
		_, err = st.s.Recv()
	} else {
		_, err = st.s.Recv() // the stream's status
	}
	if err != nil {
		st.cancel()
		l.state = nil
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			err = status.Error(codes.Unavailable, "the replica ended the state stream")
		}
		return l.classify(err)
	}
	st.sent = true
	return nil
}

func (l *remoteLink) subscribeConfig(context.Context) (configFeed, error) {
	sctx, cancel := context.WithCancel(l.ctx)
	s, err := l.client.SubscribeConfig(sctx, &hubv1.SubscribeConfigRequest{Gateway: l.h.gateway, DeviceId: l.h.deviceID, Authorization: l.auth()})
	if err != nil {
		cancel()
		return nil, l.classify(err)
	}
	f := &relayedConfigs{l: l, cancel: cancel, notify: make(chan struct{}, 1), done: make(chan struct{})}
	if !l.r.p.goOwned(func() { f.read(s) }) {
		cancel()
		return nil, ErrClosed
	}
	return f, nil
}

func (l *remoteLink) subscribeCommands(context.Context) (commandFeed, error) {
	sctx, cancel := context.WithCancel(l.ctx)
	s, err := l.client.SubscribeCommands(sctx, &hubv1.SubscribeCommandsRequest{Gateway: l.h.gateway, DeviceId: l.h.deviceID, Authorization: l.auth()})
	if err != nil {
		cancel()
		return nil, l.classify(err)
	}
	f := &relayedCommands{l: l, cancel: cancel, ch: make(chan Command, l.r.p.o.commandBuffer), done: make(chan struct{})}
	if !l.r.p.goOwned(func() { f.read(s) }) {
		cancel()
		return nil, ErrClosed
	}
	return f, nil
}

// relayedConfigs is a config feed from the owner, newest only.
type relayedConfigs struct {
	l      *remoteLink
	cancel context.CancelFunc
	notify chan struct{}
	done   chan struct{}

	mu     sync.Mutex
	latest *Config
	err    error
}

func (f *relayedConfigs) read(s grpc.ServerStreamingClient[hubv1.SubscribeConfigResponse]) {
	for {
		resp, err := s.Recv()
		if err != nil {
			f.mu.Lock()
			f.err = f.l.classify(err)
			f.mu.Unlock()
			close(f.done)
			return
		}
		f.mu.Lock()
		f.latest = &Config{Data: resp.GetData(), ReceiveTime: resp.GetReceiveTime().AsTime(), Version: resp.GetVersion()}
		f.mu.Unlock()
		select {
		case f.notify <- struct{}{}:
		default:
		}
	}
}

func (f *relayedConfigs) next(ctx context.Context) (Config, error) {
	for {
		f.mu.Lock()
		if c := f.latest; c != nil {
			f.latest = nil
			f.mu.Unlock()
			return *c, nil
		}
		f.mu.Unlock()
		select {
		case <-f.notify:
		case <-f.done:
			f.mu.Lock()
			c, err := f.latest, f.err
			f.latest = nil
			f.mu.Unlock()
			if c != nil {
				return *c, nil
			}
			return Config{}, err
		case <-ctx.Done():
			return Config{}, ctx.Err()
		}
	}
}

func (f *relayedConfigs) close() { f.cancel() }

// relayedCommands is a command feed from the owner, through a bounded
// buffer: a reader that lets it fill is ended with ErrSlowConsumer.
type relayedCommands struct {
	l      *remoteLink
	cancel context.CancelFunc
	ch     chan Command
	done   chan struct{}
	err    error // set before done closes
}

func (f *relayedCommands) read(s grpc.ServerStreamingClient[hubv1.SubscribeCommandsResponse]) {
	defer close(f.done)
	for {
		resp, err := s.Recv()
		if err != nil {
			f.err = f.l.classify(err)
			return
		}
		select {
		case f.ch <- Command{SubFolder: resp.GetSubFolder(), Data: resp.GetData(), ReceiveTime: resp.GetReceiveTime().AsTime()}:
		default:
			f.err = fmt.Errorf("%w: more than %d commands unread", ErrSlowConsumer, cap(f.ch))
			f.cancel()
			return
		}
	}
}

func (f *relayedCommands) next(ctx context.Context) (Command, error) {
	select {
	case c := <-f.ch:
		return c, nil
	default:
	}
	select {
	case c := <-f.ch:
		return c, nil
	case <-f.done:
		select {
		case c := <-f.ch:
			return c, nil
		default:
		}
		return Command{}, f.err
	case <-ctx.Done():
		return Command{}, ctx.Err()
	}
}

func (f *relayedCommands) close() { f.cancel() }
