package config

import (
	"errors"
	"flag"
	"log/slog"
	"path/filepath"
	"time"
)

// Bridge is the configuration of the MQTT bridge (cmd/bridge, and the
// bridge inside cmd/passerelle).
type Bridge struct {
	// MQTTAddr is the TCP addresses of MQTT over TLS, comma-separated
	// (Cloud IoT Core served 8883 and 443); empty turns it off.
	MQTTAddr string
	// MQTTPlainAddr is the TCP addresses of plain MQTT, comma-separated;
	// empty (the default) turns it off.
	MQTTPlainAddr string
	// TLSCert and TLSKey are PEM files, required with MQTTAddr.
	TLSCert, TLSKey string
	// DataDir holds the SQLite database (unless DatabaseURL names another
	// place) and the embedded NATS server's storage.
	DataDir string
	// DatabaseURL is a SQLite file path or a postgres:// URL; empty means
	// DataDir/passerelle.db.
	DatabaseURL string
	// NATSURL names an external NATS server or cluster (with JetStream);
	// empty runs an embedded one storing in DataDir/nats.
	NATSURL string
	// NATSListen makes the embedded NATS server accept TCP clients (a
	// manager in another process) on this address; empty: in-process only.
	NATSListen string
	// NATSReplicas is the JetStream replica count; 0 picks (1 on a single
	// server, 3 on a cluster).
	NATSReplicas int
	// Stream are the telemetry stream's limits.
	Stream Stream
	// HTTPBridgeAddr is the TCP addresses of the HTTP device bridge over
	// TLS (the certificate of --tls-cert), comma-separated; empty (the
	// default): off.
	HTTPBridgeAddr string
	// OpsAddr serves /healthz, /readyz and /metrics; empty (the
	// default): off.
	OpsAddr string
	// Pprof serves net/http/pprof on OpsAddr.
	Pprof bool
	// MessageRate and MessageBurst limit the packets per second of each
	// connection; ByteRate the bytes per second of each device, each way.
	// 0 removes a limit (MessageBurst 0: one second's worth).
	MessageRate  float64
	MessageBurst int
	ByteRate     int64
	// ConnLimits are the connection limits.
	ConnLimits
	// Cluster are the settings of a bridge among others.
	Cluster
	// LogLevel is the least level logged.
	LogLevel slog.Level
	// CheckConfig asks to validate the configuration and exit.
	CheckConfig bool
}

// Defaults of Bridge.
const (
	DefaultMQTTAddr             = "127.0.0.1:8883"
	DefaultMessageRate          = 100
	DefaultByteRate             = 512 << 10
	DefaultMaxConnections       = 19000
	DefaultMaxPendingPerAddress = 128
)

// ConnLimits are the MQTT bridge's connection limits, flags of cmd/bridge
// and of passerelle serve (services/bridge's WithMaxConnections,
// WithMaxPendingConnections and WithMaxPendingPerAddress).
type ConnLimits struct {
	// MaxConnections caps the connections held at once.
	MaxConnections int
	// MaxPendingConnections caps the connections waiting to authenticate;
	// 0 means a quarter of MaxConnections.
	MaxPendingConnections int
	// MaxPendingPerAddress caps the connections waiting to authenticate
	// from one address; 0 removes the limit.
	MaxPendingPerAddress int
}

// AddFlags declares the limits' flags on fs, writing into l.
func (l *ConnLimits) AddFlags(fs *flag.FlagSet) {
	fs.IntVar(&l.MaxConnections, "max-connections", DefaultMaxConnections,
		"MQTT connections held at once, authenticated or not; keep it under the open-file limit (ulimit -n), or the bridge lowers it to 95% of that limit")
	fs.IntVar(&l.MaxPendingConnections, "max-pending-connections", 0,
		"MQTT connections waiting to authenticate (TLS handshake, CONNECT, JWT) at once; past it new ones are closed at once (0: a quarter of --max-connections)")
	fs.IntVar(&l.MaxPendingPerAddress, "max-pending-per-address", DefaultMaxPendingPerAddress,
		"MQTT connections waiting to authenticate from one address (IPv6: one /64); past it new ones from that address are closed at once. "+
			"Connected devices do not count, so a site behind one NAT address may hold any number (0: no limit, for a bridge behind a TCP proxy)")
}

// Validate checks the limits.
func (l *ConnLimits) Validate() error {
	var errs []error
	if l.MaxConnections <= 0 {
		errs = append(errs, errors.New("--max-connections must be positive"))
	}
	if l.MaxPendingConnections < 0 {
		errs = append(errs, errors.New("--max-pending-connections must not be negative (0: a quarter of --max-connections)"))
	}
	if l.MaxPendingPerAddress < 0 {
		errs = append(errs, errors.New("--max-pending-per-address must not be negative (0 removes the limit)"))
	}
	return errors.Join(errs...)
}

// Cluster are the MQTT bridge's settings as one of several, flags of
// cmd/bridge and of passerelle serve.
type Cluster struct {
	// InstanceID names this process in presence records and logs; empty:
	// a new one at each start (pkg/cluster's NewInstanceID). The binary
	// checks it (cluster.CheckInstanceID).
	InstanceID string
	// Drain is the period over which the bridge sheds its connections
	// when told to stop; 0 closes them at once.
	Drain time.Duration
}

// AddFlags declares the cluster settings' flags on fs, writing into c.
func (c *Cluster) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.InstanceID, "instance-id", "", "name of this process among the bridges sharing NATS, in presence records and logs: "+
		"letters, digits, '-', '_' and '.', unique at any time (default <hostname>-<8 random hex digits>, new at each start)")
	fs.DurationVar(&c.Drain, "drain", 0, "when told to stop (SIGTERM, SIGINT), report not ready, stop accepting and close the MQTT connections "+
		"spread over this period, so that devices reconnect to other bridges without a storm, such as 30s (0: close them all at once)")
}

// Validate checks the cluster settings.
func (c *Cluster) Validate() error {
	if c.Drain < 0 {
		return errors.New("--drain must not be negative (0 stops at once)")
	}
	return nil
}

// AddFlags declares the bridge's flags on fs, writing into b.
func (b *Bridge) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&b.MQTTAddr, "mqtt-addr", DefaultMQTTAddr, `addresses of MQTT over TLS 1.2+, comma-separated, such as 0.0.0.0:8883,0.0.0.0:443 (needs --tls-cert and --tls-key); "" turns it off`)
	fs.StringVar(&b.MQTTPlainAddr, "mqtt-plain-addr", "", "addresses of plain MQTT without TLS, comma-separated (off unless given; tests, or behind a TLS-terminating proxy)")
	fs.StringVar(&b.TLSCert, "tls-cert", "", "PEM certificate chain of the TLS listener (with --tls-key)")
	fs.StringVar(&b.TLSKey, "tls-key", "", "PEM private key of the TLS listener (with --tls-cert)")
	fs.StringVar(&b.DataDir, "data-dir", DefaultDataDir, "folder of the SQLite database and the embedded NATS server's storage")
	fs.StringVar(&b.DatabaseURL, "database-url", "", "SQLite file path, or postgres://user@host/db URL (default <data-dir>/passerelle.db)")
	fs.StringVar(&b.NATSURL, "nats-url", "", "external NATS server or cluster with JetStream, e.g. nats://127.0.0.1:4222 (default: an embedded server storing in <data-dir>/nats)")
	fs.StringVar(&b.NATSListen, "nats-listen", "", "also serve the embedded NATS server on this TCP address (off by default): an embedded server is in-process, "+
		"so a manager in another process can only share it through this port (give the manager --nats-url nats://<this address>)")
	AddNATSReplicasFlag(fs, &b.NATSReplicas)
	b.Stream.AddFlags(fs)
	AddHTTPBridgeAddrFlag(fs, &b.HTTPBridgeAddr, "")
	AddOpsAddrFlag(fs, &b.OpsAddr, "")
	AddPprofFlag(fs, &b.Pprof)
	fs.Float64Var(&b.MessageRate, "message-rate", DefaultMessageRate, "incoming MQTT packets per second allowed on one connection; past it the connection is closed (0: no limit)")
	fs.IntVar(&b.MessageBurst, "message-burst", 0, "packets a connection may send at once above --message-rate (0: one second's worth)")
	fs.Int64Var(&b.ByteRate, "byte-rate", DefaultByteRate, "bytes per second allowed per device, each way (0: no limit)")
	b.ConnLimits.AddFlags(fs)
	b.Cluster.AddFlags(fs)
	fs.TextVar(&b.LogLevel, "log-level", slog.LevelInfo, "least level logged: debug, info, warn or error")
	fs.BoolVar(&b.CheckConfig, "check-config", false, "validate the configuration, open nothing, and exit")
}

// ErrTLSFilesMissing is returned by Validate when the TLS listener is on
// without its certificate and key.
var ErrTLSFilesMissing = errors.New(`the TLS listeners (--mqtt-addr, --http-bridge-addr) need --tls-cert and --tls-key: give them, or serve only plain MQTT with --mqtt-plain-addr ADDR --mqtt-addr ""`)

// AddHTTPBridgeAddrFlag declares --http-bridge-addr on fs, writing into p,
// with default def ("" for off).
func AddHTTPBridgeAddrFlag(fs *flag.FlagSet, p *string, def string) {
	fs.StringVar(p, "http-bridge-addr", def, `addresses of the HTTP device bridge (Cloud IoT's cloudiotdevice v1: publishEvent, setState, getConfig) over TLS with the MQTT certificate, comma-separated; "" turns it off`)
}

// Validate checks what can be checked without opening anything. Its
// errors say what to do.
func (b *Bridge) Validate() error {
	tlsOn := len(SplitAddrs(b.MQTTAddr))+len(SplitAddrs(b.HTTPBridgeAddr)) > 0
	if tlsOn && (b.TLSCert == "" || b.TLSKey == "") {
		// One error alone: it is the mistake of every first start.
		return ErrTLSFilesMissing
	}
	var errs []error
	if !tlsOn && len(SplitAddrs(b.MQTTPlainAddr)) == 0 {
		errs = append(errs, errors.New("no MQTT listener: give --mqtt-addr (TLS) or --mqtt-plain-addr"))
	}
	errs = append(errs, CheckAddrs("--mqtt-addr", b.MQTTAddr), CheckAddrs("--mqtt-plain-addr", b.MQTTPlainAddr), CheckAddrs("--http-bridge-addr", b.HTTPBridgeAddr))
	if b.NATSURL != "" {
		errs = append(errs, CheckNATSURL("--nats-url", b.NATSURL))
	}
	if b.NATSListen != "" {
		errs = append(errs, CheckAddr("--nats-listen", b.NATSListen))
	}
	if b.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is empty: give a folder, such as "+DefaultDataDir))
	}
	if b.NATSURL != "" && b.NATSListen != "" {
		errs = append(errs, errors.New("--nats-listen serves the embedded NATS server, which --nats-url replaces: give one"))
	}
	errs = append(errs, CheckNATSReplicas(b.NATSReplicas, b.NATSURL), b.Stream.Validate(), CheckOpsAddr(b.OpsAddr), CheckPprof(b.Pprof, b.OpsAddr))
	if b.MessageRate < 0 || b.MessageBurst < 0 || b.ByteRate < 0 {
		errs = append(errs, errors.New("--message-rate, --message-burst and --byte-rate must not be negative (0 removes a limit)"))
	}
	if err := b.ConnLimits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := b.Cluster.Validate(); err != nil {
		errs = append(errs, err)
	}
	if tlsOn {
		errs = append(errs, checkFlagFiles(flagFile{"--tls-cert", b.TLSCert}, flagFile{"--tls-key", b.TLSKey})...)
	}
	return errors.Join(errs...)
}

// store returns the database settings as a Manager, whose methods know
// how to read them.
func (b *Bridge) store() *Manager { return &Manager{DataDir: b.DataDir, DatabaseURL: b.DatabaseURL} }

// Database returns the database to open: DatabaseURL, or the SQLite file
// in DataDir.
func (b *Bridge) Database() string { return b.store().Database() }

// PrepareDataDir creates the folder of a SQLite database (mode 0700); it
// does nothing for PostgreSQL.
func (b *Bridge) PrepareDataDir() error { return b.store().PrepareDataDir() }

// NATSDir is the embedded NATS server's storage folder.
func (b *Bridge) NATSDir() string { return filepath.Join(b.DataDir, "nats") }
