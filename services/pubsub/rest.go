package pubsub

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
)

// iamRules are Pub/Sub's REST paths of the IAM mixin (pubsub_v1.yaml),
// which override the generic ones of iam_policy.proto.
func iamRules() []*annotations.HttpRule {
	rule := func(method, verb, body string) *annotations.HttpRule {
		r := &annotations.HttpRule{Selector: "google.iam.v1.IAMPolicy." + method, Body: body}
		for i, coll := range []string{"topics", "subscriptions", "snapshots"} {
			path := "/v1/{resource=projects/*/" + coll + "/*}:" + verb
			b := r
			if i > 0 {
				b = &annotations.HttpRule{Body: body}
				r.AdditionalBindings = append(r.AdditionalBindings, b)
			}
			if method == "GetIamPolicy" {
				b.Pattern = &annotations.HttpRule_Get{Get: path}
				b.Body = ""
			} else {
				b.Pattern = &annotations.HttpRule_Post{Post: path}
			}
		}
		return r
	}
	return []*annotations.HttpRule{
		rule("GetIamPolicy", "getIamPolicy", ""),
		rule("SetIamPolicy", "setIamPolicy", "*"),
		rule("TestIamPermissions", "testIamPermissions", "*"),
	}
}

// newREST serves REST/JSON v1 through the gRPC server with the
// transcoder the manager uses, and writes errors in Google's JSON shape.
func newREST(logger *slog.Logger, srv *grpc.Server, _ *authorizer) (http.Handler, error) {
	t, err := vanguardgrpc.NewTranscoder(srv,
		vanguard.WithRules(iamRules()...),
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec {
			return &vanguard.JSONCodec{
				MarshalOptions:   protojson.MarshalOptions{Resolver: res},
				UnmarshalOptions: protojson.UnmarshalOptions{Resolver: res, DiscardUnknown: true},
			}
		}),
		vanguard.WithUnknownHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeRESTError(w, codes.NotFound, "The requested URL "+r.URL.Path+" was not found on this server.")
		})),
		vanguard.WithDefaultServiceOptions(vanguard.WithMaxMessageBufferBytes(maxRequestBytes)),
	)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
			ct := r.Header.Get("Content-Type")
			if ct != "application/json" && !strings.HasPrefix(ct, "application/json;") {
				writeRESTError(w, codes.InvalidArgument, "send the request body as JSON with Content-Type: application/json")
				return
			}
		}
		ew := &restErrorWriter{ResponseWriter: w}
		t.ServeHTTP(ew, r)
		ew.finish(logger)
	}), nil
}

// httpStatus is Google's HTTP status of a code (google/rpc/code.proto).
var httpStatus = map[codes.Code]int{
	codes.Canceled: 499, codes.InvalidArgument: 400, codes.FailedPrecondition: 400, codes.OutOfRange: 400,
	codes.DeadlineExceeded: 504, codes.NotFound: 404, codes.AlreadyExists: 409, codes.Aborted: 409,
	codes.PermissionDenied: 403, codes.Unauthenticated: 401, codes.ResourceExhausted: 429,
	codes.Unimplemented: 501, codes.Unavailable: 503,
}

// statusName is google.rpc.Code's name of a code ("CANCELLED" with two Ls).
func statusName(c codes.Code) string {
	if c == codes.Canceled {
		return "CANCELLED"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

func writeRESTError(w http.ResponseWriter, c codes.Code, msg string) {
	writeRESTErrorDetails(w, c, msg, nil)
}

func writeRESTErrorDetails(w http.ResponseWriter, c codes.Code, msg string, details []json.RawMessage) {
	hs, ok := httpStatus[c]
	if !ok {
		hs = http.StatusInternalServerError
	}
	type body struct {
		Code    int               `json:"code"`
		Message string            `json:"message"`
		Status  string            `json:"status"`
		Details []json.RawMessage `json:"details,omitempty"`
	}
	b, _ := json.Marshal(map[string]body{"error": {Code: hs, Message: msg, Status: statusName(c), Details: details}})
	h := w.Header()
	for k := range h {
		if strings.HasPrefix(k, "Grpc-") {
			delete(h, k)
		}
	}
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(hs)
	_, _ = w.Write(append(b, '\n'))
}

// restErrorWriter holds back an error response of the transcoder
// (google.rpc.Status as JSON) and finish rewrites it in Google's shape.
type restErrorWriter struct {
	http.ResponseWriter
	wrote  bool
	status int
	body   bytes.Buffer
}

func (w *restErrorWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	if code >= 400 {
		w.status = code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *restErrorWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.status != 0 {
		if w.body.Len() < 1<<20 {
			w.body.Write(p)
		}
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

func (w *restErrorWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && w.status == 0 {
		f.Flush()
	}
}

func (w *restErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *restErrorWriter) finish(logger *slog.Logger) {
	if w.status == 0 {
		return
	}
	var st struct {
		Code    int               `json:"code"`
		Message string            `json:"message"`
		Details []json.RawMessage `json:"details"`
		Error   json.RawMessage   `json:"error"`
	}
	if err := json.Unmarshal(w.body.Bytes(), &st); err == nil && st.Error != nil {
		w.ResponseWriter.WriteHeader(w.status) // already in Google's shape
		_, _ = w.ResponseWriter.Write(w.body.Bytes())
		return
	}
	c, msg := codes.Unknown, strings.TrimSpace(w.body.String())
	if json.Unmarshal(w.body.Bytes(), &st) == nil && st.Code > 0 && st.Code <= 16 {
		c, msg = codes.Code(st.Code), st.Message
	}
	if c == codes.Unknown {
		// The transcoder could not read the request (bad JSON, a
		// parameter that is no field): Google answers 400.
		c, msg = codes.InvalidArgument, "Invalid request: "+msg
		if w.status == http.StatusNotFound || w.status == http.StatusMethodNotAllowed {
			c = codes.NotFound
		}
	}
	logger.Debug("pubsub REST error", "status", statusName(c), "message", msg)
	writeRESTErrorDetails(w.ResponseWriter, c, msg, st.Details)
}
