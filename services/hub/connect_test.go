package hub_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/hub"
)

// connectError is the Connect protocol's JSON error body.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"details"`
}

// reason returns the hub's ErrorInfo reason in a Connect error.
func (c connectError) reason(t *testing.T) string {
	t.Helper()
	for _, d := range c.Details {
		if d.Type != "google.rpc.ErrorInfo" {
			continue
		}
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(d.Value, "="))
		if err != nil {
			t.Fatalf("detail value %q: %v", d.Value, err)
		}
		var info errdetails.ErrorInfo
		if err := proto.Unmarshal(raw, &info); err != nil {
			t.Fatal(err)
		}
		if info.GetDomain() == "hub.passerelle.dev" {
			return info.GetReason()
		}
	}
	return ""
}

// connectCall makes a Connect unary call with JSON, as curl would.
func connectCall(t *testing.T, c *http.Client, base, method, token, body string) (int, []byte) {
	t.Helper()
	req := testutil.Must(http.NewRequest(http.MethodPost, base+"/passerelle.hub.v1.Hub/"+method, strings.NewReader(body)))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp := testutil.Must(c.Do(req))
	defer resp.Body.Close()
	return resp.StatusCode, testutil.Must(io.ReadAll(resp.Body))
}

// TestConnectUnary: a unary RPC over the Connect protocol, plain HTTP/1.1
// POST with JSON, with the same token checks as gRPC and the error reason
// in the Connect error's details; then the same with curl.
func TestConnectUnary(t *testing.T) {
	e, toks := authEnv(t)
	base := "http://" + e.hubAddr
	c := newHTTPClient()
	defer c.CloseIdleConnections()

	code, body := connectCall(t, c, base, "ListGateways", toks[adminauth.RoleViewer], "{}")
	if code != http.StatusOK || !json.Valid(body) {
		t.Fatalf("ListGateways over Connect: %d %q", code, body)
	}
	code, body = connectCall(t, c, base, "ListGateways", "", "{}")
	var ce connectError
	if err := json.Unmarshal(body, &ce); err != nil || code != http.StatusUnauthorized || ce.Code != "unauthenticated" || ce.reason(t) != "TOKEN_MISSING" {
		t.Fatalf("no token over Connect: %d %s", code, body)
	}
	code, body = connectCall(t, c, base, "PublishEvent", toks[adminauth.RoleDeviceController], `{"gateway": "devices/gw-1"}`)
	ce = connectError{}
	if err := json.Unmarshal(body, &ce); err != nil || code != http.StatusBadRequest || ce.Code != "invalid_argument" || ce.reason(t) != "INVALID_FIELD" {
		t.Fatalf("bad gateway over Connect: %d %s", code, body)
	}

	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is not installed")
		}
		t.Skip("curl is not installed")
	}
	out, err := exec.Command(curl, "-sS", "--fail-with-body", "-H", "Content-Type: application/json",
		"-H", "Authorization: Bearer "+toks[adminauth.RoleViewer], "-d", "{}",
		base+"/passerelle.hub.v1.Hub/GetPool").CombinedOutput()
	if err != nil || !json.Valid(out) {
		t.Fatalf("curl GetPool: %v: %s", err, out)
	}
}

// grpcWebFrame frames one message for gRPC-Web.
func grpcWebFrame(m proto.Message) []byte {
	b := testutil.Must(proto.Marshal(m))
	frame := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(b)))
	return append(frame, b...)
}

// readGRPCWebFrame reads one gRPC-Web frame: its flags and payload.
func readGRPCWebFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	p := make([]byte, binary.BigEndian.Uint32(h[1:]))
	_, err := io.ReadFull(r, p)
	return h[0], p, err
}

// TestGRPCWebServerStream: a server stream (SubscribeConfig) over
// gRPC-Web on HTTP/1.1, as a browser calls it, over TLS: the current
// config comes at once, then a new version.
func TestGRPCWebServerStream(t *testing.T) {
	serverTLS, clientTLS := testTLS()
	e := newEnv(t, envConfig{})
	regName, gw := setup(t, e)
	// A second hub Server, over TLS, on the same pool.
	lis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	keys := testutil.Must(hub.NewKeys("", e.keysDir))
	srv := hub.NewServer(e.log, hub.NewService(e.log, e.pool, keys, nil), hub.WithInsecureNoAuth(), hub.WithTLS(serverTLS))
	serve(t, func(ctx context.Context) error { return srv.Serve(ctx, lis) })
	// HTTP/1.1, as gRPC-Web from a browser without HTTP/2.
	tr := &http.Transport{TLSClientConfig: clientTLS.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	c := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := grpcWebFrame(&hubv1.SubscribeConfigRequest{Gateway: gw, DeviceId: "bound"})
	req := testutil.Must(http.NewRequestWithContext(ctx, http.MethodPost, "https://"+lis.Addr().String()+"/passerelle.hub.v1.Hub/SubscribeConfig", bytes.NewReader(body)))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	resp := testutil.Must(c.Do(req))
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc-web") || resp.ProtoMajor != 1 {
		t.Fatalf("gRPC-Web response: %s %s %v", resp.Proto, resp.Status, resp.Header)
	}
	r := bufio.NewReader(resp.Body)
	next := func() *hubv1.SubscribeConfigResponse {
		t.Helper()
		flags, p, err := readGRPCWebFrame(r)
		if err != nil || flags != 0 {
			t.Fatalf("gRPC-Web frame: flags %x %q: %v", flags, p, err)
		}
		var m hubv1.SubscribeConfigResponse
		if err := proto.Unmarshal(p, &m); err != nil {
			t.Fatal(err)
		}
		return &m
	}
	first := next()
	devName := regName + "/devices/bound"
	testutil.Must(e.admin.Projects.Locations.Registries.Devices.ModifyCloudToDeviceConfig(devName, &cloudiot.ModifyCloudToDeviceConfigRequest{BinaryData: base64.StdEncoding.EncodeToString([]byte("over-grpc-web"))}).Do())
	for {
		m := next()
		if string(m.GetData()) == "over-grpc-web" {
			break
		}
		if m.GetVersion() < first.GetVersion() {
			t.Fatalf("config %v after %v", m, first)
		}
	}
	cancel()
}

// flakyHub fails ListGateways with UNAVAILABLE the first times.
type flakyHub struct {
	hubv1.UnimplementedHubServer
	failures atomic.Int32
}

func (f *flakyHub) ListGateways(context.Context, *hubv1.ListGatewaysRequest) (*hubv1.ListGatewaysResponse, error) {
	if f.failures.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "not yet")
	}
	return &hubv1.ListGatewaysResponse{}, nil
}

// TestRetryOverTLS: over TLS, gRPC is served through net/http; a call
// that fails before any message is still answered Trailers-Only, so the
// hub's retry policy (hub.ServiceConfig) tries it again.
func TestRetryOverTLS(t *testing.T) {
	serverTLS, clientTLS := testTLS()
	svc := &flakyHub{}
	svc.failures.Store(2)
	lis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	srv := hub.NewServer(testutil.Logger(t), svc, hub.WithInsecureNoAuth(), hub.WithTLS(serverTLS))
	serve(t, func(ctx context.Context) error { return srv.Serve(ctx, lis) })
	conn := testutil.Must(grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)),
		grpc.WithDefaultServiceConfig(hub.ServiceConfig)))
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := hubv1.NewHubClient(conn).ListGateways(ctx, &hubv1.ListGatewaysRequest{}); err != nil {
		t.Fatalf("ListGateways after 2 UNAVAILABLE: %v", err)
	}
	if n := svc.failures.Load(); n != -1 {
		t.Fatalf("%d failures left, want the 2 tried again", n+1)
	}
	// Without the retries: the status and its ErrorInfo arrive as they are.
	svc.failures.Store(10)
	_, err := hubv1.NewHubClient(conn).ListGateways(ctx, &hubv1.ListGatewaysRequest{})
	wantReason(t, "UNAVAILABLE every time", err, codes.Unavailable, hubv1.ErrorReason_GATEWAY_MOVED)
}
