package config_test

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/config"
)

func flags() *flag.FlagSet {
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("data-dir", "", "")
	fs.String("database-url", "", "")
	fs.Bool("insecure-no-auth", false, "")
	fs.Int("max-connections", 1, "")
	fs.Duration("drain", time.Second, "")
	return fs
}

func TestUnknownEnv(t *testing.T) {
	env := config.MapEnv(map[string]string{
		"PASSERELLE_DATA_DIR":      "ok",    // known
		"PASSERELLE_DATABSE_URL":   "typo",  // one letter off
		"PASSERELLE_MAX_CONNS":     "far",   // not close to anything
		"PASSERELLE_TEST_NATS_URL": "tests", // the tests' own
		"HOME":                     "/root", // not ours
	})
	got := config.UnknownEnv(flags(), env)
	if len(got) != 2 {
		t.Fatalf("warnings %q, want 2", got)
	}
	if !strings.Contains(got[0], "PASSERELLE_DATABSE_URL is not a setting of bridge") || !strings.HasSuffix(got[0], "did you mean PASSERELLE_DATABASE_URL?") {
		t.Errorf("warning %q", got[0])
	}
	if !strings.Contains(got[1], "PASSERELLE_MAX_CONNS") || strings.Contains(got[1], "did you mean") || !strings.Contains(got[1], "--help") {
		t.Errorf("warning %q: no close name, so none suggested", got[1])
	}
}

func TestApplyEnvSaysWhatAFlagAccepts(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"PASSERELLE_INSECURE_NO_AUTH", "yes-please", `PASSERELLE_INSECURE_NO_AUTH="yes-please": not a boolean: give true or false`},
		{"PASSERELLE_MAX_CONNECTIONS", "many", "not a whole number"},
		{"PASSERELLE_DRAIN", "30", "not a duration: give a number with a unit"},
	} {
		fs := flags()
		env := config.MapEnv(map[string]string{tc.name: tc.value})
		err := config.ApplyEnv(fs, env.LookupEnv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: %v, want %q", tc.name, tc.value, err, tc.want)
		}
	}
}

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.1:8080", ""},
		{":8883", ""},
		{"[::1]:0", ""},
		{"127.0.0.1:00", ""}, // as net.Listen reads it, like 0080
		{"localhost:443", ""},
		{"bogus", "is not an address"},
		{"127.0.0.1:", "is not a number"},
		{"127.0.0.1:http", "is not a number"},
		{"127.0.0.1:65536", "is not a number"},
		{"no-such-host.invalid:1", "does not resolve"},
	} {
		err := config.CheckAddr("--x", tc.addr)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckAddr(%q) = %v, want %q", tc.addr, err, tc.want)
		}
	}
	if got := config.SplitAddrs(" a:1, ,b:2,"); len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Errorf("SplitAddrs = %q", got)
	}
	if got := config.SplitAddrs(""); got != nil {
		t.Errorf(`SplitAddrs("") = %q, want none`, got)
	}
}

func TestCheckNATSURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"nats://127.0.0.1:4222", ""},
		{"nats://a:4222,nats://b:4222", ""},
		{"tls://user:secret@h:4222", ""},
		{"http://h:4222", "give nats://"},
		{"nats://", "has no host"},
		{"nats://user:secret@h:4222,http://user:secret@x", "give nats://"},
	} {
		err := config.CheckNATSURL("--nats-url", tc.url)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckNATSURL(%q) = %v, want %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("a password reached the error: %v", err)
		}
	}
}
