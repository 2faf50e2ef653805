package manager_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/devca"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/manager"
)

// The REST API checks the token before it reads a body: an unauthenticated
// or unauthorised request is refused for that, whatever its body holds.
func TestRESTChecksTokenBeforeBody(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	closed := startManager(t) // no tokens configured: fails closed
	regs := "/v1/" + srvParent + "/registries"
	for _, tc := range []struct {
		name, addr, token, body string
		code                    int
		status, message         string
	}{
		{"no token, malformed body", m.addr, "", `{"id":`, 401, "UNAUTHENTICATED", "missing bearer token"},
		{"bad token, malformed body", m.addr, "nope", `{"id":`, 401, "UNAUTHENTICATED", "invalid token"},
		{"no token, invalid UTF-8", m.addr, "", "{\"id\":\xff}", 401, "UNAUTHENTICATED", "missing bearer token"},
		{"viewer, malformed body", m.addr, toks.viewer, `{"id":`, 403, "PERMISSION_DENIED", "requires role editor"},
		{"no tokens configured, malformed body", closed.addr, toks.admin, `{"id":`, 401, "UNAUTHENTICATED", "no admin tokens configured"},
		{"no token, unknown path", m.addr, "", `{"id":`, 401, "UNAUTHENTICATED", "missing bearer token"},
		{"Connect, no token, malformed body", m.addr, "", `{"parent":`, 401, "UNAUTHENTICATED", "missing bearer token"},
		{"Connect, viewer, malformed body", m.addr, toks.viewer, `{"parent":`, 403, "PERMISSION_DENIED", "requires role editor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := regs
			switch {
			case strings.Contains(tc.name, "unknown path"):
				path = "/v2/nothing/here"
			case strings.HasPrefix(tc.name, "Connect"):
				path = "/google.cloud.iot.v1.DeviceManager/CreateDeviceRegistry"
			}
			resp := restDo(t, http.MethodPost, "http://"+tc.addr+path, tc.token, tc.body)
			code, msg, st := readGoogleError(t, resp)
			if resp.StatusCode != tc.code || code != tc.code || st != tc.status || !strings.Contains(msg, tc.message) {
				t.Errorf("HTTP %d, %d %s %q; want %d %s with %q", resp.StatusCode, code, st, msg, tc.code, tc.status, tc.message)
			}
		})
	}

	// A request announcing 8 MB is answered without a byte of its body
	// being sent.
	conn, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 8000000\r\n\r\n", regs, m.addr)
	// A deadline so that a server waiting for the body fails the test
	// rather than hanging it.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to an unauthenticated request before its body: %v", err)
	}
	if code, _, st := readGoogleError(t, resp); code != 401 || st != "UNAUTHENTICATED" {
		t.Errorf("unauthenticated request before its body: %d %s, want 401 UNAUTHENTICATED", code, st)
	}
}

// Each method's body is read up to what the method can legitimately carry,
// and no further.
func TestRESTBodyLimits(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	base := "http://" + m.addr + "/v1/" + srvParent + "/registries"
	resp := restDo(t, http.MethodPost, base, toks.admin, `{"id":"limits"}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create registry: %d", resp.StatusCode)
	}
	devices := base + "/limits/devices"

	// Metadata close to its limit (256 KB in all) fits.
	md := make([]string, 0, 8)
	for i := range 8 {
		md = append(md, fmt.Sprintf(`"k%d":%q`, i, strings.Repeat("v", 32<<10-16)))
	}
	full := `{"id":"dev-full","metadata":{` + strings.Join(md, ",") + `}}`
	resp = restDo(t, http.MethodPost, devices, toks.admin, full)
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("device with %d bytes of metadata: %d %s", len(full), resp.StatusCode, b)
	}
	resp.Body.Close()
	// A config of 64 KB (the most) fits.
	config := func(n int) string {
		return fmt.Sprintf(`{"binaryData":%q}`, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, n)))
	}
	resp = restDo(t, http.MethodPost, devices+"/dev-full:modifyCloudToDeviceConfig", toks.admin, config(64<<10))
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("config of 64 KB: %d %s", resp.StatusCode, b)
	}
	resp.Body.Close()

	chunked := func(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) } // no length: sent chunked
	for _, tc := range []struct {
		name, method, url string
		body              io.Reader
		want              string
	}{
		{"device of 3 MB", http.MethodPost, devices, strings.NewReader(`{"id":"dev-big","metadata":{"k":"` + strings.Repeat("v", 3<<20) + `"}}`), "CreateDevice takes at most"},
		{"device of 3 MB, chunked", http.MethodPost, devices, chunked(`{"id":"dev-big","metadata":{"k":"` + strings.Repeat("v", 3<<20) + `"}}`), "CreateDevice takes at most"},
		{"config of 256 KB", http.MethodPost, devices + "/dev-full:modifyCloudToDeviceConfig", strings.NewReader(config(256 << 10)), "ModifyCloudToDeviceConfig takes at most"},
		{"GET with a body", http.MethodGet, devices + "/dev-full", strings.NewReader(strings.Repeat(" ", 1<<20) + "{}"), "GetDevice takes at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, tc.url, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+toks.admin)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			code, msg, st := readGoogleError(t, resp)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || code != 413 || st != "INVALID_ARGUMENT" ||
				!strings.Contains(msg, tc.want) || !strings.Contains(msg, "bytes") {
				t.Errorf("HTTP %d, %d %s %q; want 413 INVALID_ARGUMENT naming the limit (%q)", resp.StatusCode, code, st, msg, tc.want)
			}
		})
	}
}

// Bodies in flight share one budget: past it, a request is refused at once
// with RESOURCE_EXHAUSTED, and the budget comes back when a request ends.
func TestRESTBodyBudget(t *testing.T) {
	toks := newSrvTokens(t)
	const budget = 64 << 10
	m := startManager(t, manager.WithTokens(toks.set), manager.WithMaxBodyBytesInFlight(budget))
	regs := "/v1/" + srvParent + "/registries"

	// A request that announces the whole budget and sends a part of it.
	// answered is closed once the server answers it (or it is closed).
	startSlow := func() (conn net.Conn, answered chan struct{}) {
		conn, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"id\":",
			regs, m.addr, toks.admin, budget)
		answered = make(chan struct{})
		go func() {
			defer close(answered)
			if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
				resp.Body.Close()
			}
		}()
		return conn, answered
	}
	slow, answered := startSlow()
	defer func() { slow.Close(); <-answered }()

	probe := func() (int, string, string) {
		resp := restDo(t, http.MethodPost, "http://"+m.addr+regs, toks.admin, `{"id":"goog-bad"}`)
		retry := resp.Header.Get("Retry-After")
		code, msg, st := readGoogleError(t, resp)
		return code, st + " " + msg, retry
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		select {
		case <-answered:
			// A probe held a share of the budget when the slow request
			// came, and it was refused: send it again.
			slow.Close()
			slow, answered = startSlow()
			return errors.New("the slow request was refused before it held the budget")
		default:
		}
		if code, what, retry := probe(); code != http.StatusTooManyRequests || !strings.Contains(what, "RESOURCE_EXHAUSTED") || retry == "" {
			return fmt.Errorf("with the budget taken: %d %s (Retry-After %q), want 429 RESOURCE_EXHAUSTED with Retry-After", code, what, retry)
		}
		return nil
	})
	slow.Close()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if code, what, _ := probe(); code != http.StatusBadRequest {
			return fmt.Errorf("after the slow request ended: %d %s, want 400 for the bad id", code, what)
		}
		return nil
	})
}

// 60 unauthenticated 8 MB requests at once cost the manager almost no
// memory (they took it from 59 MB to 552 MB when bodies were read before
// the token was checked).
func TestUnauthenticatedBodiesHoldNoMemory(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	const requests, size = 60, 8_000_000
	body := []byte(`{"id":"` + strings.Repeat("x", size-10) + `"}`)
	url := "http://" + m.addr + "/v1/" + srvParent + "/registries"
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()

	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	runtime.GC()
	before := heap()
	peak := before
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // samples the heap until the requests are done
		defer close(sampled)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, heap())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()

	var wg sync.WaitGroup
	codes := make(chan int, requests)
	for range requests {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				// The server answers and closes without reading the body;
				// the client may notice the close before the answer.
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(done)
	<-sampled
	close(codes)
	for code := range codes {
		if code != http.StatusUnauthorized {
			t.Errorf("an unauthenticated request got %d, want 401", code)
		}
	}
	const bound = 64 << 20
	grew := int64(peak) - int64(before)
	t.Logf("heap objects: %d MiB before, %d MiB at the peak", before>>20, peak>>20)
	if grew > bound {
		t.Errorf("%d unauthenticated %d-byte requests grew the heap by %d MiB, more than %d MiB", requests, size, grew>>20, bound>>20)
	}
}

// Unauthenticated gRPC calls are refused before their message is read: an
// 8 MB message without a token is UNAUTHENTICATED, not over the size limit;
// with a token it is over the limit. Over TLS too, where gRPC is served
// through net/http.
func TestGRPCChecksTokenBeforeMessage(t *testing.T) {
	serverTLS, clientTLS, err := devca.Ephemeral("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	toks := newSrvTokens(t)
	big := &iotpb.CreateDeviceRequest{
		Parent: srvParent + "/registries/r1",
		Device: &iotpb.Device{Id: "big", Metadata: map[string]string{"k": strings.Repeat("v", 8<<20)}},
	}
	for _, tc := range []struct {
		name string
		opts []manager.Option
		dial []grpc.DialOption
	}{
		{"plaintext", nil, nil},
		{"TLS", []manager.Option{manager.WithTLS(serverTLS)}, []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(clientTLS))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startManager(t, append([]manager.Option{manager.WithTokens(toks.set)}, tc.opts...)...)
			var conn *grpc.ClientConn
			if tc.dial == nil {
				conn = dialPlain(t, m.addr)
			} else {
				conn, err = grpc.NewClient(m.addr, tc.dial...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
			}
			dm := iotpb.NewDeviceManagerClient(conn)
			_, err := dm.CreateDevice(t.Context(), big, grpc.MaxCallSendMsgSize(16<<20))
			if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "missing bearer token") {
				t.Errorf("8 MB without a token: %v, want UNAUTHENTICATED", err)
			}
			_, err = dm.CreateDevice(t.Context(), big, grpc.MaxCallSendMsgSize(16<<20), grpc.PerRPCCredentials(tokenCreds(toks.admin)))
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("8 MB with a token: %v, want RESOURCE_EXHAUSTED (over the message limit)", err)
			}
		})
	}
}
