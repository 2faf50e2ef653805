package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.WriteHeader(http.StatusOK)
			return
		}
		http.Error(w, `{"bus":"disconnected"}`, http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"probe", srv.URL + "/readyz"}, 0, ""},
		{[]string{"probe", srv.URL + "/other"}, 1, `503 Service Unavailable {"bus":"disconnected"}`},
		{[]string{"probe", "http://127.0.0.1:1/readyz"}, 1, "connection refused"},
		{[]string{"probe"}, 2, "Usage"},
	} {
		var out bytes.Buffer
		if code := run(t.Context(), tc.args, &out, noEnv); code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want %d, %q", tc.args, code, out.String(), tc.code, tc.want)
		}
	}
}
