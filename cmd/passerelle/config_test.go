package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// --check-config checks what a start would: addresses, database and NATS
// URLs, values from the environment.
func TestCheckConfigChecksAsAStartWould(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // "" = accepted
	}{
		{"defaults", nil, nil, ""},
		{"several MQTT addresses", []string{"--mqtt-addr", "127.0.0.1:8883,127.0.0.1:443", "--mqtt-plain-addr", "127.0.0.1:1883, 127.0.0.1:1884"}, nil, ""},
		{"no MQTT", []string{"--mqtt-addr", ""}, nil, ""},
		{"admin address without a port", []string{"--admin-addr", "bogus"}, nil, `--admin-addr "bogus" is not an address`},
		{"admin port out of range", []string{"--admin-addr", "127.0.0.1:70000"}, nil, "not a number from 0 to 65535"},
		{"one bad MQTT address of two", []string{"--mqtt-addr", "127.0.0.1:8883,nope"}, nil, `--mqtt-addr "nope"`},
		{"hub host that does not resolve", []string{"--pubsub-addr", "", "--hub-addr", "no-such-host.invalid:8090"}, nil, "does not resolve"},
		{"misspelled postgres scheme", []string{"--database-url", "postgress://u@h/db"}, nil, `scheme "postgress://" is not supported: give postgres://`},
		{"mysql", []string{"--database-url", "mysql://u@h/db"}, nil, "a SQLite file path"},
		{"PostgreSQL URL that does not parse", []string{"--database-url", "postgres://u@h:port/db"}, nil, "PostgreSQL URL does not parse"},
		{"NATS URL of another scheme", []string{"--nats-url", "http://127.0.0.1:4222"}, nil, "give nats://host:port"},
		{"boolean from the environment", nil, map[string]string{"PASSERELLE_INSECURE_NO_AUTH": "yes-please"},
			`PASSERELLE_INSECURE_NO_AUTH="yes-please": not a boolean: give true or false`},
		{"address from the environment", nil, map[string]string{"PASSERELLE_ADMIN_ADDR": "bogus"}, "--admin-addr"},
		{"drain and instance id", []string{"--drain", "30s", "--instance-id", "serve-1.example"}, nil, ""},
		{"negative drain", []string{"--drain", "-1s"}, nil, "--drain must not be negative"},
		{"instance id with a space", []string{"--instance-id", "serve 1"}, nil, "--instance-id: instance id \"serve 1\": only ASCII letters"},
		{"instance id from the environment", nil, map[string]string{"PASSERELLE_INSTANCE_ID": "a*b"}, "--instance-id"},
		{"Pub/Sub TLS key without its certificate", []string{"--pubsub-tls-key", "k.pem"}, nil, "--pubsub-tls-cert and --pubsub-tls-key go together"},
		{"Pub/Sub TLS certificate that is not there", []string{"--pubsub-tls-cert", "no-such.pem", "--pubsub-tls-key", "no-such.key"}, nil, "--pubsub-tls-cert: stat no-such.pem"},
		{"stream limits", []string{"--stream-max-bytes", "20GiB", "--stream-max-age", "3d", "--stream-discard", "new"}, nil, ""},
		{"stream size without a number", []string{"--stream-max-bytes", "GiB"}, nil, `--stream-max-bytes: "GiB" is not a size`},
		{"stream discard from the environment", nil, map[string]string{"PASSERELLE_STREAM_DISCARD": "sometimes"}, "--stream-discard \"sometimes\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			args := append([]string{"serve", "--ops-addr", "", "--http-bridge-addr", "", "--check-config", "--data-dir", filepath.Join(t.TempDir(), "d")}, tc.args...)
			code := run(t.Context(), args, &out, config.MapEnv(tc.env))
			if tc.want == "" {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, out.String())
				}
				return
			}
			if code != 2 || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("exit %d, output %q; want exit 2 saying %q", code, out.String(), tc.want)
			}
		})
	}
}

// A misspelled PASSERELLE_* variable is not ignored in silence.
func TestMisspelledEnvironmentVariable(t *testing.T) {
	var out bytes.Buffer
	env := config.MapEnv(map[string]string{
		"PASSERELLE_DATA_DIRR":         "/elsewhere",
		"PASSERELLE_TEST_POSTGRES_URL": "postgres://tests-only", // the tests' own: no warning
	})
	if code := run(t.Context(), []string{"serve", "--ops-addr", "", "--http-bridge-addr", "", "--check-config"}, &out, env); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	want := "passerelle serve: warning: environment variable PASSERELLE_DATA_DIRR is not a setting of passerelle serve and is ignored; did you mean PASSERELLE_DATA_DIR?"
	if !strings.Contains(out.String(), want) {
		t.Errorf("output %q\nwant %q", out.String(), want)
	}
	if strings.Contains(out.String(), "TEST_POSTGRES") {
		t.Errorf("a test variable was warned about: %q", out.String())
	}
}

// A second serve on the same data folder stops at once and names the
// process that holds it.
func TestSecondServeOnOneDataFolder(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	first := startServe(t, noEnv, "serve", "--data-dir", dataDir, "--admin-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--pubsub-addr", "", "--hub-addr", "127.0.0.1:0")

	var out2 bytes.Buffer
	code := run(t.Context(), []string{"serve", "--ops-addr", "", "--http-bridge-addr", "", "--pubsub-addr", "", "--data-dir", dataDir, "--admin-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--hub-addr", "127.0.0.1:0"}, &out2, noEnv)
	want := "is in use by pid " + strconv.Itoa(os.Getpid()) + " (passerelle serve)"
	if code != 1 || !strings.Contains(out2.String(), want) || !strings.Contains(out2.String(), dataDir) {
		t.Fatalf("second serve: exit %d, output %q; want exit 1 saying %q", code, out2.String(), want)
	}
	if strings.Contains(out2.String(), "ready") {
		t.Fatalf("the second serve started: %q", out2.String())
	}
	first.stop(t)
}

// --mqtt-addr and --mqtt-plain-addr take several addresses (Cloud IoT
// Core served 8883 and 443): the bridge answers MQTT on every one.
func TestServeSeveralMQTTAddresses(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	tls1, tls2, plain1, plain2 := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	s := startServe(t, noEnv, "serve", "--data-dir", dataDir, "--admin-addr", "127.0.0.1:0", "--pubsub-addr", "", "--hub-addr", "127.0.0.1:0",
		"--mqtt-addr", tls1+","+tls2, "--mqtt-plain-addr", plain1+","+plain2)
	out := &s.out
	for _, a := range []string{"mqtts://" + tls1, "mqtts://" + tls2, "mqtt://" + plain1, "mqtt://" + plain2} {
		if !strings.Contains(out.String(), a) {
			t.Errorf("the banner does not list %s:\n%s", a, out.String())
		}
	}
	caPEM, err := os.ReadFile(filepath.Join(dataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, a := range []struct {
		addr string
		tls  bool
	}{{tls1, true}, {tls2, true}, {plain1, false}, {plain2, false}} {
		var conn net.Conn
		var err error
		if a.tls {
			conn, err = tls.Dial("tcp", a.addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		} else {
			conn, err = net.Dial("tcp", a.addr)
		}
		if err != nil {
			t.Fatalf("%s: %v", a.addr, err)
		}
		// An MQTT 3.1.1 CONNECT of an unknown device: the bridge answers
		// CONNACK 5 (not authorized), which shows it serves the address.
		if got := connack(t, conn, "projects/p1/locations/us-central1/registries/no-such-registry/devices/nobody"); got != 5 {
			t.Errorf("%s: CONNACK %d, want 5", a.addr, got)
		}
		conn.Close()
	}
	s.stop(t)
}

// --mqtt-addr "" with no plain address turns the bridge off, and with it
// the hub, which reaches devices through the bridge; the admin API serves.
func TestServeWithoutMQTT(t *testing.T) {
	adminAddr := testutil.FreeAddr(t)
	s := startServe(t, noEnv, "serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--admin-addr", adminAddr, "--mqtt-addr", "", "--pubsub-addr", "", "--hub-addr", "127.0.0.1:0")
	out := &s.out
	for _, want := range []string{"MQTT bridge:  off", "hub:          off (it reaches devices through the bridge"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the banner does not say %q:\n%s", want, out.String())
		}
	}
	resp, err := http.Get("http://" + adminAddr + "/v1/projects/p/locations/l/registries")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("admin API without a token: HTTP %d, want 401", resp.StatusCode)
	}
	s.stop(t)
}

// The banner names the store that serve opened: a SQLite file whose name
// starts with "postgres" is SQLite.
func TestServeBannerNamesTheStore(t *testing.T) {
	t.Chdir(t.TempDir())
	s := startServe(t, noEnv, "serve", "--data-dir", "data", "--admin-addr", "127.0.0.1:0", "--mqtt-addr", "",
		"--database-url", "postgres-copy.db")
	if want := "data:         SQLite postgres-copy.db,"; !strings.Contains(s.out.String(), want) {
		t.Errorf("the banner does not say %q:\n%s", want, s.out.String())
	}
	s.stop(t)
}

// connack sends an MQTT 3.1.1 CONNECT for clientID with a password and
// returns the CONNACK's return code.
func connack(t *testing.T, conn net.Conn, clientID string) byte {
	t.Helper()
	var vh bytes.Buffer
	vh.Write([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60}) // user name + password + clean session
	for _, s := range []string{clientID, "unused", "not-a-jwt"} {
		vh.Write([]byte{byte(len(s) >> 8), byte(len(s))})
		vh.WriteString(s)
	}
	pkt := append([]byte{0x10, byte(vh.Len())}, vh.Bytes()...)
	if vh.Len() > 127 {
		t.Fatal("CONNECT too long for this helper")
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatalf("CONNACK: %v", err)
	}
	if buf[0] != 0x20 || buf[1] != 2 {
		t.Fatalf("not a CONNACK: % x", buf)
	}
	return buf[3]
}

// --insecure-no-auth opens the hub as well as the admin API: the banner and
// the log say so.
func TestInsecureNoAuthSaysTheHubIsOpen(t *testing.T) {
	s := startServe(t, noEnv, "serve", "--insecure-no-auth", "--data-dir", filepath.Join(t.TempDir(), "data"),
		"--admin-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--pubsub-addr", "", "--hub-addr", "127.0.0.1:0")
	for _, want := range []string{"the admin API and the hub are open to anyone", "HUB AUTHENTICATION IS OFF", "ADMIN API AUTHENTICATION IS OFF"} {
		if !strings.Contains(s.out.String(), want) {
			t.Errorf("no %q in:\n%s", want, s.out.String())
		}
	}
	s.stop(t)
}
