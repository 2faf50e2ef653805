// Command bridge serves Passerelle's MQTT protocol bridge alone: devices
// and gateways connect with Cloud IoT Core's MQTT protocol (compat-spec
// sections 6 and 7), over TLS 1.2+ and, when asked, plain TCP.
//
//	bridge --tls-cert cert.pem --tls-key key.pem [--mqtt-addr 127.0.0.1:8883] [--mqtt-plain-addr ADDR]
//	       [--http-bridge-addr ADDR] [--data-dir ./passerelle-data] [--database-url postgres://...]
//	       [--nats-url nats://...] [--instance-id ID] [--drain 30s] [--ops-addr ADDR [--pprof]]
//
// --http-bridge-addr also serves Cloud IoT's HTTP device bridge
// (publishEvent, setState, getConfig) over TLS with the same certificate.
//
// The bridge reads devices from the same database as the manager and meets
// it on the NATS bus. Without --nats-url it runs an embedded NATS server,
// which lives in this process: a manager in another process can only share
// it when the bridge serves it on a port (--nats-listen 127.0.0.1:4222,
// and --nats-url nats://127.0.0.1:4222 on the manager). Otherwise give both
// the same external NATS server (nats-server -js).
//
// Several bridges on one NATS server or cluster (and one database) keep
// one connection per device between them: a device that connects to one
// bridge loses its connection to any other, as on one bridge. Each names
// itself with --instance-id in what it records and logs. With --drain, a
// bridge told to stop sheds its connections over that period, so that
// they move to the others without a storm.
//
// --ops-addr serves /healthz and /readyz for load balancers and /metrics
// for Prometheus (off by default), and with --pprof net/http/pprof; --nats-replicas sets the JetStream replica count (default: 1 on
// a single server, 3 on a cluster). The first SIGINT or SIGTERM stops the
// bridge gracefully; a second one stops it at once.
//
// Every flag may also be set by environment, PASSERELLE_<FLAG> (for example
// PASSERELLE_TLS_CERT); a flag on the command line wins.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/cluster"
	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/ops"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/telemetry"
	"github.com/passerelle-iot/passerelle/services/bridge"
)

func main() {
	ctx, stop := ops.SignalContext(context.Background(), os.Stderr, "bridge", os.Exit, os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr, config.OSEnv())
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stderr io.Writer, env config.Env) int {
	cfg, err := loadConfig(args, stderr, env)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bridge: %s\n", config.OneLine(err))
		return 2
	}
	if cfg.CheckConfig {
		fmt.Fprintln(stderr, "bridge: configuration OK")
		return 0
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err := serve(ctx, logger, cfg); err != nil {
		fmt.Fprintf(stderr, "bridge: %s\n", config.OneLine(err))
		return 1
	}
	// Logged once everything is closed: the process exits right after.
	logger.Info("bridge stopped")
	return 0
}

// loadConfig reads flags, then the environment for flags not given, and
// validates the result.
func loadConfig(args []string, stderr io.Writer, env config.Env) (config.Bridge, error) {
	var cfg config.Bridge
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := config.Parse(fs, args, stderr, env,
		"Usage: bridge [flags]\n\nServes Passerelle's MQTT bridge (Cloud IoT Core's MQTT protocol for devices and gateways)."); err != nil {
		return cfg, err
	}
	errs := []error{cfg.Validate(), sqlstore.CheckURL(cfg.Database())}
	if cfg.InstanceID != "" {
		if err := cluster.CheckInstanceID(cfg.InstanceID); err != nil {
			errs = append(errs, fmt.Errorf("--instance-id: %w", err))
		}
	}
	return cfg, errors.Join(errs...)
}

// serve runs the bridge until ctx is done.
func serve(ctx context.Context, logger *slog.Logger, cfg config.Bridge) error {
	instance := cfg.InstanceID
	if instance == "" {
		instance = cluster.NewInstanceID()
	}
	logger = logger.With("instance", instance)
	stopTelemetry, metrics, err := telemetry.Start(ctx, logger, "passerelle-bridge")
	if err != nil {
		return err
	}
	defer stopTelemetry()

	var tlsCfg *tls.Config
	if len(config.SplitAddrs(cfg.MQTTAddr))+len(config.SplitAddrs(cfg.HTTPBridgeAddr)) > 0 {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("load the TLS certificate and key (--tls-cert, --tls-key): %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	// Listen before opening the database and the bus: a busy port is the
	// likelier mistake, and it is cheaper to find.
	var lis, httpLis []net.Listener
	var opsLis net.Listener
	closeAll := func() {
		for _, l := range append(lis, httpLis...) {
			_ = l.Close()
		}
		if opsLis != nil {
			_ = opsLis.Close()
		}
	}
	for _, l := range []struct{ flag, addrs string }{{"--mqtt-addr", cfg.MQTTAddr}, {"--mqtt-plain-addr", cfg.MQTTPlainAddr}} {
		for _, addr := range config.SplitAddrs(l.addrs) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				closeAll()
				return fmt.Errorf("cannot listen on %s: %w (is another bridge running? choose another %s)", addr, err, l.flag)
			}
			if l.flag == "--mqtt-addr" {
				ln = tls.NewListener(ln, tlsCfg)
			}
			lis = append(lis, ln)
			logger.Info("MQTT listening", "addr", ln.Addr().String(), "tls", l.flag == "--mqtt-addr")
		}
	}

	for _, addr := range config.SplitAddrs(cfg.HTTPBridgeAddr) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("cannot listen on %s: %w (choose another --http-bridge-addr)", addr, err)
		}
		httpLis = append(httpLis, tls.NewListener(ln, tlsCfg))
	}
	if cfg.OpsAddr != "" {
		if opsLis, err = net.Listen("tcp", cfg.OpsAddr); err != nil {
			closeAll()
			return fmt.Errorf("cannot listen on %s: %w (choose another --ops-addr)", cfg.OpsAddr, err)
		}
	}

	if err := cfg.PrepareDataDir(); err != nil {
		closeAll()
		return err
	}
	st, err := sqlstore.Open(ctx, logger, cfg.Database())
	if err != nil {
		closeAll()
		return fmt.Errorf("cannot open the database %s: %w (check --database-url)", config.RedactURL(cfg.Database()), err)
	}
	defer st.Close()

	busOpts := bus.Options{URL: cfg.NATSURL, ListenAddr: cfg.NATSListen, Name: "passerelle-bridge", Replicas: cfg.NATSReplicas}
	// This process writes the telemetry: it sets the stream's limits and
	// watches how full the stream is (Validate has checked the flags).
	if err := cfg.Stream.BusOptions(&busOpts); err != nil {
		closeAll()
		return err
	}
	if cfg.NATSURL == "" {
		busOpts.DataDir = cfg.NATSDir()
	}
	b, err := bus.Open(ctx, logger, busOpts)
	if err != nil {
		closeAll()
		return fmt.Errorf("cannot open the bus: %w", err)
	}
	defer b.Close()
	if srv := b.Server(); srv != nil && cfg.NATSListen != "" {
		logger.Info("embedded NATS serving TCP clients", "url", srv.ClientURL())
	}

	// One connection per device across the bridges sharing this NATS
	// (and the same rule, on one bridge, on the embedded server).
	// The bucket's replicas: 1 until the bus says how many its streams
	// have (issue 9).
	presence, err := newPresence(ctx, logger, b, instance, b.Replicas())
	if err != nil {
		closeAll()
		return err
	}
	defer presence.Close()

	br := bridge.New(logger, st, b,
		bridge.WithPresence(presence),
		bridge.WithDrain(cfg.Drain),
		bridge.WithMessageRate(cfg.MessageRate, cfg.MessageBurst),
		bridge.WithByteRate(cfg.ByteRate),
		bridge.WithMaxConnections(cfg.MaxConnections),
		bridge.WithMaxPendingConnections(cfg.MaxPendingConnections),
		bridge.WithMaxPendingPerAddress(cfg.MaxPendingPerAddress),
	)
	health := ops.NewHealth(logger)
	health.Add("database", st.Ping)
	health.Add("nats", b.Ready)
	// Shared by every bridge: reported, not counted against readiness.
	health.AddDegraded("jetstream", b.StreamReady)
	// (*bridge.Bridge).Ready: not ready while it drains.
	if r, ok := any(br).(ops.Readier); ok {
		health.AddReadier("bridge", r)
	}
	stopOps := ops.Run(health, ops.NewServer(logger, health, ops.WithMetrics(metrics), ops.WithPprof(cfg.Pprof)), opsLis)
	g, gctx := errgroup.WithContext(ctx)
	// Serve returns once ctx ends and every device connection is closed.
	g.Go(func() error { return br.Serve(gctx, lis...) })
	if len(httpLis) > 0 {
		g.Go(func() error { return br.ServeHTTPBridge(gctx, httpLis...) })
	}
	g.Go(func() error {
		<-gctx.Done()
		health.Drain() // not ready from the first signal on
		return nil
	})
	err = g.Wait()
	return errors.Join(err, stopOps())
}

// newPresence starts the cluster-wide record of the connections this
// bridge holds, on the bus's NATS connection.
func newPresence(ctx context.Context, logger *slog.Logger, b *bus.Bus, instance string, replicas int) (*cluster.Presence, error) {
	js, err := jetstream.New(b.Conn())
	if err != nil {
		return nil, fmt.Errorf("cannot use JetStream for presence: %w", err)
	}
	p, err := cluster.NewPresence(ctx, logger, js, instance, replicas)
	if err != nil {
		return nil, fmt.Errorf("cannot start presence: %w", err)
	}
	return p, nil
}
