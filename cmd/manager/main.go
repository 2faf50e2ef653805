// Command manager serves Passerelle's admin API alone: Cloud IoT Core's
// google.cloud.iot.v1.DeviceManager over gRPC and REST/JSON v1 on one port,
// with gRPC health and reflection.
//
//	manager [--listen 127.0.0.1:8080] [--data-dir ./passerelle-data] [--database-url postgres://...] [--tokens-file FILE] [--pubsub-addr ADDR]
//	        [--nats-url nats://...] [--nats-replicas N] [--ops-addr 127.0.0.1:9090]
//
// With --nats-url the manager announces config, device and command changes
// on that NATS server (the bridges' bus); without it, it runs with no bus,
// and bridges learn of changes only when they re-read the store. Any number
// of managers may share one database and one NATS behind a load balancer:
// a change made through one is seen through every other at once.
//
// --ops-addr serves /healthz and /readyz for load balancers (off by
// default). The first SIGINT or SIGTERM stops the manager gracefully; a
// second one stops it at once.
//
// Without --tokens-file the admin API is still closed: the first start makes
// an admin token in <data-dir>/admin.token (mode 0600) and says where it is.
//
// Every flag may also be set by environment, PASSERELLE_<FLAG> (for example
// PASSERELLE_DATABASE_URL); a flag on the command line wins.
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
	"net/url"
	"os"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/ops"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/telemetry"
	"github.com/passerelle-iot/passerelle/services/console"
	"github.com/passerelle-iot/passerelle/services/manager"
	"github.com/passerelle-iot/passerelle/services/pubsub"
)

func main() {
	ctx, stop := ops.SignalContext(context.Background(), os.Stderr, "manager", os.Exit, os.Interrupt, syscall.SIGTERM)
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
		fmt.Fprintf(stderr, "manager: %s\n", config.OneLine(err))
		return 2
	}
	if cfg.CheckConfig {
		fmt.Fprintln(stderr, "manager: configuration OK")
		return 0
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err := serve(ctx, logger, cfg); err != nil {
		fmt.Fprintf(stderr, "manager: %s\n", config.OneLine(err))
		return 1
	}
	// Logged once everything is closed: the process exits right after.
	logger.Info("manager stopped")
	return 0
}

// managerConfig is config.Manager plus the flags only this binary has.
type managerConfig struct {
	config.Manager
	// NATSURL is the NATS server the manager announces changes on; empty
	// means no bus.
	NATSURL string
	// NATSReplicas is the JetStream replica count (0: picked).
	NATSReplicas int
	// OpsAddr serves /healthz and /readyz; empty: off.
	OpsAddr string
	// Pprof serves net/http/pprof on OpsAddr.
	Pprof bool
	// PubSub is the Pub/Sub API on the bus's stream (needs NATSURL).
	PubSub config.PubSub
	// ConsoleHubURL is the hub the console's pool page reads (http://host:port);
	// empty: no pool page.
	ConsoleHubURL string
}

// loadConfig reads flags, then the environment for flags not given, and
// validates the result.
func loadConfig(args []string, stderr io.Writer, env config.Env) (managerConfig, error) {
	var cfg managerConfig
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	cfg.AddFlags(fs)
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "NATS server to announce changes on, for bridges (for example nats://127.0.0.1:4222; default: no bus)")
	config.AddNATSReplicasFlag(fs, &cfg.NATSReplicas)
	config.AddOpsAddrFlag(fs, &cfg.OpsAddr, "")
	config.AddPprofFlag(fs, &cfg.Pprof)
	cfg.PubSub.AddFlags(fs, "")
	fs.StringVar(&cfg.ConsoleHubURL, "console-hub-url", "", "the hub the console's pool page reads, http://host:port of its --hub-addr (default: no pool page)")
	if err := config.Parse(fs, args, stderr, env, "Usage: manager [flags]\n\nServes Passerelle's admin API (gRPC and REST on one port)."); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

// validate checks what a start would, without opening anything.
func (c *managerConfig) validate() error {
	errs := []error{c.Validate(), sqlstore.CheckURL(c.Database()), config.CheckOpsAddr(c.OpsAddr), config.CheckPprof(c.Pprof, c.OpsAddr), config.CheckNATSReplicas(c.NATSReplicas, c.NATSURL)}
	if c.NATSURL != "" {
		errs = append(errs, config.CheckNATSURL("--nats-url", c.NATSURL))
	}
	errs = append(errs, c.PubSub.Validate())
	if c.ConsoleHubURL != "" {
		if u, err := url.Parse(c.ConsoleHubURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--console-hub-url %q: want http://host:port (the hub's address)", c.ConsoleHubURL))
		}
	}
	if c.PubSub.Addr != "" && c.NATSURL == "" {
		errs = append(errs, errors.New("--pubsub-addr serves the telemetry stream of the bus: give --nats-url too"))
	}
	return errors.Join(errs...)
}

// serve runs the manager until ctx is done.
func serve(ctx context.Context, logger *slog.Logger, cfg managerConfig) error {
	stopTelemetry, metrics, err := telemetry.Start(ctx, logger, "passerelle-manager")
	if err != nil {
		return err
	}
	defer stopTelemetry()

	var opts []manager.Option
	var psopts []pubsub.Option
	if cfg.PubSub.AllowUnauthenticated || cfg.InsecureNoAuth {
		psopts = append(psopts, pubsub.WithAllowUnauthenticated())
	}
	switch {
	case cfg.InsecureNoAuth:
		opts = append(opts, manager.WithInsecureNoAuth())
	case cfg.TokensFile != "":
		tokens, err := adminauth.LoadTokensFile(cfg.TokensFile)
		if err != nil {
			return fmt.Errorf("load the tokens file: %w (fix the line, or give another --tokens-file)", err)
		}
		opts = append(opts, manager.WithTokens(tokens))
		psopts = append(psopts, pubsub.WithTokens(tokens))
	default:
		b, err := adminauth.Bootstrap(cfg.DataDir)
		if err != nil {
			return fmt.Errorf("admin tokens in %s: %w (fix or remove that file; a new admin token is made when it is missing)", cfg.DataDir, err)
		}
		if b.Created {
			logger.Info("first start: made an admin token; send it as 'authorization: Bearer <token>'", "token_file", b.AdminTokenFile, "tokens_file", b.TokensFile)
		} else {
			logger.Info("admin tokens loaded", "tokens_file", b.TokensFile, "tokens", b.Tokens)
		}
		opts = append(opts, manager.WithTokens(b.Tokens))
		psopts = append(psopts, pubsub.WithTokens(b.Tokens))
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("load the TLS certificate and key (--tls-cert, --tls-key): %w", err)
		}
		opts = append(opts, manager.WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	}

	// Listen before opening the database: a busy port is the likelier
	// mistake, and it is cheaper to find.
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (is another manager running? choose another --listen)", cfg.Listen, err)
	}
	var opsLis net.Listener
	if cfg.OpsAddr != "" {
		if opsLis, err = net.Listen("tcp", cfg.OpsAddr); err != nil {
			lis.Close()
			return fmt.Errorf("cannot listen on %s: %w (choose another --ops-addr)", cfg.OpsAddr, err)
		}
	}
	var psLis net.Listener
	if cfg.PubSub.Addr != "" {
		if psLis, err = net.Listen("tcp", cfg.PubSub.Addr); err != nil {
			lis.Close()
			if opsLis != nil {
				opsLis.Close()
			}
			return fmt.Errorf("cannot listen on %s: %w (choose another --pubsub-addr)", cfg.PubSub.Addr, err)
		}
	}
	closeAll := func() {
		lis.Close()
		if opsLis != nil {
			opsLis.Close()
		}
		if psLis != nil {
			psLis.Close()
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
	health := ops.NewHealth(logger)
	health.Add("database", st.Ping)
	var psSrv *pubsub.Server
	if cfg.NATSURL != "" {
		b, err := bus.Open(ctx, logger, bus.Options{URL: cfg.NATSURL, Name: "passerelle-manager", Replicas: cfg.NATSReplicas})
		if err != nil {
			closeAll()
			return fmt.Errorf("cannot connect to NATS at %s: %w (check --nats-url)", config.RedactURL(cfg.NATSURL), err)
		}
		defer b.Close()
		opts = append(opts, manager.WithBus(b))
		health.Add("nats", b.Ready)
		if psLis != nil {
			if lister, ok := st.(pubsub.TopicLister); ok {
				psopts = append(psopts, pubsub.WithRegistryTopics(lister.NotificationTopics))
			}
			psTLS, err := cfg.PubSub.TLSConfig()
			if err != nil {
				closeAll()
				return err
			}
			psopts = append(psopts, pubsub.WithTLS(psTLS)) // nil: plaintext
			if psSrv, err = pubsub.New(logger, b, psopts...); err != nil {
				closeAll()
				return err
			}
			logger.Info("Pub/Sub API", "addr", config.PubSubNote(psLis.Addr().String(), cfg.PubSub.TLSCert != "", cfg.PubSub.AllowUnauthenticated || cfg.InsecureNoAuth))
		}
	}

	// The console, on the admin port, with the Pub/Sub REST API beside it
	// for its live page and, given a hub, the hub's pool page.
	var copts []console.Option
	if cfg.ConsoleHubURL != "" {
		u, _ := url.Parse(cfg.ConsoleHubURL) // validated
		copts = append(copts, console.WithHub(console.NewHubProxy(logger, u)))
	}
	ui, err := console.New(logger, copts...)
	if err != nil {
		closeAll()
		return err
	}
	opts = append(opts, manager.WithConsole(ui))
	if psSrv != nil {
		opts = append(opts, manager.WithPubSubREST(psSrv.RESTHandler()))
	}
	srv := manager.New(logger, st, opts...)
	health.AddReadier("manager", srv)
	stopOps := ops.Run(health, ops.NewServer(logger, health, ops.WithMetrics(metrics), ops.WithPprof(cfg.Pprof)), opsLis)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx, lis) })
	if psSrv != nil {
		g.Go(func() error { return psSrv.Serve(gctx, psLis) })
	}
	g.Go(func() error {
		<-gctx.Done()
		health.Drain() // not ready from the first signal on
		return nil
	})
	err = g.Wait()
	return errors.Join(err, stopOps())
}
