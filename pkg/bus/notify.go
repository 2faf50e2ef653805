package bus

import (
	"context"
	"errors"
	"fmt"
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

func (a Attributes) header(kind Kind) nats.Header {
	h := make(nats.Header, 8)
	h[HeaderKind] = []string{string(kind)}
	set := func(k, v string) {
		if v != "" {
			h[k] = []string{v}
		}
	}
	set(HeaderDeviceID, a.DeviceID)
	set(HeaderDeviceNumID, a.DeviceNumID)
	set(HeaderDeviceRegistryID, a.DeviceRegistryID)
	set(HeaderDeviceRegistryLocation, a.DeviceRegistryLocation)
	set(HeaderProjectID, a.ProjectID)
	set(HeaderSubFolder, a.SubFolder)
	set(HeaderGatewayID, a.GatewayID)
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

func (b *Bus) notificationMsg(ctx context.Context, topic string, kind Kind, data []byte, attrs Attributes) (*nats.Msg, error) {
	if kind != KindEvent && kind != KindState {
		return nil, fmt.Errorf("%w: notification kind %q", ErrInvalid, kind)
	}
	subject, err := b.TopicSubject(topic)
	if err != nil {
		return nil, err
	}
	h := attrs.header(kind)
	injectTrace(ctx, h)
	return &nats.Msg{Subject: subject, Data: data, Header: h}, nil
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
	m, err := b.notificationMsg(ctx, topic, kind, data, attrs)
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
	// acknowledgement was lost is then stored twice, as when a device
	// sends an unacknowledged event again (QoS 1 is at least once); no
	// message id is added to dedupe it, which would be a header every
	// consumer sees.
	for {
		actx, acancel := context.WithTimeout(ctx, publishAttemptTimeout)
		_, err := b.js.PublishMsg(actx, m)
		acancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() == nil && retryablePublish(err) && !b.isClosing():
			// While disconnected, the last copy waits in the client's
			// buffer: another goes only once the connection is back.
			if b.waitConnected(ctx) == nil {
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
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// PublishNotificationAsync is PublishNotification without waiting: it
// sends the message and returns, and done runs once the stream has
// acknowledged it (err nil) or failed to. Many messages then travel at
// once, which is how a bridge keeps up with thousands of QoS 1 events per
// second, each PUBACKed from its done.
//
// done gets an error when the acknowledgement did not come within
// Options.PublishTimeout, the connection to NATS was lost, or the Bus was
// closed (ErrClosed). The message may then be stored or not: the bridge
// does not PUBACK, and the device sends it again (QoS 1 is at least once).
//
// At most Options.MaxPendingPublishes are outstanding; past that the call
// waits for a slot, or for ctx. When it returns an error, done is never
// called; otherwise done is called exactly once. done runs on the
// connection's acknowledgement goroutine: it must be quick and must not
// publish (it would wait for a slot only its own return frees). data must
// not be modified until done runs.
func (b *Bus) PublishNotificationAsync(ctx context.Context, topic string, kind Kind, data []byte, attrs Attributes, done func(error)) (err error) {
	// The span, as PublishNotification's, lasts until the stream's answer.
	ctx, span := startSpan(ctx, "bus.publish "+string(kind), topic)
	start := time.Now()
	defer func() {
		if err != nil {
			endSpan(span, err) // done is never called
		}
	}()
	m, err := b.notificationMsg(ctx, topic, kind, data, attrs)
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
	b.pending[m] = done
	b.pendMu.Unlock()
	if _, err := b.js.PublishMsgAsync(m); err != nil {
		// No callback runs for a message that was not sent.
		if b.take(m) != nil {
			<-b.pubSem
		}
		return fmt.Errorf("bus: publishing to %s: %w", m.Subject, unavailableErr(err))
	}
	return nil
}

func (b *Bus) isClosing() bool {
	b.pendMu.Lock()
	defer b.pendMu.Unlock()
	return b.closing
}

func (b *Bus) take(m *nats.Msg) func(error) {
	b.pendMu.Lock()
	done, ok := b.pending[m]
	if ok {
		delete(b.pending, m)
	}
	b.pendMu.Unlock()
	return done
}

// finishAsync is JetStream's acknowledgement (err nil) or error callback
// for an asynchronous publish.
func (b *Bus) finishAsync(m *nats.Msg, err error) {
	done := b.take(m)
	if done == nil {
		return
	}
	<-b.pubSem
	switch {
	case err == nil:
	case errors.Is(err, jetstream.ErrJetStreamPublisherClosed):
		err = fmt.Errorf("bus: publishing to %s: %w", m.Subject, ErrClosed)
	default:
		err = fmt.Errorf("bus: publishing to %s: %w", m.Subject, unavailableErr(err))
	}
	done(err)
}

// failPending fails the asynchronous publishes JetStream no longer tracks.
func (b *Bus) failPending(err error) {
	b.pendMu.Lock()
	left := b.pending
	b.pending = make(map[*nats.Msg]func(error))
	b.pendMu.Unlock()
	for range left {
		<-b.pubSem
	}
	for _, done := range left {
		done(err)
	}
}
