package manager

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc/codes"
)

// bodyReadTimeout bounds how long a REST request body may take to arrive
// once its headers have: a body holds its share of the budget while it
// trickles in.
const bodyReadTimeout = time.Minute

// bodyBudget bounds the bytes of request bodies the REST front end holds at
// once, across requests. A request reserves its Content-Length (or its
// method's limit when it gives none) before a byte of its body is read, and
// gives it back when it has been answered; a request that does not fit is
// refused at once (RESOURCE_EXHAUSTED, HTTP 429) rather than queued, so
// that a flood of large bodies cannot hold memory or goroutines.
type bodyBudget struct {
	size int64
	sem  *semaphore.Weighted
}

func newBodyBudget(size int64) *bodyBudget {
	return &bodyBudget{size: size, sem: semaphore.NewWeighted(size)}
}

// readBody reads r's body for method into memory and puts it back in r, or
// answers the request itself and returns ok false. release gives the
// body's bytes back to the budget once the request is answered.
//
// Only DeviceManager methods (all unary) are read ahead; other requests
// (health or reflection over Connect, unknown paths) get their body
// capped at noBodyBytes and streamed as it comes.
func (h *restAPI) readBody(w http.ResponseWriter, r *http.Request, method string) (release func(), ok bool) {
	nothing := func() {}
	limit, known := h.limits[method]
	if !known {
		r.Body = http.MaxBytesReader(w, r.Body, noBodyBytes)
		return nothing, true
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nothing, true
	}
	name := method[strings.LastIndexByte(method, '/')+1:]
	if r.ContentLength > limit {
		closeUnread(w, r)
		writeGoogleErrorStatus(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument, fmt.Sprintf(
			"The request body is too large: %s takes at most %s, this one has %s", name, byteSize(limit), byteSize(r.ContentLength)), nil)
		return nil, false
	}
	reserve := limit
	if r.ContentLength > 0 {
		reserve = r.ContentLength
	}
	reserve = min(reserve, h.budget.size)
	if !h.budget.sem.TryAcquire(reserve) {
		closeUnread(w, r)
		w.Header().Set("Retry-After", "1")
		writeGoogleError(w, codes.ResourceExhausted, fmt.Sprintf(
			"The manager is already reading %s of request bodies, as much as it holds at once: retry shortly", byteSize(h.budget.size)), nil)
		return nil, false
	}
	release = func() { h.budget.sem.Release(reserve) }

	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout)) // unsupported: the server's own timeouts apply
	body, err := readLimited(http.MaxBytesReader(w, r.Body, limit), r.ContentLength)
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		release()
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			writeGoogleErrorStatus(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument, fmt.Sprintf(
				"The request body is too large: %s takes at most %s", name, byteSize(limit)), nil)
		case errors.Is(err, os.ErrDeadlineExceeded):
			writeGoogleErrorStatus(w, http.StatusRequestTimeout, codes.DeadlineExceeded, fmt.Sprintf(
				"The request body did not arrive within %v", bodyReadTimeout), nil)
		default:
			writeGoogleError(w, codes.InvalidArgument, "Could not read the request body: "+err.Error(), nil)
		}
		return nil, false
	}
	if isJSON(r.Header.Get("Content-Type")) {
		if msg := invalidUTF8Body(body); msg != "" {
			release()
			writeGoogleError(w, codes.InvalidArgument, msg, nil)
			return nil, false
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return release, true
}

// isJSON reports whether a request body of this content type is JSON (REST
// requests may give none).
func isJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "" || mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// closeUnread marks the connection of a request answered without reading
// its body to close after the answer. Otherwise net/http reads (and
// discards) up to 256 KB of the body before it sends the answer, and waits
// as long as a client takes to send it.
func closeUnread(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		w.Header().Set("Connection", "close")
	}
}

// readLimited reads all of body; n is its announced length, -1 if unknown.
func readLimited(body io.Reader, n int64) ([]byte, error) {
	if n < 0 {
		return io.ReadAll(body)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(body, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// byteSize renders a size for a message: "65536 bytes (64 KiB)".
func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d bytes (%.1f KiB)", n, float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
