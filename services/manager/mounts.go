package manager

import (
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
)

// WithConsole serves the web console h under /console/ on the admin port
// (h sees the full path), and redirects a browser asking for / there. The
// console is a client of the REST API like any other: h gets no access to
// the manager's internals. Default: no console (/console/ is NOT_FOUND).
func WithConsole(h http.Handler) Option {
	return func(o *options) { o.console = h }
}

// WithPubSubREST also serves the Pub/Sub REST API h on the admin port, for
// the paths /v1/projects/{project}/topics, /subscriptions and /snapshots
// (and below), which the DeviceManager's /v1/projects/{project}/locations/
// paths never clash with; h checks the token itself, and a call without
// one is refused here first (unless WithInsecureNoAuth), whatever h allows
// on its own port. The console reads live telemetry through it from its own
// origin. Default: not served here.
func WithPubSubREST(h http.Handler) Option {
	return func(o *options) { o.pubsubREST = h }
}

// consolePath is where WithConsole serves the console.
const consolePath = "/console/"

// mounts routes the console and the Pub/Sub REST API ahead of the manager's
// own HTTP handler (next), by path alone.
type mounts struct {
	console, pubsub, next http.Handler
	// pubsubNeedsToken refuses Pub/Sub calls that carry no Authorization
	// header before they reach the Pub/Sub API: one started with
	// --pubsub-allow-unauthenticated serves those on its own port, never
	// through the admin port (unless the admin API is open too).
	pubsubNeedsToken bool
}

func (m *mounts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case m.console != nil && (p == "/console" || strings.HasPrefix(p, consolePath)):
		m.console.ServeHTTP(w, r)
	case m.console != nil && p == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		http.Redirect(w, r, consolePath, http.StatusFound)
	case m.pubsub != nil && isPubSubPath(p):
		if m.pubsubNeedsToken && len(r.Header.Values("Authorization")) == 0 {
			closeUnread(w, r)
			_, problem := bearerToken(nil)
			writeGoogleError(w, codes.Unauthenticated, problem, nil)
			return
		}
		m.pubsub.ServeHTTP(w, r)
	default:
		m.next.ServeHTTP(w, r)
	}
}

// isPubSubPath reports whether p is a Pub/Sub REST v1 path:
// /v1/projects/{project}/{topics|subscriptions|snapshots}[/...|:verb].
func isPubSubPath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/v1/projects/")
	if !ok {
		return false
	}
	_, rest, ok = strings.Cut(rest, "/")
	if !ok {
		return false
	}
	coll, _, _ := strings.Cut(rest, "/")
	coll, _, _ = strings.Cut(coll, ":")
	return coll == "topics" || coll == "subscriptions" || coll == "snapshots"
}
