package manager

import (
	"net/http"
	"strings"

	"google.golang.org/grpc/status"
)

// WithConsole serves the web console h under /console/ on the admin port
// (h sees the full path), and redirects a browser asking for / there. The
// console is a client of the REST API like any other: h gets no access to
// the manager's internals. Its files are public; its calls to other
// services, under /console/hub/, must carry a token of the admin API
// (unless WithInsecureNoAuth) before h sees them. Default: no console
// (/console/ is NOT_FOUND).
func WithConsole(h http.Handler) Option {
	return func(o *options) { o.console = h }
}

// WithPubSubREST also serves the Pub/Sub REST API h on the admin port, for
// the paths /v1/projects/{project}/topics, /subscriptions and /snapshots
// (and below), which the DeviceManager's /v1/projects/{project}/locations/
// paths never clash with. A call must first carry a token of the admin
// API (unless WithInsecureNoAuth), whatever h allows on its own port (such
// as tokenless emulator clients); h then checks the token's role itself.
// The console reads live telemetry through it from its own origin.
// Default: not served here.
func WithPubSubREST(h http.Handler) Option {
	return func(o *options) { o.pubsubREST = h }
}

// consolePath is where WithConsole serves the console, and
// consoleProxyPath where it forwards calls to other services (the hub).
const (
	consolePath      = "/console/"
	consoleProxyPath = consolePath + "hub/"
)

// mounts routes the console and the Pub/Sub REST API ahead of the manager's
// own HTTP handler (next), by path alone.
type mounts struct {
	console, pubsub, next http.Handler
	// auth authenticates the calls that leave the manager (the Pub/Sub
	// API, the console's hub proxy) with the admin API's tokens before
	// they go on: a Pub/Sub API started with --pubsub-allow-unauthenticated
	// serves tokenless calls on its own port, never through the admin port,
	// and a hub open to anyone is not opened by the admin port either.
	auth *authorizer
}

func (m *mounts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case m.console != nil && strings.HasPrefix(p, consoleProxyPath):
		if m.authenticated(w, r) {
			m.console.ServeHTTP(w, r)
		}
	case m.console != nil && (p == "/console" || strings.HasPrefix(p, consolePath)):
		m.console.ServeHTTP(w, r)
	case m.console != nil && p == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		http.Redirect(w, r, consolePath, http.StatusFound)
	case m.pubsub != nil && isPubSubPath(p):
		if m.authenticated(w, r) {
			m.pubsub.ServeHTTP(w, r)
		}
	default:
		m.next.ServeHTTP(w, r)
	}
}

// authenticated checks r's token against the admin API's tokens (any
// role: the service behind checks the role its method needs), and answers
// UNAUTHENTICATED itself when it fails.
func (m *mounts) authenticated(w http.ResponseWriter, r *http.Request) bool {
	if err := m.auth.checkHTTP(r, ""); err != nil {
		closeUnread(w, r)
		st := status.Convert(err)
		writeGoogleError(w, st.Code(), st.Message(), nil)
		return false
	}
	return true
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
