// Command passerelle-bench is Passerelle's MQTT load generator: it
// provisions devices through the admin API (Google's Go client over gRPC),
// then drives the MQTT bridge, or for comparison a plain MQTT broker such
// as Mosquitto (--plain), through one of four scenarios:
//
//	passerelle-bench connect   [-n 10000] [-c 128]        connects per second
//	passerelle-bench idle      [-n 10000] --target-pid P  target memory per idle connection
//	passerelle-bench telemetry [-d 1000] [--window 4] [-t 10s] [--target-pid P]
//	                                                      QoS 1 events acknowledged per second
//	passerelle-bench config    [-d 1000] [--rate 500] [-t 10s]
//	                                                      config delivery latency
//	passerelle-bench certs     --out DIR                  a test CA and a server certificate
//	passerelle-bench nats-mqtt --mqtt ADDR --store DIR    nats-server's MQTT listener, the durable peer
//	passerelle-bench report    FILE...                    the table of ratios of scenario lines
//
// telemetry --qos 0 sends QoS 0 messages, window at a time, each batch
// followed by a PINGREQ whose PINGRESP says the broker has read them.
// idle --rounds R connects and disconnects every connection R times
// before the measured connect (memory after churn); --baseline-kib gives
// the RSS to measure from (the fresh process's), default the RSS at the
// start of the run. --label names the figure in the report.
//
// Every device shares one RS256 key pair and one signed JWT (aud = the
// project, valid an hour): signing costs ~1 ms, so it is done once per run,
// not per connection. The MQTT client is a minimal MQTT 3.1.1 one (see
// mqtt.go for why not paho). Each scenario prints one table line, or with
// --json one JSON object.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/ops"
)

func main() {
	ctx, stop := ops.SignalContext(context.Background(), os.Stderr, "passerelle-bench", os.Exit, os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// flags of every scenario.
type flags struct {
	mqttAddr, manager, token, tokenFile string
	plain, tls, jsonOut                 bool
	ca, keyFile                         string
	project, location, registry         string
	n, devices, conc, window, size      int
	pid                                 int
	dur, settle, grace                  time.Duration
	rate                                float64
	out                                 string
	name                                string
	label                               string
	qos, rounds                         int
	baseline                            int64
	store, tlsCert, tlsKey              string
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "Usage: passerelle-bench connect|idle|telemetry|config|certs|nats-mqtt [flags]")
	fmt.Fprintln(w, "       passerelle-bench report FILE...")
	fmt.Fprintln(w, "\nLoad scenarios against Passerelle's MQTT bridge (or, with --plain, any MQTT broker).")
	fmt.Fprintln(w)
	fs.PrintDefaults()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f flags
	fs := flag.NewFlagSet("passerelle-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.mqttAddr, "mqtt", "127.0.0.1:1883", "MQTT address of the broker under test")
	fs.StringVar(&f.manager, "manager", "127.0.0.1:8080", "address of Passerelle's admin API (gRPC), for provisioning and configs")
	fs.StringVar(&f.token, "token", "", "admin token (default: none, for a manager run with --insecure-no-auth)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the admin token (such as <data-dir>/admin.token)")
	fs.BoolVar(&f.plain, "plain", false, "a plain MQTT broker (Mosquitto): no provisioning, no JWT, any client id")
	fs.BoolVar(&f.tls, "tls", false, "connect with TLS (give --ca)")
	fs.StringVar(&f.ca, "ca", "", "PEM CA certificate to verify the broker's TLS certificate")
	fs.StringVar(&f.keyFile, "key", "", "the devices' RSA private key (PKCS#8 PEM); made there when missing (default: a new key each run)")
	fs.StringVar(&f.project, "project", "bench", "project id (the JWT audience)")
	fs.StringVar(&f.location, "location", "local", "location id")
	fs.StringVar(&f.registry, "registry", "bench", "registry id")
	fs.IntVar(&f.n, "n", 10000, "connections for connect and idle")
	fs.IntVar(&f.devices, "d", 1000, "devices for telemetry and config")
	fs.IntVar(&f.conc, "c", 128, "concurrent connects")
	fs.IntVar(&f.window, "window", 4, "telemetry: QoS 1 messages in flight per device")
	fs.IntVar(&f.size, "size", 100, "telemetry: payload bytes")
	fs.IntVar(&f.pid, "target-pid", 0, "process id of the broker under test, for its memory and CPU from /proc")
	fs.DurationVar(&f.dur, "t", 10*time.Second, "telemetry and config: how long to send")
	fs.DurationVar(&f.settle, "settle", 5*time.Second, "idle: how long to hold the connections, sampling memory each second")
	fs.DurationVar(&f.grace, "grace", 3*time.Second, "config: how long to wait for late deliveries")
	fs.Float64Var(&f.rate, "rate", 500, "config: ModifyCloudToDeviceConfig calls per second (at most one per device per second)")
	fs.BoolVar(&f.jsonOut, "json", false, "print results as JSON")
	fs.StringVar(&f.out, "out", ".", "certs: folder for ca.pem, server.pem, server.key")
	fs.StringVar(&f.name, "name", "", "name of the target in the report (default passerelle, or mosquitto with --plain)")
	fs.StringVar(&f.label, "label", "", "name of the figure in the report (default the scenario)")
	fs.IntVar(&f.qos, "qos", 1, "telemetry: QoS of the messages, 0 or 1")
	fs.IntVar(&f.rounds, "rounds", 0, "idle: rounds of connecting and disconnecting all connections before the measured connect")
	fs.Int64Var(&f.baseline, "baseline-kib", 0, "idle: RSS (KiB) to measure from, such as the fresh process's (default: the RSS at the start of the run)")
	fs.StringVar(&f.store, "store", "", "nats-mqtt: folder of JetStream's files")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "nats-mqtt: PEM certificate, to serve MQTT over TLS (with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "nats-mqtt: PEM private key")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		usage(stderr, fs)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return 0
		}
		return 2
	}
	scenario := args[0]
	if scenario == "report" {
		if err := report(stdout, args[1:]); err != nil {
			fmt.Fprintf(stderr, "passerelle-bench report: %v\n", err)
			return 1
		}
		return 0
	}
	fs.Usage = func() { usage(stderr, fs) }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	res, err := runScenario(ctx, log, stdout, scenario, f)
	if err != nil {
		fmt.Fprintf(stderr, "passerelle-bench %s: %v\n", scenario, err)
		return 1
	}
	if res != nil {
		if f.label != "" {
			res.Scenario = f.label
		}
		printResult(stdout, res, f.jsonOut)
	}
	return 0
}

func runScenario(ctx context.Context, log *slog.Logger, stdout io.Writer, scenario string, f flags) (*result, error) {
	switch scenario {
	case "certs":
		return nil, writeCerts(f.out)
	case "nats-mqtt":
		return nil, runNATSMQTT(ctx, stdout, f.mqttAddr, f.store, f.tlsCert, f.tlsKey)
	case "connect", "idle", "telemetry", "config":
	default:
		return nil, fmt.Errorf("unknown scenario %q: want connect, idle, telemetry, config, certs, nats-mqtt or report", scenario)
	}
	t := &target{name: f.name, addr: f.mqttAddr, plain: f.plain, project: f.project, location: f.location, registry: f.registry}
	if t.name == "" {
		t.name = "passerelle"
		if f.plain {
			t.name = "mosquitto"
		}
	}
	if f.tls {
		conf, err := clientTLS(f.ca, f.mqttAddr)
		if err != nil {
			return nil, err
		}
		t.tls = conf
		t.name += "/tls"
	}
	devices := f.devices
	if scenario == "connect" || scenario == "idle" {
		devices = f.n
	}
	if devices+64 > fdLimit() {
		return nil, fmt.Errorf("%d connections need more open files than this process may have (%d): run several processes", devices, fdLimit())
	}
	if scenario == "config" && f.plain {
		return nil, errors.New("config needs Passerelle's admin API: it has no --plain form")
	}
	token := f.token
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, err
		}
		token = strings.TrimSpace(string(b))
	}
	if !f.plain {
		admin, err := newAdminClient(ctx, f.manager, token)
		if err != nil {
			return nil, err
		}
		defer admin.Close()
		key, err := loadOrCreateKey(f.keyFile)
		if err != nil {
			return nil, fmt.Errorf("device key: %w", err)
		}
		begin := time.Now()
		if err := provision(ctx, admin, t, key, devices); err != nil {
			return nil, err
		}
		log.Info("provisioned", "devices", devices, "took", time.Since(begin).Round(time.Millisecond))
		if t.jwt, err = signJWT(key, f.project); err != nil {
			return nil, err
		}
		if scenario == "config" {
			return runConfig(ctx, log, t, admin, f.devices, f.conc, f.rate, f.dur, f.grace)
		}
	}
	switch scenario {
	case "connect":
		return runConnect(ctx, log, t, f.n, f.conc, f.pid), nil
	case "idle":
		return runIdle(ctx, log, t, f.n, f.conc, f.pid, f.settle, f.rounds, f.baseline)
	default:
		return runTelemetry(ctx, log, t, f.devices, f.conc, f.window, f.size, f.qos, f.pid, f.dur)
	}
}

// fdLimit is this process's open-file limit.
func fdLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(rl.Cur)
}

func printResult(w io.Writer, r *result, asJSON bool) {
	if asJSON {
		m := map[string]any{"scenario": r.Scenario, "target": r.Target}
		for _, k := range r.keys {
			v := r.vals[k]
			if math.IsNaN(v) || math.IsInf(v, 0) {
				m[k] = nil
				continue
			}
			m[k] = v
		}
		b, _ := json.Marshal(m)
		fmt.Fprintln(w, string(b))
		return
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-16s %-16s", r.Scenario, r.Target)
	for _, k := range r.keys {
		fmt.Fprintf(&sb, " %s=%s", k, format(r.vals[k]))
	}
	fmt.Fprintln(w, sb.String())
}

// clientTLS verifies the broker with the CA in caFile.
func clientTLS(caFile, addr string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: nil}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s: no PEM certificate", caFile)
		}
		conf.RootCAs = pool
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	conf.ServerName = host
	return conf, nil
}

// writeCerts makes a test CA and a server certificate for 127.0.0.1 and
// localhost, both ECDSA P-256: an RSA server key would add ~1 ms of
// server CPU per handshake (design.md), measuring RSA rather than the
// bridge.
func writeCerts(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "passerelle-bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name, typ string
		der       []byte
	}{{"ca.pem", "CERTIFICATE", caDER}, {"server.pem", "CERTIFICATE", srvDER}, {"server.key", "PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			return err
		}
	}
	return nil
}
