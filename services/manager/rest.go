package manager

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// systemParams are Google's system query parameters
// (https://cloud.google.com/apis/docs/system-parameters): clients add them
// to any call, and they are not fields of the request message. Each is also
// accepted with a leading "$".
var systemParams = map[string]bool{
	"alt": true, "prettyPrint": true, "pp": true, "key": true, "quotaUser": true,
	"fields": true, "callback": true, "upload_protocol": true, "uploadType": true,
	"access_token": true, "oauth_token": true, "userIp": true, ".xgafv": true,
	"xgafv": true, "trace": true, "userProject": true, "requestReason": true,
}

func isSystemParam(name string) bool {
	return systemParams[strings.TrimPrefix(name, "$")]
}

// restAPI serves REST/JSON v1 through the vanguard transcoder (names), or
// through enumInts when the client asks for enums as numbers
// ($alt=json;enum-encoding=int, as Google's generated REST clients do); it
// also carries Connect and gRPC-Web, which the transcoder speaks too.
//
// Before the transcoder sees a request it drops Google's system query
// parameters (an access_token parameter becomes a bearer token), checks the
// token and the role of the method called, and only then reads the body:
// at most the method's limit (restBodyLimits), within a budget shared by
// every request in flight. Afterwards it keeps only the fields a "fields"
// parameter names, and rewrites every error into Google's JSON error shape.
type restAPI struct {
	logger          *slog.Logger
	auth            *authorizer
	routes          *routeTable
	limits          map[string]int64
	budget          *bodyBudget
	masks           map[string]bool // field mask query parameters (fieldMaskParams)
	names, enumInts http.Handler
}

func (h *restAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var sys systemValues
	if r.URL.RawQuery != "" {
		r, sys = stripSystemParams(r)
	}
	method := h.routes.methodFor(r.Method, r.URL.EscapedPath())
	// The token first: an unauthenticated request costs a header check,
	// its body is never read.
	if err := h.auth.checkHTTP(r, method); err != nil {
		closeUnread(w, r)
		st := status.Convert(err)
		writeGoogleError(w, st.Code(), st.Message(), nil)
		return
	}
	if msg := invalidUTF8URL(r.URL); msg != "" {
		closeUnread(w, r)
		writeGoogleError(w, codes.InvalidArgument, msg, nil)
		return
	}
	r2, err := normalizeMaskParams(r, h.masks)
	if err != nil {
		closeUnread(w, r)
		writeGoogleError(w, codes.InvalidArgument, err.Error(), nil)
		return
	}
	r = r2
	release, ok := h.readBody(w, r, method)
	if !ok {
		return
	}
	defer release()

	next := h.names
	if strings.Contains(sys.alt, "enum-encoding=int") {
		next = h.enumInts
	}
	ew := &googleErrorWriter{ResponseWriter: w}
	if sys.fields == "" {
		next.ServeHTTP(ew, r)
		ew.finish(h.logger)
		return
	}
	sel, err := parseFields(sys.fields)
	if err != nil {
		writeGoogleError(w, codes.InvalidArgument, err.Error(), nil)
		return
	}
	fw := &fieldsWriter{ResponseWriter: ew, sel: sel}
	next.ServeHTTP(fw, r)
	fw.finish()
	ew.finish(h.logger)
}

// systemValues are the system parameters that change a response.
type systemValues struct {
	alt    string // "json", or "json;enum-encoding=int"
	fields string // a partial response's selection
}

// stripSystemParams returns r without system parameters in its query, and
// the values of those that matter. It splits on "&" only and keeps the
// other pairs byte for byte, so that what the transcoder parses is exactly
// what the client sent.
func stripSystemParams(r *http.Request) (*http.Request, systemValues) {
	var kept []string
	var accessToken string
	var sys systemValues
	changed := false
	for pair := range strings.SplitSeq(r.URL.RawQuery, "&") {
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil || !isSystemParam(key) {
			if pair != "" {
				kept = append(kept, pair)
			}
			continue
		}
		changed = true
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			continue
		}
		switch strings.TrimPrefix(key, "$") {
		case "access_token", "oauth_token":
			accessToken = value
		case "alt":
			sys.alt = value
		case "fields":
			sys.fields = value
		}
	}
	if !changed {
		return r, sys
	}
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = strings.Join(kept, "&")
	if accessToken != "" && r2.Header.Get("Authorization") == "" {
		r2.Header.Set("Authorization", "Bearer "+accessToken)
	}
	return r2, sys
}

// googleHTTPStatus is Google's mapping of gRPC codes to HTTP statuses
// (google/rpc/code.proto).
func googleHTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	default: // Unknown, Internal, DataLoss
		return http.StatusInternalServerError
	}
}

// codeFromHTTPStatus guesses the code of an error that the transcoder
// rendered as plain HTTP (bad method, bad content type ...).
func codeFromHTTPStatus(status int) codes.Code {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
		http.StatusRequestURITooLong, http.StatusLengthRequired:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return codes.NotFound
	case http.StatusConflict:
		return codes.Aborted
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case 499:
		return codes.Canceled
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported:
		return codes.Unimplemented
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	default:
		return codes.Internal
	}
}

// googleError is the body of every REST error:
// {"error": {"code": 404, "message": "...", "status": "NOT_FOUND"}}.
type googleError struct {
	Error googleErrorBody `json:"error"`
}

type googleErrorBody struct {
	Code    int               `json:"code"`
	Message string            `json:"message"`
	Status  string            `json:"status"`
	Details []json.RawMessage `json:"details,omitempty"`
}

// writeGoogleError writes an error in Google's shape, with the HTTP status
// Google gives its code.
func writeGoogleError(w http.ResponseWriter, code codes.Code, message string, details []json.RawMessage) {
	writeGoogleErrorStatus(w, googleHTTPStatus(code), code, message, details)
}

// writeGoogleErrorStatus writes an error in Google's shape with an HTTP
// status of its own (413 for a body over its limit, say).
func writeGoogleErrorStatus(w http.ResponseWriter, httpStatus int, code codes.Code, message string, details []json.RawMessage) {
	body, err := json.Marshal(googleError{Error: googleErrorBody{
		Code:    httpStatus,
		Message: message,
		Status:  codeName(code),
		Details: details,
	}})
	if err != nil { // cannot happen with these types; keep the client informed anyway
		body = []byte(`{"error":{"code":500,"message":"internal error","status":"INTERNAL"}}`)
		httpStatus = http.StatusInternalServerError
	}
	h := w.Header()
	for k := range h {
		// gRPC's own headers from the transcoded call mean nothing to a
		// REST client.
		if strings.HasPrefix(k, "Grpc-") {
			delete(h, k)
		}
	}
	h.Del("Content-Length")
	h.Del("Content-Encoding")
	h.Set("Content-Type", "application/json; charset=UTF-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(append(body, '\n'))
}

// codeName is the enum name Google puts in "status", e.g. NOT_FOUND.
func codeName(c codes.Code) string {
	switch c {
	case codes.Canceled:
		return "CANCELLED" // google.rpc.Code spells it with two Ls
	case codes.DeadlineExceeded:
		return "DEADLINE_EXCEEDED"
	case codes.InvalidArgument:
		return "INVALID_ARGUMENT"
	case codes.NotFound:
		return "NOT_FOUND"
	case codes.AlreadyExists:
		return "ALREADY_EXISTS"
	case codes.PermissionDenied:
		return "PERMISSION_DENIED"
	case codes.ResourceExhausted:
		return "RESOURCE_EXHAUSTED"
	case codes.FailedPrecondition:
		return "FAILED_PRECONDITION"
	case codes.Aborted:
		return "ABORTED"
	case codes.OutOfRange:
		return "OUT_OF_RANGE"
	case codes.Unimplemented:
		return "UNIMPLEMENTED"
	case codes.Internal:
		return "INTERNAL"
	case codes.Unavailable:
		return "UNAVAILABLE"
	case codes.DataLoss:
		return "DATA_LOSS"
	case codes.Unauthenticated:
		return "UNAUTHENTICATED"
	case codes.OK:
		return "OK"
	default:
		return "UNKNOWN"
	}
}

// notFoundHandler answers paths that match no method of the API.
func notFoundHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeGoogleError(w, codes.NotFound, "The requested URL "+strconv.Quote(r.URL.Path)+" was not found on this server.", nil)
	})
}

// googleErrorWriter passes successful responses through and holds back
// error responses (status >= 400), which finish rewrites from the
// transcoder's google.rpc.Status JSON (or plain text) into Google's shape.
type googleErrorWriter struct {
	http.ResponseWriter
	wroteHeader bool
	errStatus   int // non-zero when holding an error back
	body        bytes.Buffer
}

func (w *googleErrorWriter) WriteHeader(status int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	if status >= 400 {
		w.errStatus = status
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *googleErrorWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.errStatus != 0 {
		// An error body is small; cap it anyway so a runaway writer
		// cannot grow memory without bound.
		if w.body.Len() < 1<<20 {
			w.body.Write(p)
		}
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Flush implements http.Flusher, which the transcoder requires.
func (w *googleErrorWriter) Flush() {
	if w.errStatus != 0 {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *googleErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish writes the held-back error, if any, in Google's shape.
func (w *googleErrorWriter) finish(logger *slog.Logger) {
	if w.errStatus == 0 {
		return
	}
	// Already in Google's shape (our own not-found handler): keep it.
	var ge googleError
	if err := json.Unmarshal(w.body.Bytes(), &ge); err == nil && ge.Error.Status != "" {
		w.ResponseWriter.WriteHeader(w.errStatus)
		_, _ = w.ResponseWriter.Write(w.body.Bytes())
		return
	}
	var st struct {
		Code    *int              `json:"code"`
		Message string            `json:"message"`
		Details []json.RawMessage `json:"details"`
	}
	code := codeFromHTTPStatus(w.errStatus)
	message := strings.TrimSpace(w.body.String())
	var details []json.RawMessage
	if err := json.Unmarshal(w.body.Bytes(), &st); err == nil && st.Code != nil && *st.Code > 0 && *st.Code <= 16 {
		code, message, details = codes.Code(*st.Code), st.Message, st.Details
	} else if err == nil && st.Message != "" {
		message = st.Message
	}
	if message == "" {
		message = http.StatusText(w.errStatus)
	}
	if code == codes.Unknown {
		// The DeviceManager never answers UNKNOWN (the error interceptor
		// turns unexpected errors into INTERNAL), so UNKNOWN comes from the
		// transcoder failing to read the request: bad JSON, a query
		// parameter that is no field. Google answers those with 400.
		code = codes.InvalidArgument
		message = "Invalid request: " + message
	}
	logger.Debug("REST error", "status", codeName(code), "message", message)
	writeGoogleError(w.ResponseWriter, code, message, details)
}

// ensure the wrapper keeps the interfaces the transcoder checks for.
var _ http.Flusher = (*googleErrorWriter)(nil)
