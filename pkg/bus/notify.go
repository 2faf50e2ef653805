package bus

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/resource"
)

// Kind tells a telemetry event from a state notification; it travels in
// the "iot-kind" header.
type Kind string

// The kinds of notification.
const (
	KindEvent Kind = "event"
	KindState Kind = "state"
)

// Header names. The attribute headers carry Cloud IoT's attribute names
// exactly (NATS headers are case-sensitive).
const (
	HeaderKind                   = "iot-kind"
	HeaderDeviceID               = "deviceId"
	HeaderDeviceNumID            = "deviceNumId"
	HeaderDeviceRegistryID       = "deviceRegistryId"
	HeaderDeviceRegistryLocation = "deviceRegistryLocation"
	HeaderProjectID              = "projectId"
	HeaderSubFolder              = "subFolder"
	HeaderGatewayID              = "gatewayId"
)

// Attributes are the Cloud IoT attributes of a notification, sent as NATS
// headers under the Header* names; empty ones are left out.
type Attributes struct {
	DeviceID               string
	DeviceNumID            string
	DeviceRegistryID       string
	DeviceRegistryLocation string
	ProjectID              string
	SubFolder              string
	GatewayID              string
}

// header returns the message's headers, with room for extra more. The
// values share one backing array: a notification is a few small
// allocations, not one per header.
func (a Attributes) header(kind Kind, extra int) nats.Header {
	keys := [...]string{HeaderKind, HeaderDeviceID, HeaderDeviceNumID, HeaderDeviceRegistryID,
		HeaderDeviceRegistryLocation, HeaderProjectID, HeaderSubFolder, HeaderGatewayID}
	vals := [...]string{string(kind), a.DeviceID, a.DeviceNumID, a.DeviceRegistryID,
		a.DeviceRegistryLocation, a.ProjectID, a.SubFolder, a.GatewayID}
	shared := vals[:]
	h := make(nats.Header, len(keys)+extra)
	for i, k := range keys {
		if vals[i] != "" {
			h[k] = shared[i : i+1 : i+1]
		}
	}
	return h
}

// AttributesFromHeader reads the attributes back from a message's headers,
// for consumers.
func AttributesFromHeader(h nats.Header) Attributes {
	return Attributes{
		DeviceID:               h.Get(HeaderDeviceID),
		DeviceNumID:            h.Get(HeaderDeviceNumID),
		DeviceRegistryID:       h.Get(HeaderDeviceRegistryID),
		DeviceRegistryLocation: h.Get(HeaderDeviceRegistryLocation),
		ProjectID:              h.Get(HeaderProjectID),
		SubFolder:              h.Get(HeaderSubFolder),
		GatewayID:              h.Get(HeaderGatewayID),
	}
}

// TopicSubject returns the NATS subject that notifications for the Pub/Sub
// topic "projects/{project}/topics/{topic}" go to, with the default
// SubjectPrefix ("iot.pubsub.<project>.<topic>", escaped as the package
// documentation says). A topic that is not a valid Pub/Sub topic name gives
// an error wrapping ErrInvalidTopic.
func TopicSubject(topic string) (string, error) {
	return topicSubject(Options{}.withDefaults().SubjectPrefix, topic)
}

// TopicSubject is the package-level TopicSubject with this Bus's
// SubjectPrefix.
func (b *Bus) TopicSubject(topic string) (string, error) {
	return topicSubject(b.opts.SubjectPrefix, topic)
}

func topicSubject(prefix, topic string) (string, error) {
	rest, ok := strings.CutPrefix(topic, "projects/")
	if !ok {
		return "", fmt.Errorf("%w: %q is not projects/{project}/topics/{topic}", ErrInvalidTopic, topic)
	}
	project, id, ok := strings.Cut(rest, "/topics/")
	if !ok || !ValidProject(project) {
		return "", fmt.Errorf("%w: %q is not projects/{project}/topics/{topic}", ErrInvalidTopic, topic)
	}
	if !resource.ValidID(id) {
		return "", fmt.Errorf("%w: the topic id in %q must be 3 to 255 characters of [a-zA-Z0-9-._~%%+], start with a letter and not start with 'goog'", ErrInvalidTopic, topic)
	}
	return prefix + "." + escapeToken(project) + "." + escapeToken(id), nil
}

// ValidProject accepts Cloud project ids, including domain-scoped ones
// ("example.com:my-project"), and nothing that would cross a "/".
func ValidProject(p string) bool {
	if p == "" || len(p) > 100 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '/' {
			return false
		}
	}
	return true
}

// escapeToken percent-encodes every byte that is not safe in a NATS subject
// token, and "%" itself so that the mapping stays one to one.
func escapeToken(s string) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '~' || c == '+' || c == ':' {
			if sb.Len() > 0 {
				sb.WriteByte(c)
			}
			continue
		}
		if sb.Len() == 0 {
			sb.Grow(len(s) + 8)
			sb.WriteString(s[:i])
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
	if sb.Len() == 0 {
		return s
	}
	return sb.String()
}

// notificationMsg builds the message; withID gives it a Nats-Msg-Id,
// which lets copies sent again be stored once.
func (b *Bus) notificationMsg(ctx context.Context, topic string, kind Kind, data []byte, attrs Attributes, withID bool) (*nats.Msg, error) {
	if kind != KindEvent && kind != KindState {
		return nil, fmt.Errorf("%w: notification kind %q", ErrInvalid, kind)
	}
	subject, err := b.TopicSubject(topic)
	if err != nil {
		return nil, err
	}
	h := attrs.header(kind, 1)
	if withID {
		h[nats.MsgIdHdr] = []string{b.nextMsgID()}
	}
	injectTrace(ctx, h)
	return &nats.Msg{Subject: subject, Data: data, Header: h}, nil
}

// nextMsgID returns a Nats-Msg-Id no other message of any Bus has: the
// stream stores a message sent again under the same id, within its
// duplicate window, once (and acknowledges the copy as a duplicate).
// Consumers do not see it: the Pub/Sub API keeps "Nats-" headers out of
// the attributes.
func (b *Bus) nextMsgID() string {
	return b.msgIDPrefix + strconv.FormatUint(b.msgIDs.Add(1), 36)
}

// newMsgIDPrefix is 80 random bits, so that Buses, and one Bus after a
// restart, never share message ids.
func newMsgIDPrefix() string {
	var r [10]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read does not fail
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(r[:]) + "."
}

// duplicateWindow is the stream's Duplicates: twice PublishTimeout, the
// longest an asynchronous publish goes on sending a message again (one
// attempt more), at most MaxAge (JetStream's limit).
func duplicateWindow(publishTimeout, maxAge time.Duration) time.Duration {
	if maxAge > 0 {
		return min(2*publishTimeout, maxAge)
	}
	return 2 * publishTimeout
}

// PublishNotification stores a telemetry event or state notification in
// the stream and returns once the stream has acknowledged it (the PubAck:
// on a cluster, once a majority of the stream's replicas hold it), so a
// bridge may then PUBACK the device. Without a deadline on ctx, it waits
// at most Options.PublishTimeout. While the connection to NATS is down the
// message waits in the client's buffer for the reconnection; one that gets
// no answer within 2 s (the stream is electing a leader after a server
// died) is sent again. An error wrapping ErrUnavailable means it was not
// acknowledged in time (it may be stored or not: the device sends it
// again).
func (b *Bus) PublishNotification(ctx context.Context, topic string, kind Kind, data []byte, attrs Attributes) (err error) {
	ctx, span := startSpan(ctx, "bus.publish "+string(kind), topic)
	start := time.Now()
	defer func() {
		endSpan(span, err)
		if err == nil {
			b.pubDur.Record(context.Background(), time.Since(start).Seconds())
		}
	}()
	m, err := b.notificationMsg(ctx, topic, kind, data, attrs, true)
	if err != nil {
		return err
	}
	if b.isClosing() {
		return ErrClosed
	}
	ctx, cancel := withDefaultTimeout(ctx, b.opts.PublishTimeout)
	defer cancel()
	// A publish that reaches a stream with no leader (one is being elected
	// after a server died) is dropped unanswered: it is sent again every
	// publishAttemptTimeout until ctx ends. A copy stored whose
	// acknowledgement was lost is not stored again: the copies share the
	// message id, within the stream's duplicate window (twice
	// PublishTimeout; past it, with a longer deadline on ctx, a copy may
	// be stored twice, as when a device sends an unacknowledged event
	// again: QoS 1 is at least once).
	for {
		actx, acancel := context.WithTimeout(ctx, publishAttemptTimeout)
		_, err := b.js.PublishMsg(actx, m)
		acancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() == nil && retryablePublish(err) && !b.isClosing():
			if jsErrCode(err) == jsErrDuplicateInProcess {
				// Answered at once: give the first copy a moment.
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
			// While disconnected, the last copy waits in the client's
			// buffer: another goes only once the connection is back.
			if ctx.Err() == nil && b.waitConnected(ctx) == nil {
				continue
			}
		}
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			err = ctx.Err()
		}
		return fmt.Errorf("bus: publishing to %s: %w", m.Subject, unavailableErr(err))
	}
}

// publishAttemptTimeout is how long PublishNotification waits for one
// attempt's acknowledgement before sending the message again.
const publishAttemptTimeout = 2 * time.Second

// retryablePublish reports a publish error a later attempt may not get:
// no answer, or no stream listening (a leader being elected).
func retryablePublish(err error) bool {
	// A copy sent again while the first is still being proposed (a stream
	// without quorum) is answered "duplicate message id is in process":
	// the first may yet be stored, so wait and ask again.
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		jsErrCode(err) == jsErrDuplicateInProcess
}

// PublishNotificationAsync is PublishNotification without waiting: it
// sends the message and returns, and done runs once the stream has
// acknowledged it (err nil) or failed to. Many messages then travel at
// once, which is how a bridge keeps up with thousands of QoS 1 events per
// second, each PUBACKed from its done.
//
// As PublishNotification, it rides out a stream leader election or a
// reconnection to another server: an attempt that gets no answer within
// 2 s, finds no stream listening, or is cut by the loss of the connection
// is sent again, under the same message id (stored once), after a short
// backoff, for as long as Options.PublishTimeout from the first send
// allows, and while ctx lasts. Only then does done get an error (wrapping
// ErrUnavailable, or ctx's error). The message may then be stored or not:
// the bridge does not PUBACK, and the device sends it again (QoS 1 is at
// least once). Close sends nothing again and fails what is left with
// ErrClosed.
//
// At most Options.MaxPendingPublishes are outstanding, resends included;
// past that the call waits for a slot, or for ctx. When it returns an
// error, done is never called; otherwise done is called exactly once. done
// runs on the publisher's acknowledgement goroutine, on its sweep of
// timeouts or its watch of the connection, or on the one that gives a
// resend up: it must be quick (a slow done delays every other answer) and
// must not publish (it would wait for a slot only its own return frees).
// data must not be modified until done runs.
func (b *Bus) PublishNotificationAsync(ctx context.Context, topic string, kind Kind, data []byte, attrs Attributes, done func(error)) error {
	return b.publishAsync(ctx, topic, kind, data, attrs, done, false)
}

// PublishNotificationAtMostOnce is PublishNotificationAsync for a
// message its sender does not want acknowledged (an MQTT QoS 0 event):
// nothing is sent again, so the message needs no id and the stream keeps
// no duplicate-window entry for it. An attempt that fails, including one
// cut by a leader election or a reconnection, ends with done's error.
// done, and the limit of MaxPendingPublishes, are as for
// PublishNotificationAsync.
func (b *Bus) PublishNotificationAtMostOnce(ctx context.Context, topic string, kind Kind, data []byte, attrs Attributes, done func(error)) error {
	return b.publishAsync(ctx, topic, kind, data, attrs, done, true)
}

func (b *Bus) publishAsync(ctx context.Context, topic string, kind Kind, data []byte, attrs Attributes, done func(error), once bool) (err error) {
	// The span, as PublishNotification's, lasts until the stream's answer.
	ctx, span := startChildSpan(ctx, "bus.publish "+string(kind), topic)
	start := time.Now()
	defer func() {
		if err != nil {
			endSpan(span, err) // done is never called
		}
	}()
	m, err := b.notificationMsg(ctx, topic, kind, data, attrs, !once)
	if err != nil {
		return err
	}
	then := done
	done = func(err error) {
		endSpan(span, err)
		if err == nil {
			b.pubDur.Record(context.Background(), time.Since(start).Seconds())
		}
		if then != nil {
			then(err)
		}
	}
	select {
	case b.pubSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.closed:
		return ErrClosed
	}
	b.pendMu.Lock()
	if b.closing {
		b.pendMu.Unlock()
		<-b.pubSem
		return ErrClosed
	}
	b.pending[m] = &asyncPub{done: done, ctx: ctx, deadline: start.Add(b.opts.PublishTimeout), once: once}
	b.pendMu.Unlock()
	if err := b.pub.publish(m); err != nil {
		// No callback runs for a message that was not sent.
		if p := b.take(m); p != nil {
			<-b.pubSem
		}
		return fmt.Errorf("bus: publishing to %s: %w", m.Subject, unavailableErr(err))
	}
	return nil
}

// asyncPub is an asynchronous publish not answered yet, while in flight
// to the stream or waiting to be sent again.
type asyncPub struct {
	done     func(error)
	ctx      context.Context // the caller's: resends stop when it ends
	deadline time.Time       // no resend starts past it
	attempts int             // resends so far
	once     bool            // never sent again (PublishNotificationAtMostOnce)
	// While waiting to be sent again: the timer, and stopCtx (stop
	// watching ctx), set once the first resend is scheduled.
	timer   *time.Timer
	stopCtx func() bool
}

// onceResends is how many times an at-most-once message nothing took is
// sent again (as jetstream's asynchronous publish did).
const onceResends = 2

// Backoff before a resend: resendBackoff doubled at each attempt, at most
// maxResendBackoff, with jitter so that the messages of a failover do not
// all come back at once.
const (
	resendBackoff    = 50 * time.Millisecond
	maxResendBackoff = 500 * time.Millisecond
)

func backoff(attempt int) time.Duration {
	d := maxResendBackoff
	if attempt < 4 {
		d = min(resendBackoff<<attempt, maxResendBackoff)
	}
	return d/2 + mrand.N(d/2+1)
}

// retryableAsync reports an asynchronous publish error that a resend may
// not get: what the synchronous retry sends again on (no answer, no
// stream listening), the connection lost under the publish (the
// publisher fails what was in flight when the client starts reconnecting)
// or its reconnect buffer full, and the cluster's transient errors.
func retryableAsync(err error) bool {
	return retryablePublish(err) || TransientSetupError(err) ||
		errors.Is(err, jetstream.ErrAsyncPublishTimeout) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrReconnectBufExceeded)
}

func (b *Bus) isClosing() bool {
	b.pendMu.Lock()
	defer b.pendMu.Unlock()
	return b.closing
}

// take removes m's entry, stopping what watches it; nil if another took
// it.
func (b *Bus) take(m *nats.Msg) *asyncPub {
	b.pendMu.Lock()
	p := b.pending[m]
	if p != nil {
		delete(b.pending, m)
	}
	b.pendMu.Unlock()
	if p != nil && p.stopCtx != nil {
		p.stopCtx()
	}
	return p
}

// finishAsync is the publisher's end of an attempt of an asynchronous
// publish: the stream's acknowledgement (err nil) or an error; and a
// resend's failure to go out.
func (b *Bus) finishAsync(m *nats.Msg, err error) {
	b.pendMu.Lock()
	p := b.pending[m]
	if p == nil {
		b.pendMu.Unlock()
		return
	}
	if err != nil && b.resendLocked(m, p, err) {
		b.pendMu.Unlock()
		return
	}
	delete(b.pending, m)
	b.pendMu.Unlock()
	if p.stopCtx != nil {
		p.stopCtx()
	}
	<-b.pubSem
	switch {
	case err == nil:
	case errors.Is(err, jetstream.ErrJetStreamPublisherClosed):
		err = fmt.Errorf("bus: publishing to %s: %w", m.Subject, ErrClosed)
	case p.ctx.Err() != nil && retryableAsync(err):
		err = fmt.Errorf("bus: publishing to %s: %w (last attempt: %v)", m.Subject, p.ctx.Err(), unavailableErr(err))
	default:
		err = fmt.Errorf("bus: publishing to %s: %w", m.Subject, unavailableErr(err))
	}
	p.done(err)
}

// resendLocked schedules m to be sent again after err, unless err is
// final, the time is up, the caller's ctx ended or the Bus is closing;
// it reports whether it did. pendMu is held. A message sent at most once
// goes again only when nothing took it (no stream listens on its
// subject, as while a stream's leader is elected): that copy cannot have
// been stored. It goes again at most onceResends times, within a second:
// its sender waits for no acknowledgement, and a stream without quorum
// may answer so for as long as it lasts.
func (b *Bus) resendLocked(m *nats.Msg, p *asyncPub, err error) bool {
	if p.once && (!errors.Is(err, jetstream.ErrNoStreamResponse) || p.attempts >= onceResends) {
		return false
	}
	if b.closing || !retryableAsync(err) || p.ctx.Err() != nil {
		return false
	}
	wait := backoff(p.attempts)
	if time.Now().Add(wait).After(p.deadline) {
		return false
	}
	p.attempts++
	b.retries.Add(1)
	p.timer = time.AfterFunc(wait, func() {
		defer b.retries.Done()
		b.resend(m)
	})
	if p.stopCtx == nil && p.ctx.Done() != nil {
		p.stopCtx = context.AfterFunc(p.ctx, func() { b.abandon(m) })
	}
	return true
}

// resend sends m again, on its timer's goroutine.
func (b *Bus) resend(m *nats.Msg) {
	b.pendMu.Lock()
	p := b.pending[m]
	if p == nil || p.timer == nil || b.closing {
		// Given up (ctx ended), or Close fails it.
		b.pendMu.Unlock()
		return
	}
	p.timer = nil
	b.pendMu.Unlock()
	// The same *nats.Msg, Nats-Msg-Id included: the publisher sends a
	// copy and leaves m as it is.
	if err := b.pub.publish(m); err != nil {
		b.finishAsync(m, err)
	}
}

// abandon fails m, waiting to be sent again, once its caller's ctx ended
// (the bridge stopped); one in flight ends with the stream's answer or
// the attempt's timeout, and is not sent again.
func (b *Bus) abandon(m *nats.Msg) {
	b.pendMu.Lock()
	p := b.pending[m]
	if p == nil || p.timer == nil || !p.timer.Stop() {
		b.pendMu.Unlock()
		return
	}
	p.timer = nil
	b.retries.Done()
	delete(b.pending, m)
	b.pendMu.Unlock()
	<-b.pubSem
	p.done(fmt.Errorf("bus: publishing to %s: %w (while waiting to send it again)", m.Subject, p.ctx.Err()))
}

// failPending fails the asynchronous publishes the publisher no longer
// tracks, and those waiting to be sent again.
func (b *Bus) failPending(err error) {
	b.pendMu.Lock()
	left := b.pending
	b.pending = make(map[*nats.Msg]*asyncPub)
	for _, p := range left {
		if p.timer != nil && p.timer.Stop() {
			b.retries.Done()
		}
		p.timer = nil
	}
	b.pendMu.Unlock()
	for _, p := range left {
		if p.stopCtx != nil {
			p.stopCtx()
		}
		<-b.pubSem
	}
	for _, p := range left {
		p.done(err)
	}
}
