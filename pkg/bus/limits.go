package bus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
)

// StreamLimits are the telemetry stream's limits (PASSERELLE_PUBSUB).
// JetStream drops messages past any of them, by the Discard policy. A
// zero field keeps what the stream has, or takes the default when the
// stream is made; a negative MaxBytes, MaxMsgs or MaxAge removes that
// limit. So a process that sets no limits (a manager, a hub) never undoes
// the limits another process set.
type StreamLimits struct {
	// MaxBytes the stream stores. Default 1 GiB.
	MaxBytes int64
	// MaxMsgs the stream stores. Default none.
	MaxMsgs int64
	// MaxAge of a stored message. Default 7 days.
	MaxAge time.Duration
	// Discard is what happens at a limit: DiscardOld (the default) drops
	// the oldest messages, so devices never see an error; DiscardNew
	// refuses new ones, so devices get no PUBACK (the bridge closes the
	// connection) until a consumer catches up, and nothing stored is lost
	// unread.
	Discard string
}

// Discard policies of StreamLimits.
const (
	DiscardOld = "old"
	DiscardNew = "new"
)

// Defaults of StreamLimits, for a stream Open creates.
const (
	DefaultStreamMaxBytes = 1 << 30
	DefaultStreamMaxAge   = 7 * 24 * time.Hour
)

// Validate checks the limits; its error names what to fix.
func (l StreamLimits) Validate() error {
	var errs []error
	if l.MaxBytes > 0 && l.MaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("%w: stream max bytes %d: give at least 1 MiB (or a negative value for no limit)", ErrInvalid, l.MaxBytes))
	}
	if l.MaxAge > 0 && l.MaxAge < time.Second {
		errs = append(errs, fmt.Errorf("%w: stream max age %s: give at least 1s (or a negative value for no limit)", ErrInvalid, l.MaxAge))
	}
	switch l.Discard {
	case "", DiscardOld, DiscardNew:
	default:
		errs = append(errs, fmt.Errorf("%w: stream discard policy %q: give %q or %q", ErrInvalid, l.Discard, DiscardOld, DiscardNew))
	}
	return errors.Join(errs...)
}

// apply writes the limits into cfg, which holds the stream's current
// configuration (existing) or nothing (a new stream).
func (l StreamLimits) apply(cfg *jetstream.StreamConfig, existing bool) {
	pick := func(set, def int64, cur *int64) {
		switch {
		case set > 0:
			*cur = set
		case set < 0:
			*cur = -1 // JetStream's "no limit"
		case !existing:
			*cur = def
		}
	}
	pick(l.MaxBytes, DefaultStreamMaxBytes, &cfg.MaxBytes)
	pick(l.MaxMsgs, -1, &cfg.MaxMsgs)
	switch {
	case l.MaxAge > 0:
		cfg.MaxAge = l.MaxAge
	case l.MaxAge < 0:
		cfg.MaxAge = 0 // JetStream's "no limit"
	case !existing:
		cfg.MaxAge = DefaultStreamMaxAge
	}
	switch {
	case l.Discard == DiscardNew:
		cfg.Discard = jetstream.DiscardNew
	case l.Discard == DiscardOld || !existing:
		cfg.Discard = jetstream.DiscardOld
	}
}

// streamFill is how full a stream is: the larger of its bytes and its
// messages over their limits, 0 when it has neither limit.
func streamFill(info *jetstream.StreamInfo) float64 {
	var fill float64
	if m := info.Config.MaxBytes; m > 0 {
		fill = float64(info.State.Bytes) / float64(m)
	}
	if m := info.Config.MaxMsgs; m > 0 {
		fill = math.Max(fill, float64(info.State.Msgs)/float64(m))
	}
	return fill
}

// Defaults of the stream watch (Options.WatchStream).
const (
	DefaultStreamWarnFill      = 0.8
	DefaultStreamWatchInterval = 30 * time.Second
)

// watchStream reads the stream's state every interval: it records how
// full the stream is (the gauge passerelle.bus.stream.fill, 0 to 1) and
// logs a warning when it passes warnAt, once until it is back under it.
// It ends with the bus.
func (b *Bus) watchStream(interval time.Duration, warnAt float64) {
	defer b.wg.Done()
	var fillBits atomic.Uint64 // math.Float64bits of the last fill; NaN until read
	fillBits.Store(math.Float64bits(math.NaN()))
	meter := b.opts.MeterProvider.Meter(tracerName)
	gauge, err := meter.Float64ObservableGauge("passerelle.bus.stream.fill",
		metric.WithDescription("how full the telemetry stream is: the larger of its bytes and its messages over the stream's limits (at 1 JetStream discards, by the stream's discard policy)"),
		metric.WithUnit("1"))
	if err == nil {
		// The callback reports what the loop read last: it must not wait
		// for JetStream.
		var reg metric.Registration
		reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			if v := math.Float64frombits(fillBits.Load()); !math.IsNaN(v) {
				o.ObserveFloat64(gauge, v)
			}
			return nil
		}, gauge)
		if err == nil {
			defer func() { _ = reg.Unregister() }()
		}
	}
	if err != nil {
		b.logger.Warn("bus: no stream fill gauge", "err", err)
	}
	warned := false
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		info, err := b.streamInfo(ctx)
		cancel()
		if err == nil {
			fill := streamFill(info)
			fillBits.Store(math.Float64bits(fill))
			switch {
			case fill >= warnAt && !warned:
				warned = true
				b.logger.Warn("bus: the telemetry stream is nearly full; past its limit JetStream "+discardEffect(info.Config.Discard)+
					": raise --stream-max-bytes or --stream-max-msgs, or have consumers keep up",
					"stream", info.Config.Name, "fill_percent", math.Round(fill*100), "bytes", info.State.Bytes, "max_bytes", info.Config.MaxBytes,
					"msgs", info.State.Msgs, "max_msgs", info.Config.MaxMsgs, "discard", info.Config.Discard.String())
			case fill < warnAt && warned:
				warned = false
				b.logger.Info("bus: the telemetry stream is below its warning level again", "stream", info.Config.Name, "fill_percent", math.Round(fill*100))
			}
		}
		select {
		case <-b.closed:
			return
		case <-t.C:
		}
	}
}

// streamInfo reads the stream's configuration and state.
func (b *Bus) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	st, err := b.js.Stream(ctx, b.opts.StreamName)
	if err != nil {
		return nil, err
	}
	return st.Info(ctx)
}

func discardEffect(d jetstream.DiscardPolicy) string {
	if d == jetstream.DiscardNew {
		return "refuses new events (devices get no PUBACK)"
	}
	return "drops the oldest events"
}
