// Command hub serves Passerelle's hub, passerelle.hub.v1.Hub: backend
// services speak for devices through gateways over gRPC, and the hub holds
// one MQTT connection per gateway to the bridge.
//
//	hub [--listen 127.0.0.1:8090] [--bridge 127.0.0.1:8883 --bridge-ca ca.pem | --bridge-plain]
//	    [--gateways-file gateways.json] [--data-dir ./passerelle-data]
//	    [--manager-url http://127.0.0.1:8080] [--manager-token-file FILE]
//	    [--tokens-file FILE | --insecure-no-auth] [--tls-cert FILE --tls-key FILE]
//	    [--nats-url nats://... [--advertise-addr HOST:PORT] [--instance-id ID] [--peer-ca FILE]]
//	    [--drain 30s]
//
// With --nats-url the hub is one replica of several sharing that NATS
// (see hub.WithReplicas): each gateway's connection is held by one replica
// at a time, and calls that reach another are relayed to it at
// --advertise-addr. Without it, the hub runs alone.
//
// --ops-addr serves /healthz and /readyz for load balancers (off by
// default). The first SIGINT or SIGTERM stops the hub gracefully; a second
// one stops it at once.
//
// Every flag may also be set by environment, PASSERELLE_<FLAG>; a flag on
// the command line wins.
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
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/cluster"
	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/ops"
	"github.com/passerelle-iot/passerelle/pkg/telemetry"
	"github.com/passerelle-iot/passerelle/services/hub"
)

func main() {
	ctx, stop := ops.SignalContext(context.Background(), os.Stderr, "hub", os.Exit, os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr, config.OSEnv())
	stop()
	os.Exit(code)
}

// hubConfig is the hub's configuration.
type hubConfig struct {
	Listen           string
	Bridge           string
	BridgeCA         string
	BridgePlain      bool
	GatewaysFile     string
	DataDir          string
	ManagerURL       string
	ManagerTokenFile string
	TokensFile       string
	TLSCert, TLSKey  string
	InsecureNoAuth   bool
	OpsAddr          string
	Pprof            bool
	LogLevel         slog.Level
	CheckConfig      bool
	// Replicas.
	NATSURL       string
	NATSReplicas  int
	AdvertiseAddr string
	InstanceID    string
	PeerCA        string
	Drain         time.Duration
}

func run(ctx context.Context, args []string, stderr io.Writer, env config.Env) int {
	cfg, err := loadConfig(args, stderr, env)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "hub: %s\n", config.OneLine(err))
		return 2
	}
	if cfg.CheckConfig {
		fmt.Fprintln(stderr, "hub: configuration OK")
		return 0
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err := serve(ctx, logger, cfg); err != nil {
		fmt.Fprintf(stderr, "hub: %s\n", config.OneLine(err))
		return 1
	}
	// Logged once everything is closed: the process exits right after.
	logger.Info("hub stopped")
	return 0
}

func loadConfig(args []string, stderr io.Writer, env config.Env) (hubConfig, error) {
	var cfg hubConfig
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8090", "TCP address of the hub's gRPC API")
	fs.StringVar(&cfg.Bridge, "bridge", "127.0.0.1:8883", "host:port of the MQTT bridge (any Cloud IoT Core-compatible one)")
	fs.StringVar(&cfg.BridgeCA, "bridge-ca", "", "CA file the bridge's TLS certificate is checked against (default: the system roots)")
	fs.BoolVar(&cfg.BridgePlain, "bridge-plain", false, "connect to the bridge in plain MQTT, without TLS")
	fs.StringVar(&cfg.GatewaysFile, "gateways-file", "", `JSON file naming existing gateways and their keys: [{"name": "projects/.../devices/gw", "algorithm": "RS256", "private_key_file": "gw.pem"}]`)
	fs.StringVar(&cfg.DataDir, "data-dir", "./passerelle-data", "data folder; the hub's key store is <data-dir>/hub-keys")
	fs.StringVar(&cfg.ManagerURL, "manager-url", "http://127.0.0.1:8080", "admin REST API used to create gateways and to create and bind devices")
	fs.StringVar(&cfg.ManagerTokenFile, "manager-token-file", "", "file holding the bearer token for the admin API (default: <data-dir>/admin.token when it exists)")
	fs.StringVar(&cfg.TokensFile, "tokens-file", "", "tokens file authenticating the hub's callers (the manager's format; default: <data-dir>/tokens)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate for the hub's API")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS key for the hub's API")
	fs.BoolVar(&cfg.InsecureNoAuth, "insecure-no-auth", false, "let every call through unauthenticated (local development only)")
	config.AddOpsAddrFlag(fs, &cfg.OpsAddr, "")
	config.AddPprofFlag(fs, &cfg.Pprof)
	fs.TextVar(&cfg.LogLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.BoolVar(&cfg.CheckConfig, "check-config", false, "check the configuration and exit")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "NATS server or cluster (with JetStream) the hub replicas share; empty: the hub runs alone")
	config.AddNATSReplicasFlag(fs, &cfg.NATSReplicas)
	fs.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "", "host:port at which the other replicas reach this one's API (default: --listen, unless its host is 0.0.0.0 or ::)")
	fs.StringVar(&cfg.InstanceID, "instance-id", "", "this replica's id in leases and logs, unique per start (default: <hostname>-<8 random hex>)")
	fs.StringVar(&cfg.PeerCA, "peer-ca", "", "CA file the other replicas' TLS certificates are checked against, with --tls-cert (default: the system roots)")
	fs.DurationVar(&cfg.Drain, "drain", 0, "on SIGTERM, drain for this long before stopping: not ready, gateways handed to the other replicas, callers' streams ended gradually (0: stop at once)")
	if err := config.Parse(fs, args, stderr, env, "Usage: hub [flags]\n\nServes Passerelle's hub API (passerelle.hub.v1.Hub)."); err != nil {
		return cfg, err
	}
	if err := config.CheckAddr("--listen", cfg.Listen); err != nil {
		return cfg, err
	}
	if err := errors.Join(config.CheckOpsAddr(cfg.OpsAddr), config.CheckPprof(cfg.Pprof, cfg.OpsAddr)); err != nil {
		return cfg, err
	}
	if _, _, err := net.SplitHostPort(cfg.Bridge); err != nil {
		return cfg, fmt.Errorf("--bridge %q: want host:port", cfg.Bridge)
	}
	if cfg.BridgePlain && cfg.BridgeCA != "" {
		return cfg, errors.New("--bridge-plain and --bridge-ca exclude each other")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return cfg, errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.ManagerURL != "" {
		if u, err := url.Parse(cfg.ManagerURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, fmt.Errorf("--manager-url %q: want http(s)://host:port", cfg.ManagerURL)
		}
	}
	if cfg.Drain < 0 {
		return cfg, fmt.Errorf("--drain %s: want a duration of 0 or more", cfg.Drain)
	}
	if cfg.NATSURL == "" {
		for name, v := range map[string]string{"--advertise-addr": cfg.AdvertiseAddr, "--peer-ca": cfg.PeerCA} {
			if v != "" {
				return cfg, fmt.Errorf("%s is for replicas: give --nats-url too", name)
			}
		}
		return cfg, nil
	}
	if err := errors.Join(config.CheckNATSURL("--nats-url", cfg.NATSURL), config.CheckNATSReplicas(cfg.NATSReplicas, cfg.NATSURL)); err != nil {
		return cfg, err
	}
	if cfg.PeerCA != "" && cfg.TLSCert == "" {
		return cfg, errors.New("--peer-ca is for replicas serving TLS: give --tls-cert and --tls-key too")
	}
	if cfg.AdvertiseAddr == "" {
		if host, _, _ := net.SplitHostPort(cfg.Listen); host == "" || net.ParseIP(host).IsUnspecified() {
			return cfg, fmt.Errorf("--advertise-addr is required with --nats-url when --listen %q is on every interface: give the address the other replicas reach this one at", cfg.Listen)
		}
	} else if err := checkAdvertise(cfg.AdvertiseAddr); err != nil {
		return cfg, err
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = cluster.NewInstanceID()
	} else if err := cluster.CheckInstanceID(cfg.InstanceID); err != nil {
		return cfg, fmt.Errorf("--instance-id: %w", err)
	}
	return cfg, nil
}

// checkAdvertise checks an address to be dialed: host:port, a host, a
// port that is not 0.
func checkAdvertise(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || port == "0" {
		return fmt.Errorf("--advertise-addr %q: give the host:port the other replicas dial, such as hub-1.internal:8090", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("--advertise-addr %q: %s is no address to dial", addr, host)
	}
	return nil
}

func serve(ctx context.Context, logger *slog.Logger, cfg hubConfig) error {
	stopTelemetry, metrics, err := telemetry.Start(ctx, logger, "passerelle-hub")
	if err != nil {
		return err
	}
	defer stopTelemetry()
	keys, err := hub.NewKeys(cfg.GatewaysFile, filepath.Join(cfg.DataDir, "hub-keys"))
	if err != nil {
		return err
	}
	var poolOpts []hub.PoolOption
	if !cfg.BridgePlain {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.BridgeCA != "" {
			pem, err := os.ReadFile(cfg.BridgeCA)
			if err != nil {
				return fmt.Errorf("--bridge-ca: %w", err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--bridge-ca %s: no PEM certificate", cfg.BridgeCA)
			}
			tc.RootCAs = roots
		}
		poolOpts = append(poolOpts, hub.WithBridgeTLS(tc))
	}
	var prov hub.Provisioner
	if cfg.ManagerURL != "" {
		tokFile := cfg.ManagerTokenFile
		if tokFile == "" {
			if p := filepath.Join(cfg.DataDir, "admin.token"); fileExists(p) {
				tokFile = p
			}
		}
		var token string
		if tokFile != "" {
			b, err := os.ReadFile(tokFile)
			if err != nil {
				return fmt.Errorf("--manager-token-file: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
		mp, err := hub.DialManager(ctx, cfg.ManagerURL, token)
		if err != nil {
			return err
		}
		prov = mp
		// A gateway deleted through the admin API is dropped with its
		// key, not reconnected.
		poolOpts = append(poolOpts, hub.WithGatewayCheck(mp))
	}

	var sopts []hub.ServerOption
	switch {
	case cfg.InsecureNoAuth:
		logger.Warn("the hub API is open to anyone (--insecure-no-auth)")
		sopts = append(sopts, hub.WithInsecureNoAuth())
	default:
		tf := cfg.TokensFile
		if tf == "" {
			tf = filepath.Join(cfg.DataDir, "tokens")
		}
		tokens, err := adminauth.LoadTokensFile(tf)
		if err != nil {
			return fmt.Errorf("load the tokens file: %w (give --tokens-file, or --insecure-no-auth for local development)", err)
		}
		sopts = append(sopts, hub.WithTokens(tokens))
	}
	var peerTLS *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("load the TLS certificate and key (--tls-cert, --tls-key): %w", err)
		}
		sopts = append(sopts, hub.WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
		// The other replicas serve TLS too: relays dial them over it.
		peerTLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.PeerCA != "" {
			pem, err := os.ReadFile(cfg.PeerCA)
			if err != nil {
				return fmt.Errorf("--peer-ca: %w", err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--peer-ca %s: no PEM certificate", cfg.PeerCA)
			}
			peerTLS.RootCAs = roots
		}
	}
	sopts = append(sopts, hub.WithDrain(cfg.Drain))
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	defer lis.Close()
	var opsLis net.Listener
	if cfg.OpsAddr != "" {
		if opsLis, err = net.Listen("tcp", cfg.OpsAddr); err != nil {
			return fmt.Errorf("cannot listen on %s: %w (choose another --ops-addr)", cfg.OpsAddr, err)
		}
	}
	health := ops.NewHealth(logger)
	if cfg.NATSURL != "" {
		advertise := cfg.AdvertiseAddr
		if advertise == "" {
			advertise = lis.Addr().String() // --listen names a host: the port may have been 0
		}
		b, err := bus.Open(ctx, logger, bus.Options{URL: cfg.NATSURL, Name: "passerelle-hub " + cfg.InstanceID, Replicas: cfg.NATSReplicas})
		if err != nil {
			if opsLis != nil {
				opsLis.Close()
			}
			return err
		}
		defer b.Close()
		health.Add("nats", b.Ready)
		js, err := jetstream.New(b.Conn())
		if err != nil {
			return fmt.Errorf("--nats-url: %w", err)
		}
		leases := cluster.NewLeases(js, logger, cfg.InstanceID, b.Replicas())
		defer leases.Close()
		members := cluster.NewMembers(js, logger, cfg.InstanceID, b.Replicas())
		defer members.Close()
		poolOpts = append(poolOpts, hub.WithReplicas(hub.Replicas{Leases: leases, Members: members, Advertise: advertise, PeerTLS: peerTLS}))
		logger = logger.With("instance", cfg.InstanceID)
		logger.Info("hub: a replica", "nats", config.RedactURL(cfg.NATSURL), "advertise", advertise)
	}
	pool := hub.NewPool(logger, cfg.Bridge, keys, poolOpts...)
	srv := hub.NewServer(logger, hub.NewService(logger, pool, keys, prov), sopts...)
	// (*hub.Server).Ready: not ready while it drains, or while a replica
	// cannot reach NATS.
	health.AddReadier("hub", srv)
	stopOps := ops.Run(health, ops.NewServer(logger, health, ops.WithMetrics(metrics), ops.WithPprof(cfg.Pprof)), opsLis)
	logger.Info("hub serving", "listen", lis.Addr().String(), "bridge", cfg.Bridge, "gateways", len(keys.List()))
	closePool := func() error {
		// Detach every device and close the gateway connections (in a
		// cluster, releasing their leases); open streams end with
		// UNAVAILABLE.
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return pool.Close(cctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := srv.Serve(gctx, lis)
		if cfg.Drain > 0 {
			// The drain handed the gateways over and ended the streams.
			err = errors.Join(err, closePool())
		}
		return err
	})
	g.Go(func() error {
		<-gctx.Done()
		health.Drain() // not ready from the first signal on
		if cfg.Drain == 0 {
			return closePool()
		}
		return nil
	})
	err = g.Wait()
	return errors.Join(err, stopOps())
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
