// Package console serves Passerelle's web console: a single-page app
// (TypeScript, Preact, built by Vite from web/ into dist/, which is
// committed and embedded here) under /console/ on the manager's admin
// port. The console reads and changes everything through the public REST
// APIs on the same origin, with the user's admin token; this package only
// serves its files, with the security headers a page holding a token
// needs, and (WithHub) a read-only path to the hub's pool view.
package console

import (
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
)

//go:embed all:dist
var dist embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console/"

// securityHeaders go on every response of the console: no script or style
// but its own files, no framing, no referrer (the URL names resources).
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	"X-Frame-Options":        "DENY",
	"X-Content-Type-Options": "nosniff",
	"Referrer-Policy":        "no-referrer",
}

type options struct {
	hub http.Handler
}

// Option configures the console's handler.
type Option func(*options)

// WithHub serves the hub's pool page: h answers the console's read-only
// calls under /console/hub/ (NewHubProxy). Default: none, and the pool page
// says the hub is not reachable from this admin port.
func WithHub(h http.Handler) Option { return func(o *options) { o.hub = h } }

// Handler serves the console. It expects full request paths (/console/...):
// files of dist/ by their path, index.html for every other path under
// /console/ (the app's own routes, such as
// /console/projects/p/locations/l/registries/r), and 404 for a missing file
// with an extension, so a stale asset is not answered with HTML.
type Handler struct {
	logger *slog.Logger
	files  fs.FS
	index  []byte
	hub    http.Handler
}

// New returns the console's handler. It fails only when the embedded build
// is missing index.html (a build that was not run: make console).
func New(logger *slog.Logger, opts ...Option) (*Handler, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	files, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil, err
	}
	index, err := fs.ReadFile(files, "index.html")
	if err != nil {
		return nil, errMissingBuild
	}
	return &Handler{logger: logger, files: files, index: index, hub: o.hub}, nil
}

type consoleError string

func (e consoleError) Error() string { return string(e) }

const errMissingBuild = consoleError("console: the embedded build has no index.html: run make console and rebuild")

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		return
	}
	rel, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if strings.HasPrefix(rel, "hub/") {
		if h.hub == nil {
			writeJSONError(w, http.StatusNotFound, "NOT_FOUND", "the hub is not reachable from this admin port: passerelle serve runs it with --hub-addr (cmd/manager: --console-hub-url)")
			return
		}
		h.hub.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the console's files are read with GET", http.StatusMethodNotAllowed)
		return
	}
	rel = path.Clean("/" + rel)[1:]
	if rel != "" && rel != "index.html" {
		if f, err := h.files.Open(rel); err == nil {
			st, err := f.Stat()
			f.Close()
			if err == nil && !st.IsDir() {
				if strings.HasPrefix(rel, "assets/") {
					// Vite names these by content hash: they never change.
					w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
				} else {
					w.Header().Set("Cache-Control", "no-cache")
				}
				http.ServeFileFS(w, r, h.files, rel)
				return
			}
		}
		if path.Ext(rel) != "" {
			w.Header().Set("Cache-Control", "no-cache")
			http.NotFound(w, r)
			return
		}
	}
	// The app's routes: index.html, revalidated every time so that a new
	// build's asset names are picked up at once.
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(h.index)
}

// writeJSONError answers in Google's JSON error shape, which the console
// reads from every API.
func writeJSONError(w http.ResponseWriter, code int, status, msg string) {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
