package config

import (
	"errors"
	"flag"
	"fmt"
)

// DefaultServeOpsAddr is the operator address of passerelle serve; the
// separate binaries have none unless given.
const DefaultServeOpsAddr = "127.0.0.1:9090"

// DefaultServeHTTPBridgeAddr is the HTTP device bridge's address in
// passerelle serve; cmd/bridge serves none unless given.
const DefaultServeHTTPBridgeAddr = "127.0.0.1:8443"

// MaxNATSReplicas is JetStream's limit of copies of a stream.
const MaxNATSReplicas = 5

// AddOpsAddrFlag declares --ops-addr on fs, writing into p, with default
// def ("" for off).
func AddOpsAddrFlag(fs *flag.FlagSet, p *string, def string) {
	fs.StringVar(p, "ops-addr", def, `operator HTTP address serving /healthz (200 while the process runs), /readyz (200 when ready for traffic, 503 naming the failing checks) and /metrics (Prometheus), for load balancers, orchestrators and scrapers; "" turns it off`)
}

// AddPprofFlag declares --pprof on fs, writing into p.
func AddPprofFlag(fs *flag.FlagSet, p *bool) {
	fs.BoolVar(p, "pprof", false, "also serve net/http/pprof's profiles on --ops-addr, under /debug/pprof/ (off by default: profiles tell much about the process)")
}

// CheckPprof checks --pprof against --ops-addr, where it is served.
func CheckPprof(pprof bool, opsAddr string) error {
	if pprof && opsAddr == "" {
		return errors.New(`--pprof serves profiles on the operator address: give --ops-addr too (it is "")`)
	}
	return nil
}

// CheckOpsAddr checks --ops-addr; empty is off.
func CheckOpsAddr(addr string) error {
	if addr == "" {
		return nil
	}
	return CheckAddr("--ops-addr", addr)
}

// AddNATSReplicasFlag declares --nats-replicas on fs, writing into p.
func AddNATSReplicasFlag(fs *flag.FlagSet, p *int) {
	fs.IntVar(p, "nats-replicas", 0, fmt.Sprintf("copies JetStream keeps of Passerelle's stream and key-value buckets, 1 to %d (0: 1 on the embedded or a single NATS server, 3 on a cluster); "+
		"a stream made with another count is updated", MaxNATSReplicas))
}

// CheckNATSReplicas checks --nats-replicas against --nats-url: more than
// one copy needs a NATS cluster.
func CheckNATSReplicas(n int, natsURL string) error {
	switch {
	case n < 0 || n > MaxNATSReplicas:
		return fmt.Errorf("--nats-replicas %d: give 1 to %d, or 0 to pick (1 on a single server, 3 on a cluster)", n, MaxNATSReplicas)
	case n > 1 && natsURL == "":
		return errors.New("--nats-replicas above 1 needs a NATS cluster (--nats-url); an embedded NATS server is a single server")
	}
	return nil
}
