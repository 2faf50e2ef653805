// Command passerelle runs Passerelle in one process on embedded defaults:
// the manager (Cloud IoT Core's admin API, gRPC and REST), the MQTT bridge,
// the hub (gateways as a gRPC service), a SQLite database and an in-process
// NATS server with JetStream, all in one data folder. The same services
// scale out as separate processes (cmd/manager, cmd/bridge, cmd/hub) on
// PostgreSQL and a NATS cluster.
//
//	passerelle serve [--data-dir ./passerelle-data] [--admin-addr 127.0.0.1:8080]
//	                 [--mqtt-addr 127.0.0.1:8883] [--mqtt-plain-addr ADDR] [--hub-addr 127.0.0.1:8090] [--pubsub-addr 127.0.0.1:8085]
//	                 [--database-url postgres://...] [--nats-url nats://...] [--insecure-no-auth]
//	                 [--http-bridge-addr 127.0.0.1:8443] [--ops-addr 127.0.0.1:9090 [--pprof]] [--nats-replicas N]
//
// The HTTP device bridge (Cloud IoT's cloudiotdevice v1) is served on
// --http-bridge-addr over TLS with the MQTT bridge's certificate. /healthz,
// /readyz and /metrics (Prometheus) are served on --ops-addr, and with
// --pprof net/http/pprof. The first SIGINT or
// SIGTERM stops everything gracefully; a second one stops at once.
//
// On first start it makes, in the data folder, a development CA (ca.pem,
// the file devices trust) and the bridge's certificate for localhost and
// 127.0.0.1, and an admin token (admin.token, mode 0600). Every flag may
// also be set as PASSERELLE_<FLAG>; a flag on the command line wins.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	gpubsub "cloud.google.com/go/pubsub/v2"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/option"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/cluster"
	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/datadir"
	"github.com/passerelle-iot/passerelle/pkg/devca"
	"github.com/passerelle-iot/passerelle/pkg/iotcli"
	"github.com/passerelle-iot/passerelle/pkg/ops"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/telemetry"
	"github.com/passerelle-iot/passerelle/services/bridge"
	"github.com/passerelle-iot/passerelle/services/console"
	"github.com/passerelle-iot/passerelle/services/hub"
	"github.com/passerelle-iot/passerelle/services/manager"
	"github.com/passerelle-iot/passerelle/services/pubsub"
	"github.com/passerelle-iot/passerelle/services/pubsub/forward"
)

func main() {
	ctx, stop := ops.SignalContext(context.Background(), os.Stderr, "passerelle", os.Exit, os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr, config.OSEnv())
	stop()
	os.Exit(code)
}

const usage = `Usage: passerelle <command> [flags]

Commands:
  serve    run the manager, the MQTT bridge and the hub on embedded defaults
  init     make a data folder's development CA, bridge certificate and admin
           token, for services run separately (docker-compose.yml)
  probe    GET a URL (a service's /readyz) and exit 0 on success: a health
           check for images without curl
  iot      manage registries and devices as gcloud iot did (passerelle iot --help)
  migrate  copy registries, devices, bindings and configs from a Cloud
           IoT-compatible API or a JSON export into Passerelle
  completion bash|zsh|fish
           print a shell completion script
  help     show this help

Run 'passerelle serve --help' for the flags of serve.
`

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer, env config.Env) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if slices.Contains(iotcli.Commands, args[0]) {
		return iotcli.Run(ctx, args, iotcli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: stderr}, env)
	}
	switch args[0] {
	case "serve":
	case "init":
		return runInit(args[1:], stderr)
	case "probe":
		return runProbe(ctx, args[1:], stderr)
	default:
		fmt.Fprintf(stderr, "passerelle: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	cfg, err := loadServeConfig(args[1:], stderr, env)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "passerelle: %s\n", config.OneLine(err))
		return 2
	}
	if cfg.CheckConfig {
		fmt.Fprintln(stderr, "passerelle: configuration OK")
		return 0
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err := serve(ctx, logger, stderr, cfg); err != nil {
		fmt.Fprintf(stderr, "passerelle: %s\n", config.OneLine(err))
		return 1
	}
	// Logged once everything is closed: the process exits right after.
	logger.Info("passerelle stopped")
	return 0
}

// runInit makes the files of a data folder that the services read when
// they run as separate processes: the CA, the bridge's certificate for the
// given hosts, and the admin token. Files that exist are kept.
func runInit(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("passerelle init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", config.DefaultDataDir, "folder to write ca.pem, bridge.pem, bridge.key, admin.token and tokens to")
	hosts := fs.String("hosts", "localhost,127.0.0.1", "comma-separated names and addresses the bridge certificate is valid for")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	certs, err := devca.Ensure(*dataDir, strings.Split(*hosts, ","))
	if err != nil {
		fmt.Fprintf(stderr, "passerelle: %s\n", config.OneLine(err))
		return 1
	}
	tokens, err := adminauth.Bootstrap(*dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "passerelle: %s\n", config.OneLine(err))
		return 1
	}
	fmt.Fprintf(stderr, "CA (devices trust it): %s\nbridge certificate:    %s, %s\nadmin token:           %s\ntokens file:           %s\n",
		certs.CA, certs.ServerCert, certs.ServerKey, tokens.AdminTokenFile, tokens.TokensFile)
	return 0
}

// serveConfig is the configuration of passerelle serve.
type serveConfig struct {
	DataDir        string
	AdminAddr      string
	MQTTAddr       string
	MQTTPlainAddr  string
	HubAddr        string
	PubSub         config.PubSub
	GatewaysFile   string
	DatabaseURL    string
	NATSURL        string
	NATSListen     string
	NATSReplicas   int
	Stream         config.Stream // the telemetry stream's limits
	HTTPBridgeAddr string
	OpsAddr        string
	Pprof          bool
	InsecureNoAuth bool
	LogLevel       slog.Level
	CheckConfig    bool
	Limits         config.ConnLimits // the MQTT bridge's connection limits
	Cluster        config.Cluster    // the MQTT bridge's instance id and drain
}

func loadServeConfig(args []string, stderr io.Writer, env config.Env) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("passerelle serve", flag.ContinueOnError)
	fs.StringVar(&c.DataDir, "data-dir", config.DefaultDataDir, "folder of the database, the embedded NATS, the certificates and the admin token")
	fs.StringVar(&c.AdminAddr, "admin-addr", config.DefaultListen, "address of the admin API (gRPC and REST on one port)")
	fs.StringVar(&c.MQTTAddr, "mqtt-addr", config.DefaultMQTTAddr, `addresses of MQTT over TLS with the data folder's certificate, comma-separated (such as 127.0.0.1:8883,127.0.0.1:443); "" turns it off`)
	fs.StringVar(&c.MQTTPlainAddr, "mqtt-plain-addr", "", "addresses of plain MQTT without TLS, comma-separated (off unless given)")
	fs.StringVar(&c.HubAddr, "hub-addr", "127.0.0.1:8090", `address of the hub API (passerelle.hub.v1.Hub, gRPC); "" turns the hub off`)
	c.PubSub.AddFlags(fs, config.DefaultPubSubAddr)
	fs.StringVar(&c.GatewaysFile, "gateways-file", "", "JSON list of existing gateways and their private key files, for the hub (gateways made with CreateGateway need none)")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL URL (postgres://...) or SQLite path (default <data-dir>/passerelle.db)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "external NATS server or cluster with JetStream (default: embedded, storing in <data-dir>/nats)")
	fs.StringVar(&c.NATSListen, "nats-listen", "", "also serve the embedded NATS on this TCP address, for telemetry consumers and other processes (off by default)")
	config.AddNATSReplicasFlag(fs, &c.NATSReplicas)
	c.Stream.AddFlags(fs)
	config.AddHTTPBridgeAddrFlag(fs, &c.HTTPBridgeAddr, config.DefaultServeHTTPBridgeAddr)
	config.AddOpsAddrFlag(fs, &c.OpsAddr, config.DefaultServeOpsAddr)
	config.AddPprofFlag(fs, &c.Pprof)
	fs.BoolVar(&c.InsecureNoAuth, "insecure-no-auth", false, "serve the admin API and the hub without authentication (local experiments only)")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "least level logged: debug, info, warn or error")
	fs.BoolVar(&c.CheckConfig, "check-config", false, "validate the configuration, open nothing, and exit")
	c.Limits.AddFlags(fs)
	c.Cluster.AddFlags(fs)
	if err := config.Parse(fs, args, stderr, env, "Usage: passerelle serve [flags]\n\nRuns the manager, the MQTT bridge and the hub in one process."); err != nil {
		return c, err
	}
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is empty: give a folder, such as "+config.DefaultDataDir))
	}
	if c.AdminAddr == "" {
		errs = append(errs, errors.New("--admin-addr is empty: give an address, such as "+config.DefaultListen))
	} else {
		errs = append(errs, config.CheckAddr("--admin-addr", c.AdminAddr))
	}
	errs = append(errs,
		config.CheckAddrs("--mqtt-addr", c.MQTTAddr),
		config.CheckAddrs("--mqtt-plain-addr", c.MQTTPlainAddr),
		config.CheckAddrs("--http-bridge-addr", c.HTTPBridgeAddr),
		config.CheckPprof(c.Pprof, c.OpsAddr),
		sqlstore.CheckURL(c.database()))
	if c.HubAddr != "" {
		errs = append(errs, config.CheckAddr("--hub-addr", c.HubAddr))
	}
	errs = append(errs, c.PubSub.Validate())
	if _, err := forward.ParseRoutes(c.PubSub.Forward); err != nil {
		errs = append(errs, fmt.Errorf("--pubsub-forward: %w", err))
	}
	if c.NATSURL != "" {
		errs = append(errs, config.CheckNATSURL("--nats-url", c.NATSURL))
	}
	if c.NATSListen != "" {
		errs = append(errs, config.CheckAddr("--nats-listen", c.NATSListen))
	}
	if c.NATSURL != "" && c.NATSListen != "" {
		errs = append(errs, errors.New("--nats-listen serves the embedded NATS, which --nats-url replaces: give one"))
	}
	errs = append(errs, c.Limits.Validate(), c.Cluster.Validate(), config.CheckOpsAddr(c.OpsAddr), config.CheckNATSReplicas(c.NATSReplicas, c.NATSURL), c.Stream.Validate())
	if c.Cluster.InstanceID != "" {
		if err := cluster.CheckInstanceID(c.Cluster.InstanceID); err != nil {
			errs = append(errs, fmt.Errorf("--instance-id: %w", err))
		}
	}
	return c, errors.Join(errs...)
}

// bridgeOn reports whether serve runs the MQTT bridge: it does when it has
// a listener.
func (c serveConfig) bridgeOn() bool {
	return len(config.SplitAddrs(c.MQTTAddr))+len(config.SplitAddrs(c.MQTTPlainAddr)) > 0
}

// hubOn reports whether serve runs the hub, which reaches its devices
// through the bridge.
func (c serveConfig) hubOn() bool { return c.HubAddr != "" && c.bridgeOn() }

func (c serveConfig) database() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return filepath.Join(c.DataDir, "passerelle.db")
}

// serve runs everything until ctx is done.
func serve(ctx context.Context, logger *slog.Logger, banner io.Writer, cfg serveConfig) error {
	start := time.Now()
	instance := cfg.Cluster.InstanceID
	if instance == "" {
		instance = cluster.NewInstanceID()
	}
	logger = logger.With("instance", instance)
	// One process a data folder: a second serve on it would share the
	// SQLite file and the JetStream folder, and its announcements would
	// never reach the first one's devices.
	dir, err := datadir.Claim(cfg.DataDir, "passerelle serve")
	if err != nil {
		return fmt.Errorf("%w (--data-dir)", err)
	}
	defer dir.Release()
	stopTelemetry, metrics, err := telemetry.Start(ctx, logger, "passerelle")
	if err != nil {
		return err
	}
	defer stopTelemetry()

	// Files of the data folder: the admin token and the certificates.
	var mopts []manager.Option
	var hopts []hub.ServerOption
	var psopts []pubsub.Option
	var adminToken string // the hub's credential for provisioning through the manager
	tokenNote := "NO AUTHENTICATION (--insecure-no-auth): the admin API and the hub are open to anyone who reaches them"
	if cfg.InsecureNoAuth {
		mopts = append(mopts, manager.WithInsecureNoAuth())
		hopts = append(hopts, hub.WithInsecureNoAuth())
		psopts = append(psopts, pubsub.WithAllowUnauthenticated())
		if cfg.hubOn() {
			logger.Warn("HUB AUTHENTICATION IS OFF (--insecure-no-auth): anyone who reaches the hub's port can create gateways and act for their devices")
		}
	} else {
		b, err := adminauth.Bootstrap(cfg.DataDir)
		if err != nil {
			return fmt.Errorf("admin tokens in %s: %w (fix or remove that file; a new admin token is made when it is missing)", cfg.DataDir, err)
		}
		mopts = append(mopts, manager.WithTokens(b.Tokens))
		hopts = append(hopts, hub.WithTokens(b.Tokens))
		psopts = append(psopts, pubsub.WithTokens(b.Tokens))
		if cfg.PubSub.AllowUnauthenticated {
			psopts = append(psopts, pubsub.WithAllowUnauthenticated())
		}
		tokenNote = "admin token:  " + b.AdminTokenFile + "  (send 'authorization: Bearer <token>')"
		raw, err := os.ReadFile(b.AdminTokenFile)
		if err != nil {
			return fmt.Errorf("read the admin token: %w", err)
		}
		adminToken = strings.TrimSpace(string(raw))
	}
	certs, err := devca.Ensure(cfg.DataDir, nil)
	if err != nil {
		return err
	}

	// Listen before opening the database and the bus: a busy port is the
	// likelier mistake, and it is cheaper to find.
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}
	listen := func(flag, addr string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("cannot listen on %s: %w (is Passerelle already running? choose another %s)", addr, err, flag)
		}
		listeners = append(listeners, l)
		return l, nil
	}
	adminLis, err := listen("--admin-addr", cfg.AdminAddr)
	if err != nil {
		return err
	}
	var mqttLis, httpLis []net.Listener
	var mqttNotes, httpNotes []string
	var tlsCfg *tls.Config
	if len(config.SplitAddrs(cfg.MQTTAddr))+len(config.SplitAddrs(cfg.HTTPBridgeAddr)) > 0 {
		pair, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
		if err != nil {
			closeAll()
			return fmt.Errorf("load the bridge certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	if addrs := config.SplitAddrs(cfg.MQTTAddr); len(addrs) > 0 {
		for _, addr := range addrs {
			l, err := listen("--mqtt-addr", addr)
			if err != nil {
				return err
			}
			mqttLis = append(mqttLis, tls.NewListener(l, tlsCfg))
			mqttNotes = append(mqttNotes, "mqtts://"+l.Addr().String())
		}
		mqttNotes[len(mqttNotes)-1] += " (TLS, trust " + certs.CA + ")"
	}
	for _, addr := range config.SplitAddrs(cfg.MQTTPlainAddr) {
		l, err := listen("--mqtt-plain-addr", addr)
		if err != nil {
			return err
		}
		mqttLis = append(mqttLis, l)
		mqttNotes = append(mqttNotes, "mqtt://"+l.Addr().String()+" (plain)")
	}
	if len(mqttNotes) == 0 {
		mqttNotes = append(mqttNotes, `off (--mqtt-addr "" and no --mqtt-plain-addr)`)
	}
	// The HTTP bridge is a front end of the MQTT bridge: on with it.
	for _, addr := range config.SplitAddrs(cfg.HTTPBridgeAddr) {
		if !cfg.bridgeOn() {
			httpNotes = []string{"off (it runs with the MQTT bridge, which is off)"}
			break
		}
		l, err := listen("--http-bridge-addr", addr)
		if err != nil {
			return fmt.Errorf("%w, or --http-bridge-addr \"\" to turn it off", err)
		}
		httpLis = append(httpLis, tls.NewListener(l, tlsCfg))
		httpNotes = append(httpNotes, "https://"+l.Addr().String()+"/v1")
	}
	if len(httpLis) > 0 {
		httpNotes[len(httpNotes)-1] += " (TLS, trust " + certs.CA + ")"
	}
	if len(httpNotes) == 0 {
		httpNotes = append(httpNotes, `off (--http-bridge-addr "")`)
	}
	var hubLis net.Listener
	if cfg.hubOn() {
		if hubLis, err = listen("--hub-addr", cfg.HubAddr); err != nil {
			return err
		}
	}
	var pubsubLis net.Listener
	if cfg.PubSub.Addr != "" {
		if pubsubLis, err = listen("--pubsub-addr", cfg.PubSub.Addr); err != nil {
			return fmt.Errorf("%w, or --pubsub-addr \"\" to turn it off", err)
		}
	}
	var opsLis net.Listener
	if cfg.OpsAddr != "" {
		if opsLis, err = listen("--ops-addr", cfg.OpsAddr); err != nil {
			return fmt.Errorf("%w, or --ops-addr \"\" to turn it off", err)
		}
	}

	st, err := sqlstore.Open(ctx, logger, cfg.database())
	if err != nil {
		closeAll()
		return fmt.Errorf("cannot open the database %s: %w (check --database-url)", config.RedactURL(cfg.database()), err)
	}
	defer st.Close()
	busOpts := bus.Options{URL: cfg.NATSURL, ListenAddr: cfg.NATSListen, Name: "passerelle", Replicas: cfg.NATSReplicas}
	// This process writes the telemetry: it sets the stream's limits and
	// watches how full the stream is (Validate has checked the flags).
	if err := cfg.Stream.BusOptions(&busOpts); err != nil {
		closeAll()
		return err
	}
	if cfg.NATSURL == "" {
		busOpts.DataDir = filepath.Join(cfg.DataDir, "nats")
	}
	b, err := bus.Open(ctx, logger, busOpts)
	if err != nil {
		closeAll()
		return fmt.Errorf("cannot open the bus: %w", err)
	}
	defer b.Close()

	var psSrv *pubsub.Server
	if pubsubLis != nil {
		if lister, ok := st.(pubsub.TopicLister); ok {
			psopts = append(psopts, pubsub.WithRegistryTopics(lister.NotificationTopics))
		}
		psTLS, err := cfg.PubSub.TLSConfig()
		if err != nil {
			closeAll()
			return err
		}
		psopts = append(psopts, pubsub.WithTLS(psTLS)) // nil: plaintext
		psSrv, err = pubsub.New(logger, b, psopts...)
		if err != nil {
			closeAll()
			return err
		}
	}

	// The console, on the admin port: it reads live telemetry through the
	// Pub/Sub REST API and the hub's pool through a read-only proxy, both
	// on the same origin.
	var copts []console.Option
	if hubLis != nil {
		copts = append(copts, console.WithHub(console.NewHubProxy(logger, &url.URL{Scheme: "http", Host: dialable(hubLis.Addr().String())})))
	}
	ui, err := console.New(logger, copts...)
	if err != nil {
		closeAll()
		return err
	}
	mopts = append(mopts, manager.WithConsole(ui))
	if psSrv != nil {
		mopts = append(mopts, manager.WithPubSubREST(psSrv.RESTHandler()))
	}
	mgr := manager.New(logger, st, append(mopts, manager.WithBus(b))...)
	var br *bridge.Bridge
	if len(mqttLis) > 0 {
		// One bridge, but the cluster's code path: the rule of one
		// connection per device goes through the presence bucket here
		// too, with as many replicas as the bus's streams.
		js, err := jetstream.New(b.Conn())
		if err != nil {
			closeAll()
			return fmt.Errorf("cannot use JetStream for presence: %w", err)
		}
		presence, err := cluster.NewPresence(ctx, logger, js, instance, b.Replicas())
		if err != nil {
			closeAll()
			return fmt.Errorf("cannot start presence: %w", err)
		}
		defer presence.Close()
		br = bridge.New(logger, st, b, bridge.WithMaxConnections(cfg.Limits.MaxConnections),
			bridge.WithMaxPendingConnections(cfg.Limits.MaxPendingConnections), bridge.WithMaxPendingPerAddress(cfg.Limits.MaxPendingPerAddress),
			bridge.WithPresence(presence), bridge.WithDrain(cfg.Cluster.Drain))
	}
	var (
		hubSrv  *hub.Server
		hubPool *hub.Pool
	)
	if hubLis != nil {
		// The hub is one replica on the bus, alone unless other hubs
		// share an external NATS (--nats-url).
		js, err := jetstream.New(b.Conn())
		if err != nil {
			closeAll()
			return fmt.Errorf("the hub's JetStream: %w", err)
		}
		leases := cluster.NewLeases(js, logger, instance, b.Replicas())
		defer leases.Close()
		members := cluster.NewMembers(js, logger, instance, b.Replicas())
		defer members.Close()
		replicas := hub.Replicas{Leases: leases, Members: members, Advertise: dialable(hubLis.Addr().String())}
		hubSrv, hubPool, err = newHub(ctx, logger, cfg, certs, adminLis.Addr().String(), mqttLis[0].Addr().String(), adminToken, replicas, hopts)
		if err != nil {
			closeAll()
			return err
		}
	}

	fwd, closeGoogle, err := newForwarder(ctx, logger, b, cfg.PubSub)
	if err != nil {
		closeAll()
		return err
	}
	defer closeGoogle()

	store := "SQLite " + cfg.database()
	if sqlstore.IsPostgresURL(cfg.DatabaseURL) {
		store = "PostgreSQL " + config.RedactURL(cfg.DatabaseURL)
	}
	nats := "embedded, JetStream in " + busOpts.DataDir
	if srv := b.Server(); srv != nil && cfg.NATSListen != "" {
		nats += ", clients at " + srv.ClientURL()
	}
	if cfg.NATSURL != "" {
		nats = config.RedactURL(cfg.NATSURL)
	}
	hubNote := `off (--hub-addr "")`
	switch {
	case hubLis != nil:
		hubNote = hubLis.Addr().String() + "  (gRPC, passerelle.hub.v1.Hub)"
	case cfg.HubAddr != "":
		hubNote = "off (it reaches devices through the bridge, and no MQTT listener is on)"
	}
	pubsubNote := `off (--pubsub-addr "")`
	if pubsubLis != nil {
		pubsubNote = config.PubSubNote(pubsubLis.Addr().String(), cfg.PubSub.TLSCert != "", cfg.PubSub.AllowUnauthenticated || cfg.InsecureNoAuth)
	}
	opsNote := `off (--ops-addr "")`
	if opsLis != nil {
		opsNote = "http://" + opsLis.Addr().String() + "/readyz  (and /healthz, /metrics)"
		if cfg.Pprof {
			opsNote += ", /debug/pprof/"
		}
	}

	health := ops.NewHealth(logger)
	health.Add("database", st.Ping)
	health.Add("nats", b.Ready)
	if br != nil {
		// Shared by every bridge: reported, not counted against readiness.
		health.AddDegraded("jetstream", b.StreamReady)
		// (*bridge.Bridge).Ready: not ready while it drains.
		if r, ok := any(br).(ops.Readier); ok {
			health.AddReadier("bridge", r)
		}
	}
	health.AddReadier("manager", mgr)
	// (*hub.Server).Ready: not ready while it drains.
	if r, ok := any(hubSrv).(ops.Readier); ok && hubSrv != nil {
		health.AddReadier("hub", r)
	}
	stopOps := ops.Run(health, ops.NewServer(logger, health, ops.WithMetrics(metrics), ops.WithPprof(cfg.Pprof)), opsLis)
	defer stopOps()

	fmt.Fprintf(banner, "\nPasserelle is ready (%s)\n  admin API:    %s  (gRPC and REST, Cloud IoT's DeviceManager)\n  console:      http://%s/console/  (sign in with the admin token)\n  %s\n  MQTT bridge:  %s\n  HTTP bridge:  %s\n  hub:          %s\n  Pub/Sub API:  %s\n  readiness:    %s\n  data:         %s, NATS %s\n  stop with Ctrl-C\n\n",
		time.Since(start).Round(time.Millisecond), adminLis.Addr(), dialable(adminLis.Addr().String()), tokenNote, strings.Join(mqttNotes, ", "), strings.Join(httpNotes, ", "), hubNote, pubsubNote, opsNote, store, nats)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		<-gctx.Done()
		health.Drain() // not ready from the first signal on
		return nil
	})
	g.Go(func() error { return mgr.Serve(gctx, adminLis) })
	if psSrv != nil {
		g.Go(func() error { return psSrv.Serve(gctx, pubsubLis) })
	}
	if fwd != nil {
		g.Go(func() error { return fwd.Run(gctx) })
	}
	if br != nil {
		g.Go(func() error { return br.Serve(gctx, mqttLis...) })
		if len(httpLis) > 0 {
			g.Go(func() error { return br.ServeHTTPBridge(gctx, httpLis...) })
		}
	}
	if hubSrv != nil {
		g.Go(func() error { return hubSrv.Serve(gctx, hubLis) })
		g.Go(func() error {
			<-gctx.Done()
			// Detach every device and close the gateway connections
			// while the bridge still serves them.
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return hubPool.Close(cctx)
		})
	}
	err = g.Wait()
	return errors.Join(err, stopOps())
}

// newHub builds the hub on the bridge's first listener and the manager's
// REST API, both in this process but reached as any client would: MQTT (over
// TLS trusting the data folder's CA) and HTTP.
func newHub(ctx context.Context, logger *slog.Logger, cfg serveConfig, certs devca.Files, adminAddr, bridgeAddr, adminToken string, replicas hub.Replicas, opts []hub.ServerOption) (*hub.Server, *hub.Pool, error) {
	keys, err := hub.NewKeys(cfg.GatewaysFile, filepath.Join(cfg.DataDir, "hub-keys"))
	if err != nil {
		return nil, nil, err
	}
	var popts []hub.PoolOption
	if len(config.SplitAddrs(cfg.MQTTAddr)) > 0 { // the hub dials the first listener, TLS when there is one
		caPEM, err := os.ReadFile(certs.CA)
		if err != nil {
			return nil, nil, err
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		popts = append(popts, hub.WithBridgeTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))
	}
	prov, err := hub.DialManager(ctx, "http://"+dialable(adminAddr), adminToken)
	if err != nil {
		return nil, nil, err
	}
	pool := hub.NewPool(logger, dialable(bridgeAddr), keys, append(popts, hub.WithGatewayCheck(prov), hub.WithReplicas(replicas))...)
	return hub.NewServer(logger, hub.NewService(logger, pool, keys, prov), opts...), pool, nil
}

// dialable turns a listening address into one to dial: an unspecified host
// (0.0.0.0, ::) becomes 127.0.0.1, which the bridge's certificate names.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// newForwarder builds the --pubsub-forward routes' forwarder to Google
// Cloud Pub/Sub, or returns nil without routes; closeGoogle closes its
// Google client.
func newForwarder(ctx context.Context, logger *slog.Logger, b *bus.Bus, cfg config.PubSub) (_ *forward.Forwarder, closeGoogle func(), _ error) {
	closeGoogle = func() {}
	routes, err := forward.ParseRoutes(cfg.Forward)
	if err != nil || len(routes) == 0 {
		return nil, closeGoogle, err
	}
	var opts []option.ClientOption
	if cfg.ForwardCredentials != "" {
		opts = append(opts, option.WithAuthCredentialsFile(option.ServiceAccount, cfg.ForwardCredentials))
	}
	project, _, _ := strings.Cut(strings.TrimPrefix(routes[0].To, "projects/"), "/")
	google, err := gpubsub.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, closeGoogle, fmt.Errorf("the Google Cloud Pub/Sub client of --pubsub-forward: %w (check --pubsub-forward-credentials)", err)
	}
	f, err := forward.New(logger, b, google, routes)
	return f, func() { _ = google.Close() }, err
}
