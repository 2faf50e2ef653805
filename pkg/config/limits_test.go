package config_test

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/config"
)

func TestConnLimits(t *testing.T) {
	parse := func(args ...string) (config.ConnLimits, error) {
		var l config.ConnLimits
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		l.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			return l, err
		}
		return l, l.Validate()
	}
	l, err := parse()
	if err != nil || l != (config.ConnLimits{MaxConnections: config.DefaultMaxConnections, MaxPendingPerAddress: config.DefaultMaxPendingPerAddress}) {
		t.Errorf("defaults %+v, %v", l, err)
	}
	if l, err := parse("--max-connections", "10", "--max-pending-connections", "5", "--max-pending-per-address", "0"); err != nil ||
		l != (config.ConnLimits{MaxConnections: 10, MaxPendingConnections: 5}) {
		t.Errorf("set: %+v, %v", l, err)
	}
	for _, args := range [][]string{{"--max-connections", "0"}, {"--max-pending-connections", "-1"}, {"--max-pending-per-address", "-1"}} {
		if _, err := parse(args...); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v, want an error naming %s", args, err, args[0])
		}
	}
}
