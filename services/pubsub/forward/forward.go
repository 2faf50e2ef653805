// Package forward mirrors Passerelle Pub/Sub topics to Google Cloud
// Pub/Sub, for teams that keep their consumers on Google Cloud: each route
// reads its topic's subject of the telemetry stream through a durable
// JetStream consumer and publishes every message with Google's client
// (cloud.google.com/go/pubsub/v2), acknowledging it in JetStream only once
// Google has accepted it. While Google is unreachable the messages wait in
// the stream (nothing a device was PUBACKed for is lost) and are retried
// with exponential backoff; the backlog is an OpenTelemetry gauge.
package forward

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	pspkg "github.com/passerelle-iot/passerelle/services/pubsub"
)

// Bus is what the forwarder needs of pkg/bus; *bus.Bus implements it.
type Bus interface {
	Conn() *nats.Conn
	StreamName() string
	TopicSubject(topic string) (string, error)
}

// Route mirrors the local topic From to the Google topic To (both
// "projects/{p}/topics/{t}").
type Route struct{ From, To string }

// ParseRoutes reads "from=to" pairs separated by commas.
func ParseRoutes(s string) ([]Route, error) {
	var out []Route
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		from, to, ok := strings.Cut(part, "=")
		if !ok || !strings.HasPrefix(from, "projects/") || !strings.HasPrefix(to, "projects/") ||
			!strings.Contains(from, "/topics/") || !strings.Contains(to, "/topics/") {
			return nil, fmt.Errorf("forward route %q: want projects/P/topics/LOCAL=projects/G/topics/REMOTE", part)
		}
		out = append(out, Route{From: from, To: to})
	}
	return out, nil
}

// Defaults of the options.
const (
	defaultMinBackoff = time.Second
	defaultMaxBackoff = time.Minute
	batch             = 100
	fetchWait         = 2 * time.Second
	// publishTimeout bounds one message's publish to Google, retries
	// included.
	publishTimeout = 20 * time.Second
	stopWait       = 5 * time.Second
)

type options struct {
	minBackoff, maxBackoff time.Duration
	meter                  metric.MeterProvider
}

// Option configures a Forwarder.
type Option func(*options)

// WithBackoff sets the retry delays after a failed publish, doubling from
// min to max. Default: 1 s to 1 min.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithMeterProvider sets where the backlog gauge goes. Default: the otel
// global.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.meter = mp } }

// Forwarder runs the routes.
type Forwarder struct {
	logger *slog.Logger
	bus    Bus
	js     jetstream.JetStream
	google *pubsub.Client
	routes []Route
	opts   options

	mu      sync.Mutex
	backlog map[Route]int64
}

// New builds a forwarder publishing with google (a client made with the
// service account's credentials).
func New(logger *slog.Logger, b Bus, google *pubsub.Client, routes []Route, opts ...Option) (*Forwarder, error) {
	o := options{minBackoff: defaultMinBackoff, maxBackoff: defaultMaxBackoff, meter: otel.GetMeterProvider()}
	for _, opt := range opts {
		opt(&o)
	}
	js, err := jetstream.New(b.Conn())
	if err != nil {
		return nil, err
	}
	f := &Forwarder{logger: logger, bus: b, js: js, google: google, routes: routes, opts: o, backlog: map[Route]int64{}}
	m := o.meter.Meter("github.com/passerelle-iot/passerelle/services/pubsub/forward")
	_, err = m.Int64ObservableGauge("passerelle.pubsub.forward.backlog",
		metric.WithDescription("messages of a forwarded topic not yet accepted by Google Cloud Pub/Sub"),
		metric.WithUnit("{message}"),
		metric.WithInt64Callback(func(_ context.Context, obs metric.Int64Observer) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			for r, n := range f.backlog {
				obs.Observe(n, metric.WithAttributes(attribute.String("from", r.From), attribute.String("to", r.To)))
			}
			return nil
		}))
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Backlog returns the messages of r waiting to be forwarded, as last read.
func (f *Forwarder) Backlog(r Route) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.backlog[r]
}

func consumerName(r Route) string {
	h := sha256.Sum256([]byte(r.From + "\x00" + r.To))
	return "forward-" + hex.EncodeToString(h[:12])
}

// Run forwards until ctx ends.
func (f *Forwarder) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, len(f.routes))
	for _, r := range f.routes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.run(ctx, r); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("forward %s to %s: %w", r.From, r.To, err)
			}
		}()
	}
	wg.Wait()
	close(errc)
	return errors.Join(func() (errs []error) {
		for err := range errc {
			errs = append(errs, err)
		}
		return errs
	}()...)
}

func (f *Forwarder) run(ctx context.Context, r Route) error {
	subject, err := f.bus.TopicSubject(r.From)
	if err != nil {
		return err
	}
	cons, err := f.js.CreateOrUpdateConsumer(ctx, f.bus.StreamName(), jetstream.ConsumerConfig{
		Durable: consumerName(r), Description: "forward " + r.From + " to Google Cloud Pub/Sub " + r.To,
		FilterSubject: subject, DeliverPolicy: jetstream.DeliverNewPolicy, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: time.Minute, MaxAckPending: 10 * batch,
	})
	if err != nil {
		return err
	}
	pub := f.google.Publisher(r.To)
	pub.PublishSettings.Timeout = publishTimeout
	defer f.stop(pub, r)
	// The backlog is read every second, also while a publish waits for
	// an unreachable Google.
	var wg sync.WaitGroup
	wg.Add(1)
	defer wg.Wait()
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if info, err := cons.Info(ctx); err == nil {
				f.mu.Lock()
				f.backlog[r] = int64(info.NumPending) + int64(info.NumAckPending)
				f.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	backoff := f.opts.minBackoff
	for ctx.Err() == nil {
		msgs, err := cons.Fetch(batch, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			f.logger.Warn("forward: reading the stream", "from", r.From, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		failed := f.publish(ctx, pub, r, msgs, backoff)
		if failed {
			sleep(ctx, backoff)
			backoff = min(2*backoff, f.opts.maxBackoff)
		} else {
			backoff = f.opts.minBackoff
		}
	}
	return nil
}

// publish sends a batch to Google; each message is acked once Google has
// it, or given back to JetStream for a retry after the backoff.
func (f *Forwarder) publish(ctx context.Context, pub *pubsub.Publisher, r Route, msgs jetstream.MessageBatch, backoff time.Duration) (failed bool) {
	type sent struct {
		m   jetstream.Msg
		res *pubsub.PublishResult
	}
	var all []sent
	for m := range msgs.Messages() {
		all = append(all, sent{m, pub.Publish(ctx, &pubsub.Message{Data: m.Data(), Attributes: pspkg.Attributes(m.Headers())})})
	}
	for _, s := range all {
		pctx, cancel := context.WithTimeout(ctx, publishTimeout+5*time.Second)
		_, err := s.res.Get(pctx)
		cancel()
		if err != nil {
			if !failed {
				f.logger.Warn("forward: Google Cloud Pub/Sub refused or did not answer; retrying", "from", r.From, "to", r.To, "backoff", backoff, "err", err)
			}
			failed = true
			_ = s.m.NakWithDelay(backoff)
			continue
		}
		_ = s.m.Ack()
	}
	return failed
}

// stop flushes the publisher, waiting at most stopWait: what it has not
// sent by then is in JetStream still, unacknowledged, and goes again next
// time. Its goroutine ends with pub.Stop (within publishTimeout).
func (f *Forwarder) stop(pub *pubsub.Publisher, r Route) {
	done := make(chan struct{})
	go func() {
		pub.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(stopWait):
		f.logger.Warn("forward: Google Cloud Pub/Sub did not take the last messages in time; they stay in the stream", "from", r.From, "to", r.To)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
