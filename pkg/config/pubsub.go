package config

import "flag"

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
}

// AddFlags adds --pubsub-addr (default def) and
// --pubsub-allow-unauthenticated.
func (p *PubSub) AddFlags(fs *flag.FlagSet, def string) {
	fs.StringVar(&p.Addr, "pubsub-addr", def, `address of the Pub/Sub API (google.pubsub.v1, gRPC and REST) on the telemetry stream; "" turns it off`)
	fs.StringVar(&p.Forward, "pubsub-forward", "", "mirror topics to Google Cloud Pub/Sub: projects/P/topics/LOCAL=projects/G/topics/REMOTE, comma-separated")
	fs.StringVar(&p.ForwardCredentials, "pubsub-forward-credentials", "", "service account key file (JSON) --pubsub-forward publishes with (default: Google's application default credentials)")
	fs.BoolVar(&p.AllowUnauthenticated, "pubsub-allow-unauthenticated", false, "accept Pub/Sub calls that carry no token, as Google's clients make them with PUBSUB_EMULATOR_HOST (anyone who reaches the port may then read and publish)")
}

// Validate checks the address.
func (p *PubSub) Validate() error {
	if p.Addr == "" {
		return nil
	}
	return CheckAddr("--pubsub-addr", p.Addr)
}

// PubSubNote is the banner's line for the Pub/Sub API at addr.
func PubSubNote(addr string, open bool) string {
	note := addr + "  (gRPC and REST, google.pubsub.v1; admin tokens"
	if open {
		note += ", and UNAUTHENTICATED calls: PUBSUB_EMULATOR_HOST=" + addr + " works, for anyone who reaches the port"
	}
	return note + ")"
}
