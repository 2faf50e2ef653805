package config_test

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/config"
)

func TestOpsAndReplicaFlags(t *testing.T) {
	parse := func(def string, args ...string) (string, int, error) {
		var addr string
		var n int
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		config.AddOpsAddrFlag(fs, &addr, def)
		config.AddNATSReplicasFlag(fs, &n)
		err := fs.Parse(args)
		return addr, n, err
	}
	if addr, n, err := parse(""); addr != "" || n != 0 || err != nil {
		t.Errorf("defaults: %q %d %v", addr, n, err)
	}
	if addr, _, _ := parse(config.DefaultServeOpsAddr); addr != "127.0.0.1:9090" {
		t.Errorf("serve's default %q", addr)
	}
	if addr, n, _ := parse("", "--ops-addr", ":9091", "--nats-replicas", "3"); addr != ":9091" || n != 3 {
		t.Errorf("set: %q %d", addr, n)
	}
	for _, tc := range []struct {
		n    int
		url  string
		want string
	}{
		{0, "", ""},
		{1, "", ""},
		{3, "nats://a:4222,nats://b:4222", ""},
		{3, "", "needs a NATS cluster (--nats-url)"},
		{6, "nats://a:4222", "give 1 to 5"},
		{-1, "nats://a:4222", "give 1 to 5"},
	} {
		err := config.CheckNATSReplicas(tc.n, tc.url)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckNATSReplicas(%d, %q) = %v, want %q", tc.n, tc.url, err, tc.want)
		}
	}
	if err := config.CheckOpsAddr(""); err != nil {
		t.Errorf("off: %v", err)
	}
	if err := config.CheckOpsAddr("nowhere"); err == nil || !strings.Contains(err.Error(), "--ops-addr") {
		t.Errorf("a bad address: %v", err)
	}
}
