package config

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
)

// Stream are the telemetry stream's limits (JetStream stream
// PASSERELLE_PUBSUB), flags of passerelle serve and cmd/bridge, the
// processes that write the telemetry. An empty flag keeps what the stream
// has (the default when it is made: 1 GiB, 7 days, no message limit,
// discard old); a given one is applied to the stream at start.
type Stream struct {
	// MaxBytes, MaxMsgs and MaxAge as given ("1GiB", "1000000", "7d";
	// "none" removes a limit).
	MaxBytes, MaxMsgs, MaxAge string
	// Discard is "old" or "new".
	Discard string
	// WarnPercent is the fill (of bytes or messages) past which a warning
	// is logged.
	WarnPercent float64
}

// AddFlags declares the stream's flags on fs.
func (s *Stream) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&s.MaxBytes, "stream-max-bytes", "", `bytes the telemetry stream keeps, such as 512MiB, 10GiB or 2GB; past it JetStream discards (see --stream-discard); "none": no limit (default: keep the stream's, 1GiB for a new stream)`)
	fs.StringVar(&s.MaxMsgs, "stream-max-msgs", "", `messages the telemetry stream keeps; "none": no limit (default: keep the stream's, none for a new stream)`)
	fs.StringVar(&s.MaxAge, "stream-max-age", "", `how long the telemetry stream keeps a message, such as 36h or 7d; "none": no limit (default: keep the stream's, 7d for a new stream)`)
	fs.StringVar(&s.Discard, "stream-discard", "", `at a limit: "old" drops the oldest messages, "new" refuses new ones (devices get no PUBACK until a consumer catches up) (default: keep the stream's, old for a new stream)`)
	fs.Float64Var(&s.WarnPercent, "stream-warn-percent", bus.DefaultStreamWarnFill*100, "log a warning when the telemetry stream is fuller than this percentage of --stream-max-bytes or --stream-max-msgs (the gauge passerelle.bus.stream.fill says how full)")
}

// Limits parses the flags; its error names the flag to fix.
func (s Stream) Limits() (bus.StreamLimits, error) {
	var l bus.StreamLimits
	var errs []error
	var err error
	if l.MaxBytes, err = parseBytes(s.MaxBytes); err != nil {
		errs = append(errs, fmt.Errorf("--stream-max-bytes: %w", err))
	}
	if l.MaxMsgs, err = parseCount(s.MaxMsgs); err != nil {
		errs = append(errs, fmt.Errorf("--stream-max-msgs: %w", err))
	}
	if l.MaxAge, err = parseAge(s.MaxAge); err != nil {
		errs = append(errs, fmt.Errorf("--stream-max-age: %w", err))
	}
	l.Discard = strings.ToLower(strings.TrimSpace(s.Discard))
	if l.Discard != "" && l.Discard != bus.DiscardOld && l.Discard != bus.DiscardNew {
		errs = append(errs, fmt.Errorf("--stream-discard %q: give old (drop the oldest messages) or new (refuse new ones)", s.Discard))
	}
	if len(errs) == 0 {
		if err := l.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("telemetry stream limits: %w", err))
		}
	}
	if s.WarnPercent <= 0 || s.WarnPercent > 100 {
		errs = append(errs, fmt.Errorf("--stream-warn-percent %g: give a percentage above 0, at most 100", s.WarnPercent))
	}
	return l, errors.Join(errs...)
}

// Validate checks the flags.
func (s Stream) Validate() error {
	_, err := s.Limits()
	return err
}

// BusOptions sets the stream's limits and the watch of its fill on o.
func (s Stream) BusOptions(o *bus.Options) error {
	l, err := s.Limits()
	if err != nil {
		return err
	}
	o.Stream = l
	o.WatchStream = true
	o.StreamWarnFill = s.WarnPercent / 100
	return nil
}

func isNone(v string) bool {
	switch strings.ToLower(v) {
	case "none", "unlimited", "-1":
		return true
	}
	return false
}

// byteUnits are the suffixes parseBytes knows, longest first.
var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// parseBytes reads a size: digits with an optional unit (KiB, MiB, GiB,
// TiB, KB, MB, GB, TB; K, M, G, T are binary). "" is 0 (keep), "none" -1.
func parseBytes(v string) (int64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	if isNone(v) {
		return -1, nil
	}
	num, mult := strings.ToLower(v), int64(1)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 || n*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%q is not a size: give a positive number of bytes with a unit, such as 512MiB or 10GiB, or none", v)
	}
	return int64(n * float64(mult)), nil
}

// parseCount reads a positive count; "" is 0 (keep), "none" -1.
func parseCount(v string) (int64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	if isNone(v) {
		return -1, nil
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(v, "_", ""), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive count: give a number of messages, such as 1000000, or none", v)
	}
	return n, nil
}

// parseAge reads a Go duration, or a number of days ("7d"); "" is 0
// (keep), "none" -1.
func parseAge(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	if isNone(v) {
		return -1, nil
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.ParseFloat(days, 64); err == nil && n > 0 {
			return time.Duration(n * float64(24*time.Hour)), nil
		}
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration: give one such as 36h or 7d, or none", v)
	}
	return d, nil
}
