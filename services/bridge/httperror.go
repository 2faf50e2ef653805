package bridge

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// google.rpc codes the HTTP bridge answers with, beyond those of
// lastErrorStatus (fields.go).
const (
	codeOK               = 0
	codeDeadlineExceeded = 4
	codeOutOfRange       = 11
	codeInternal         = 13
)

// rpcCodes gives each google.rpc code its name and HTTP status, as
// Google's JSON APIs (and Cloud IoT's HTTP bridge) answer them.
var rpcCodes = map[int32]struct {
	name   string
	status int
}{
	codeOK:                 {"OK", http.StatusOK},
	codeInvalidArgument:    {"INVALID_ARGUMENT", http.StatusBadRequest},
	codeDeadlineExceeded:   {"DEADLINE_EXCEEDED", http.StatusGatewayTimeout},
	codeNotFound:           {"NOT_FOUND", http.StatusNotFound},
	codeAlreadyExists:      {"ALREADY_EXISTS", http.StatusConflict},
	codePermissionDenied:   {"PERMISSION_DENIED", http.StatusForbidden},
	codeResourceExhausted:  {"RESOURCE_EXHAUSTED", http.StatusTooManyRequests},
	codeFailedPrecondition: {"FAILED_PRECONDITION", http.StatusBadRequest},
	codeOutOfRange:         {"OUT_OF_RANGE", http.StatusBadRequest},
	codeInternal:           {"INTERNAL", http.StatusInternalServerError},
	codeUnavailable:        {"UNAVAILABLE", http.StatusServiceUnavailable},
	codeUnauthenticated:    {"UNAUTHENTICATED", http.StatusUnauthorized},
}

// httpError is a refusal of the HTTP bridge: a google.rpc code and a
// message the device's developer can act on. status overrides the code's
// HTTP status (405 for a wrong method).
type httpError struct {
	code   int32
	msg    string
	status int
}

func (e *httpError) Error() string { return e.msg }

func httpErr(code int32, msg string) *httpError { return &httpError{code: code, msg: msg} }

// storeErr answers a failed store read of what the request names: not
// found when it does not exist, unavailable (retry) otherwise.
func storeErr(what string, err error) *httpError {
	if errors.Is(err, store.ErrNotFound) {
		return httpErr(codeNotFound, what+" not found")
	}
	return httpErr(codeUnavailable, what+" could not be read: retry later")
}

// googleError is Google's JSON error body.
type googleError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
	} `json:"error"`
}

// writeError answers e in Google's JSON shape.
func writeError(w http.ResponseWriter, e *httpError) {
	c := rpcCodes[e.code]
	status := c.status
	if e.status != 0 {
		status = e.status
	}
	var body googleError
	body.Error.Code, body.Error.Message, body.Error.Status = status, e.msg, c.name
	writeJSONBody(w, status, body)
}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"error":{"code":500,"message":"internal error","status":"INTERNAL"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}
