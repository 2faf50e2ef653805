package config

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/bus"
)

func TestStreamLimitsFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bus.StreamLimits
		err  string // "" = accepted
	}{
		{nil, bus.StreamLimits{}, ""},
		{[]string{"--stream-max-bytes", "512MiB", "--stream-max-msgs", "1_000_000", "--stream-max-age", "7d", "--stream-discard", "New"},
			bus.StreamLimits{MaxBytes: 512 << 20, MaxMsgs: 1000000, MaxAge: 7 * 24 * time.Hour, Discard: bus.DiscardNew}, ""},
		{[]string{"--stream-max-bytes", "2GB", "--stream-max-age", "36h", "--stream-discard", "old"},
			bus.StreamLimits{MaxBytes: 2e9, MaxAge: 36 * time.Hour, Discard: bus.DiscardOld}, ""},
		{[]string{"--stream-max-bytes", "none", "--stream-max-msgs", "none", "--stream-max-age", "none"},
			bus.StreamLimits{MaxBytes: -1, MaxMsgs: -1, MaxAge: -1}, ""},
		{[]string{"--stream-max-bytes", "1.5G"}, bus.StreamLimits{MaxBytes: 3 << 29}, ""},
		{[]string{"--stream-max-bytes", "lots"}, bus.StreamLimits{}, `--stream-max-bytes: "lots" is not a size`},
		{[]string{"--stream-max-bytes", "1000"}, bus.StreamLimits{}, "at least 1 MiB"},
		{[]string{"--stream-max-msgs", "0"}, bus.StreamLimits{}, `--stream-max-msgs: "0" is not a positive count`},
		{[]string{"--stream-max-age", "a week"}, bus.StreamLimits{}, `--stream-max-age: "a week" is not a duration`},
		{[]string{"--stream-discard", "oldest"}, bus.StreamLimits{}, `--stream-discard "oldest": give old`},
		{[]string{"--stream-warn-percent", "120"}, bus.StreamLimits{}, "--stream-warn-percent 120"},
	} {
		var s Stream
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		s.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		got, err := s.Limits()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: error %v, want one saying %q", tc.args, err, tc.err)
		case tc.err == "" && got != tc.want:
			t.Errorf("%v: %+v, want %+v", tc.args, got, tc.want)
		}
	}
}

func TestStreamBusOptions(t *testing.T) {
	s := Stream{MaxBytes: "64MiB", WarnPercent: 90}
	var o bus.Options
	if err := s.BusOptions(&o); err != nil {
		t.Fatal(err)
	}
	if o.Stream.MaxBytes != 64<<20 || !o.WatchStream || o.StreamWarnFill != 0.9 {
		t.Errorf("bus options %+v", o)
	}
}
