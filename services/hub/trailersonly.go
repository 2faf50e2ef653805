package hub

import (
	"net/http"
	"strings"
)

// trailersOnly is the http.ResponseWriter of a gRPC call served through
// net/http (grpc.Server.ServeHTTP). gRPC's handler transport always sends
// a call's headers before its status, even for a call that fails before
// any message; gRPC clients retry (by their service config) only a call
// answered Trailers-Only, that is with the status in the one and only
// HEADERS frame. trailersOnly holds the headers back until the first
// message: a call that ends without one is answered Trailers-Only, as
// gRPC's own HTTP/2 server does, and the hub's retry policy works the
// same on every transport.
//
// It is used by one goroutine at a time: ServeHTTP's.
type trailersOnly struct {
	w       http.ResponseWriter
	code    int
	started bool // headers sent
}

func (t *trailersOnly) Header() http.Header { return t.w.Header() }

func (t *trailersOnly) WriteHeader(code int) {
	if t.started {
		t.w.WriteHeader(code)
		return
	}
	t.code = code
}

func (t *trailersOnly) Write(p []byte) (int, error) {
	t.start()
	return t.w.Write(p)
}

// Flush sends what was written; before the first message it waits.
func (t *trailersOnly) Flush() {
	if t.started {
		t.w.(http.Flusher).Flush()
	}
}

func (t *trailersOnly) start() {
	if t.started {
		return
	}
	t.started = true
	if t.code == 0 {
		t.code = http.StatusOK
	}
	t.w.WriteHeader(t.code)
}

// finish ends a call that sent no message: its status, set as trailers,
// goes in the headers.
func (t *trailersOnly) finish() {
	if t.started {
		return
	}
	h := t.w.Header()
	h.Del("Trailer")
	for k, vs := range h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			delete(h, k)
			for _, v := range vs {
				h.Add(name, v)
			}
		}
	}
	t.start()
}
