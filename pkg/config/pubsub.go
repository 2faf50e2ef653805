package config

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
)

// DefaultPubSubAddr is where the Pub/Sub API listens by default: the port
// of Google's emulator, which PUBSUB_EMULATOR_HOST users expect.
const DefaultPubSubAddr = "127.0.0.1:8085"

// PubSub configures the Pub/Sub API (google.pubsub.v1 on JetStream), in
// passerelle serve and cmd/manager.
type PubSub struct {
	// Addr of the API (gRPC and REST on one port); "" turns it off.
	Addr string
	// AllowUnauthenticated serves calls without credentials, as Google's
	// clients make them when PUBSUB_EMULATOR_HOST is set.
	AllowUnauthenticated bool
	// Forward mirrors topics to Google Cloud Pub/Sub:
	// "projects/p/topics/local=projects/g/topics/remote,...".
	Forward string
	// ForwardCredentials is the service account key file Forward
	// publishes with (default: Google's application default credentials).
	ForwardCredentials string
	// TLSCert and TLSKey are PEM files: the API over TLS (gRPC over h2
	// and REST over HTTPS) instead of plaintext; both or neither.
	TLSCert, TLSKey string
}

// AddFlags adds --pubsub-addr (default def) and
// --pubsub-allow-unauthenticated.
func (p *PubSub) AddFlags(fs *flag.FlagSet, def string) {
	fs.StringVar(&p.Addr, "pubsub-addr", def, `address of the Pub/Sub API (google.pubsub.v1, gRPC and REST) on the telemetry stream; "" turns it off`)
	fs.StringVar(&p.Forward, "pubsub-forward", "", "mirror topics to Google Cloud Pub/Sub: projects/P/topics/LOCAL=projects/G/topics/REMOTE, comma-separated")
	fs.StringVar(&p.ForwardCredentials, "pubsub-forward-credentials", "", "service account key file (JSON) --pubsub-forward publishes with (default: Google's application default credentials)")
	fs.StringVar(&p.TLSCert, "pubsub-tls-cert", "", "PEM certificate chain: serve the Pub/Sub API over TLS (with --pubsub-tls-key; PUBSUB_EMULATOR_HOST clients speak plaintext and need it off)")
	fs.StringVar(&p.TLSKey, "pubsub-tls-key", "", "PEM private key of --pubsub-tls-cert")
	fs.BoolVar(&p.AllowUnauthenticated, "pubsub-allow-unauthenticated", false, "accept Pub/Sub calls that carry no token, as Google's clients make them with PUBSUB_EMULATOR_HOST (anyone who reaches the port may then read and publish)")
}

// Validate checks the address and the TLS files.
func (p *PubSub) Validate() error {
	var errs []error
	if p.Addr != "" {
		errs = append(errs, CheckAddr("--pubsub-addr", p.Addr))
	}
	if (p.TLSCert == "") != (p.TLSKey == "") {
		errs = append(errs, errors.New("--pubsub-tls-cert and --pubsub-tls-key go together: give both or neither"))
	}
	errs = append(errs, checkFlagFiles(flagFile{"--pubsub-tls-cert", p.TLSCert}, flagFile{"--pubsub-tls-key", p.TLSKey})...)
	return errors.Join(errs...)
}

// TLSConfig loads the certificate and key: nil, nil without them.
func (p *PubSub) TLSConfig() (*tls.Config, error) {
	if p.TLSCert == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(p.TLSCert, p.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load the Pub/Sub TLS certificate and key (--pubsub-tls-cert, --pubsub-tls-key): %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// PubSubNote is the banner's line for the Pub/Sub API at addr, over TLS
// or not, open to calls without a token or not.
func PubSubNote(addr string, tlsOn, open bool) string {
	note := addr + "  (gRPC and REST, google.pubsub.v1; admin tokens"
	if tlsOn {
		note = addr + "  (TLS: gRPC and HTTPS REST, google.pubsub.v1; admin tokens"
	}
	switch {
	case open && tlsOn:
		note += ", and unauthenticated calls, for anyone who reaches the port"
	case open:
		note += ", and UNAUTHENTICATED calls: PUBSUB_EMULATOR_HOST=" + addr + " works, for anyone who reaches the port"
	}
	return note + ")"
}
