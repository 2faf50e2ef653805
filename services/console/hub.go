package console

import (
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

// hubMethods are the hub calls the console makes, all read-only: the pool
// page. Nothing else reaches the hub through the admin port.
var hubMethods = map[string]bool{
	"passerelle.hub.v1.Hub/GetPool":      true,
	"passerelle.hub.v1.Hub/ListGateways": true,
}

// maxHubRequestBytes bounds a request body (both requests are empty
// messages).
const maxHubRequestBytes = 1 << 10

// NewHubProxy returns the handler of WithHub: it forwards POST
// /console/hub/passerelle.hub.v1.Hub/{GetPool,ListGateways}, Connect
// unary calls with a JSON body, to the hub at base (http://host:port) with
// the caller's Authorization header, which the hub checks as on its own
// port. Any other path is NOT_FOUND.
func NewHubProxy(logger *slog.Logger, base *url.URL) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			method := strings.TrimPrefix(pr.In.URL.Path, Prefix+"hub/")
			pr.SetURL(base)
			pr.Out.URL.Path = strings.TrimSuffix(base.Path, "/") + "/" + method
			pr.Out.URL.RawPath = ""
			pr.Out.URL.RawQuery = ""
			// Only what a Connect unary call needs goes on.
			keep := http.Header{}
			for _, k := range []string{"Authorization", "Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms"} {
				if v := pr.In.Header.Values(k); len(v) > 0 {
					keep[k] = v
				}
			}
			pr.Out.Header = keep
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			logger.Warn("console: the hub does not answer", "hub", base.Redacted(), "err", err)
			writeJSONError(w, http.StatusBadGateway, "UNAVAILABLE", "the hub does not answer at "+base.Host+": is it running?")
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := strings.TrimPrefix(r.URL.Path, Prefix+"hub/")
		if !hubMethods[method] {
			writeJSONError(w, http.StatusNotFound, "NOT_FOUND", "the console reaches the hub only for GetPool and ListGateways, not "+method)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeJSONError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "hub calls are POST requests (the Connect protocol)")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxHubRequestBytes)
		rp.ServeHTTP(w, r)
	})
}
