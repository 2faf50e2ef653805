package manager_test

import (
	"fmt"

	"github.com/passerelle-iot/passerelle/pkg/devca"

	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/services/manager"
)

const (
	srvParent      = "projects/p1/locations/us-central1"
	deviceManagerS = "google.cloud.iot.v1.DeviceManager"
)

// srvTokens are an admin and a viewer token.
type srvTokens struct {
	set           *adminauth.Tokens
	admin, viewer string
}

func newSrvTokens(t testing.TB) srvTokens {
	t.Helper()
	set := adminauth.NewTokens()
	var toks [2]string
	for i, r := range []adminauth.Role{adminauth.RoleAdmin, adminauth.RoleViewer} {
		tok, err := adminauth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if err := set.Add(r.String()+"-user", r, adminauth.HashToken(tok)); err != nil {
			t.Fatal(err)
		}
		toks[i] = tok
	}
	return srvTokens{set: set, admin: toks[0], viewer: toks[1]}
}

// runningManager is a manager serving on 127.0.0.1:0 over a fresh SQLite
// store.
type runningManager struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
}

// startManager serves a manager built with opts; the test's cleanup stops
// it and checks that Serve returned nil in time.
func startManager(t testing.TB, opts ...manager.Option) *runningManager {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlstore.Open(context.Background(), logger, filepath.Join(t.TempDir(), "passerelle.db"))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &runningManager{addr: lis.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	srv := manager.New(logger, st, opts...)
	go func() { m.done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		if err := m.stop(15 * time.Second); err != nil {
			t.Error(err)
		}
		st.Close()
	})
	return m
}

// stop cancels Serve's context and waits for it to return.
func (m *runningManager) stop(within time.Duration) error {
	m.cancel()
	select {
	case err, ok := <-m.done:
		if !ok {
			return nil // already stopped
		}
		close(m.done)
		if err != nil {
			return errors.New("Serve: " + err.Error())
		}
		return nil
	case <-time.After(within):
		return errors.New("Serve did not return after its context ended")
	}
}

// tokenCreds sends a bearer token with every RPC, TLS or not.
type tokenCreds string

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return false }

func dialPlain(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func gapicGRPC(t testing.TB, addr, token string) *iot.DeviceManagerClient {
	t.Helper()
	opts := []option.ClientOption{
		option.WithEndpoint(addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
	if token != "" {
		opts = append(opts, option.WithGRPCDialOption(grpc.WithPerRPCCredentials(tokenCreds(token))))
	}
	c, err := iot.NewDeviceManagerClient(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// headerTransport adds an Authorization header, as Google's auth
// transports do.
type headerTransport struct {
	base  http.RoundTripper
	token string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if h.token != "" {
		r.Header.Set("Authorization", "Bearer "+h.token)
	}
	return h.base.RoundTrip(r)
}

func gapicREST(t testing.TB, baseURL, token string, tr http.RoundTripper) *iot.DeviceManagerClient {
	t.Helper()
	if tr == nil {
		tr = http.DefaultTransport
	}
	c, err := iot.NewDeviceManagerRESTClient(context.Background(),
		option.WithEndpoint(baseURL),
		option.WithHTTPClient(&http.Client{Transport: headerTransport{base: tr, token: token}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func healthCheck(ctx context.Context, conn *grpc.ClientConn, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return 0, err
	}
	return resp.GetStatus(), nil
}

func TestHealthAndReflection(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	conn := dialPlain(t, m.addr) // no token: both are public
	ctx := t.Context()

	for _, svc := range []string{"", deviceManagerS} {
		st, err := healthCheck(ctx, conn, svc)
		if err != nil || st != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, %v; want SERVING", svc, st, err)
		}
	}

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	ask := func(req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	})
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{deviceManagerS, "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	// The service's file and every file it imports must resolve, or
	// grpcurl describe fails.
	resp = ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: deviceManagerS},
	})
	if n := len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()); n < 2 {
		t.Errorf("reflection returned %d files for %s (%v), want the service's file and its imports", n, deviceManagerS, resp.GetErrorResponse())
	}
	for _, dep := range []string{"google/api/annotations.proto", "google/iam/v1/policy.proto", "google/protobuf/field_mask.proto"} {
		resp = ask(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep},
		})
		if resp.GetErrorResponse() != nil {
			t.Errorf("reflection cannot resolve %s: %v", dep, resp.GetErrorResponse())
		}
	}
}

// A client that connects and says nothing must not hold up the others.
func TestSilentConnectionDoesNotBlock(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))
	for range 3 {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if st, err := healthCheck(ctx, dialPlain(t, m.addr), ""); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health with silent connections open: %v, %v", st, err)
	}
	resp, err := http.Get("http://" + m.addr + "/v1/" + srvParent + "/registries")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("REST without a token: %d, want 401", resp.StatusCode)
	}
}

// Without tokens and without WithInsecureNoAuth the manager refuses every
// admin call, but still answers health checks.
func TestFailsClosedWithoutTokens(t *testing.T) {
	m := startManager(t)
	conn := dialPlain(t, m.addr, grpc.WithPerRPCCredentials(tokenCreds("anything")))
	if st, err := healthCheck(t.Context(), conn, ""); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v, %v", st, err)
	}
	_, err := iotpb.NewDeviceManagerClient(conn).ListDeviceRegistries(t.Context(), &iotpb.ListDeviceRegistriesRequest{Parent: srvParent})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListDeviceRegistries without configured tokens: %v, want Unauthenticated", err)
	}
}

func TestInsecureNoAuth(t *testing.T) {
	m := startManager(t, manager.WithInsecureNoAuth())
	c := gapicGRPC(t, m.addr, "")
	if _, err := c.CreateDeviceRegistry(t.Context(), &iotpb.CreateDeviceRegistryRequest{
		Parent: srvParent, DeviceRegistry: &iotpb.DeviceRegistry{Id: "open-reg"},
	}); err != nil {
		t.Fatalf("create without a token and auth off: %v", err)
	}
}

func TestTLSServesGRPCAndREST(t *testing.T) {
	serverTLS, clientTLS, err := devca.Ephemeral("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set),
		manager.WithTLS(serverTLS))

	conn, err := grpc.NewClient(m.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)),
		grpc.WithPerRPCCredentials(tokenCreds(toks.admin)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if st, err := healthCheck(t.Context(), conn, deviceManagerS); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health over TLS: %v, %v", st, err)
	}
	grpcClient, err := iot.NewDeviceManagerClient(t.Context(), option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := grpcClient.CreateDeviceRegistry(t.Context(), &iotpb.CreateDeviceRegistryRequest{
		Parent: srvParent, DeviceRegistry: &iotpb.DeviceRegistry{Id: "tls-reg"},
	})
	if err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}

	rest := gapicREST(t, "https://"+m.addr, toks.admin, &http.Transport{TLSClientConfig: clientTLS})
	got, err := rest.GetDeviceRegistry(t.Context(), &iotpb.GetDeviceRegistryRequest{Name: reg.GetName()})
	if err != nil {
		t.Fatalf("REST over TLS: %v", err)
	}
	if got.GetId() != "tls-reg" {
		t.Errorf("REST over TLS got %v", got)
	}

	// A plaintext client is refused, not served.
	if resp, err := http.Get("http://" + m.addr + "/v1/" + reg.GetName()); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plaintext HTTP request to the TLS port: %d, want 400", resp.StatusCode)
		}
	}
}

// An in-flight call finishes after Serve's context ends; then Serve
// returns nil.
func TestServeDrainsInFlightCalls(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set))

	// A REST create whose body arrives only after shutdown has begun.
	pr, pw := io.Pipe()
	body := `{"id":"late-reg"}`
	req, err := http.NewRequest(http.MethodPost, "http://"+m.addr+"/v1/"+srvParent+"/registries", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Authorization", "Bearer "+toks.admin)
	req.Header.Set("Content-Type", "application/json")
	type result struct {
		resp *http.Response
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		res <- result{resp, err}
	}()
	if _, err := pw.Write([]byte(body[:5])); err != nil { // the request is now on the server
		t.Fatal(err)
	}

	// A gRPC stream open across shutdown sees NOT_SERVING.
	conn := dialPlain(t, m.addr)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: deviceManagerS})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v, %v", r, err)
	}

	m.cancel()
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch during shutdown: %v, %v; want NOT_SERVING", r, err)
	}
	cancel() // the client ends its stream

	if _, err := pw.Write([]byte(body[5:])); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	r := <-res
	if r.err != nil {
		t.Fatalf("in-flight REST call: %v", r.err)
	}
	b, _ := io.ReadAll(r.resp.Body)
	r.resp.Body.Close()
	if r.resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "late-reg") {
		t.Fatalf("in-flight REST call: %d %s", r.resp.StatusCode, b)
	}
	if err := m.stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// A call that never ends does not keep Serve from returning.
func TestServeShutdownIsBounded(t *testing.T) {
	toks := newSrvTokens(t)
	m := startManager(t, manager.WithTokens(toks.set), manager.WithShutdownTimeout(200*time.Millisecond))
	conn := dialPlain(t, m.addr)
	watch, err := healthpb.NewHealthClient(conn).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Serve took %v to return with a 200ms shutdown timeout", d)
	}
}

// TestPageTokensAcrossInstances: a page token made by one manager instance
// is good on another sharing its database (as behind a load balancer), and
// after a restart.
func TestPageTokensAcrossInstances(t *testing.T) {
	db := filepath.Join(t.TempDir(), "shared.db")
	a := newAPIEnv(t, db)
	reg := a.createRegistry(t, "tokens")
	ctx := context.Background()
	for i := range 5 {
		if _, err := a.grpc.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg, Device: &iotpb.Device{Id: fmt.Sprintf("dev-%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	req := &iotpb.ListDevicesRequest{Parent: reg}
	var first []*iotpb.Device
	token, err := iterator.NewPager(a.grpc.ListDevices(ctx, req), 2, "").NextPage(&first)
	if err != nil || token == "" || len(first) != 2 {
		t.Fatalf("first page: %d devices, next token %q, %v", len(first), token, err)
	}
	b := newAPIEnv(t, db)
	for name, c := range map[string]*iot.DeviceManagerClient{"the other instance (gRPC)": b.grpc, "the other instance (REST)": b.rest} {
		var next []*iotpb.Device
		if _, err := iterator.NewPager(c.ListDevices(ctx, req), 2, token).NextPage(&next); err != nil {
			t.Fatalf("%s refused the first's page token: %v", name, err)
		}
		if len(next) != 2 || next[0].GetId() != "dev-2" || next[1].GetId() != "dev-3" {
			t.Errorf("second page from %s: %v", name, next)
		}
	}
}

// A manager stopped while it starts (its context ends before it serves)
// stops cleanly: Serve returns nil and closes its listener.
func TestServeStoppedWhileStarting(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlstore.Open(context.Background(), logger, filepath.Join(t.TempDir(), "passerelle.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := manager.New(logger, st, manager.WithInsecureNoAuth()).Serve(ctx, lis); err != nil {
		t.Fatalf("Serve with its context already done: %v, want nil", err)
	}
	if _, err := lis.Accept(); err == nil {
		t.Fatal("the listener is still open")
	}
}
