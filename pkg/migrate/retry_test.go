package migrate

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestThrottled(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.ResourceExhausted, "slow down"), true},
		{status.Error(codes.Unavailable, "restarting"), true},
		{fmt.Errorf("wrapped: %w", &googleapi.Error{Code: http.StatusTooManyRequests}), true},
		{&googleapi.Error{Code: http.StatusServiceUnavailable}, true},
		{&googleapi.Error{Code: http.StatusBadRequest}, false},
		{status.Error(codes.NotFound, "no"), false},
		{errors.New("plain"), false},
	} {
		if got := Throttled(tc.err); got != tc.want {
			t.Errorf("Throttled(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestRetryerGivesUp after 12 tries, each pause within the backoff's
// bounds.
func TestRetryerGivesUp(t *testing.T) {
	r := &retryer{}
	r.bo.Initial, r.bo.Max, r.bo.Multiplier = 1, 4, 2
	err := status.Error(codes.ResourceExhausted, "slow down")
	for i := range 12 {
		pause, ok := r.Retry(err)
		if !ok || pause > 4 {
			t.Fatalf("try %d: pause %v, retry %v", i, pause, ok)
		}
	}
	if _, ok := r.Retry(err); ok {
		t.Error("a 13th retry")
	}
	if _, ok := (&retryer{}).Retry(status.Error(codes.InvalidArgument, "bad")); ok {
		t.Error("INVALID_ARGUMENT retried")
	}
}

func TestErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{status.Error(codes.FailedPrecondition, "not connected"), "FAILED_PRECONDITION: not connected"},
		{&googleapi.Error{Code: 400, Body: `{"error": {"code": 400, "status": "FAILED_PRECONDITION", "message": "not connected"}}`}, "FAILED_PRECONDITION: not connected"},
		{&googleapi.Error{Code: 502, Message: "bad gateway"}, "HTTP 502: bad gateway"},
		{errors.New("plain"), "plain"},
	} {
		if got := ErrorText(tc.err); got != tc.want {
			t.Errorf("ErrorText(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestReadExportShapes(t *testing.T) {
	const dev = `{"id": "d1", "name": "projects/p/locations/l/registries/r/devices/7", "numId": "7", "blocked": true, "unknownField": 1}`
	for _, doc := range []string{`[` + dev + `]`, `{"devices": [` + dev + `], "nextPageToken": ""}`} {
		e, err := ReadExport(stringsReader(doc), "")
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		regs, _ := e.Registries(t.Context())
		if len(regs) != 1 || regs[0].Name != "projects/p/locations/l/registries/r" || regs[0].Id != "r" {
			t.Fatalf("registries: %v", regs)
		}
		devs, _ := e.Devices(t.Context(), regs[0].Name)
		if len(devs) != 1 || devs[0].Id != "d1" || !devs[0].Blocked || devs[0].NumId != 7 {
			t.Errorf("devices: %v", devs)
		}
	}
	if _, err := ReadExport(stringsReader(`[{"id": "d1"}]`), ""); err == nil {
		t.Error("a device without a registry was accepted")
	}
	if _, err := ReadExport(stringsReader(`{"devices": 3}`), ""); err == nil {
		t.Error("a malformed export was accepted")
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
