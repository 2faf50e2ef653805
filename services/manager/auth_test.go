package manager

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
)

// authTestDeviceManager is a stub DeviceManager that reports who called.
type authTestDeviceManager struct {
	iotpb.UnimplementedDeviceManagerServer
}

func (authTestDeviceManager) GetDevice(ctx context.Context, req *iotpb.GetDeviceRequest) (*iotpb.Device, error) {
	name, _, _ := callerFromContext(ctx)
	return &iotpb.Device{Name: req.GetName(), Id: "called-by-" + name}, nil
}

func (authTestDeviceManager) CreateDeviceRegistry(ctx context.Context, req *iotpb.CreateDeviceRegistryRequest) (*iotpb.DeviceRegistry, error) {
	name, role, _ := callerFromContext(ctx)
	return &iotpb.DeviceRegistry{Id: req.GetDeviceRegistry().GetId(), Name: name + "/" + role.String()}, nil
}

type authTestTokens struct {
	viewer, editor, controller string
}

// startAuthTestServer serves the stub and gRPC health behind the auth
// interceptors on bufconn, and returns a connection to it.
func startAuthTestServer(t *testing.T, tokens *adminauth.Tokens) *grpc.ClientConn {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := newAuthorizer(logger, tokens)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(a.unary), grpc.ChainStreamInterceptor(a.stream))
	iotpb.RegisterDeviceManagerServer(srv, authTestDeviceManager{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func newAuthTestTokens(t *testing.T) (*adminauth.Tokens, authTestTokens) {
	t.Helper()
	var toks authTestTokens
	set := adminauth.NewTokens()
	for _, e := range []struct {
		name string
		role adminauth.Role
		tok  *string
	}{
		{"dash", adminauth.RoleViewer, &toks.viewer},
		{"terraform", adminauth.RoleEditor, &toks.editor},
		{"ops", adminauth.RoleDeviceController, &toks.controller},
	} {
		tok, err := adminauth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		*e.tok = tok
		if err := set.Add(e.name, e.role, adminauth.HashToken(tok)); err != nil {
			t.Fatal(err)
		}
	}
	return set, toks
}

func withAuth(ctx context.Context, value string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", value)
}

func TestAuthInterceptors(t *testing.T) {
	tokens, toks := newAuthTestTokens(t)
	conn := startAuthTestServer(t, tokens)
	dm := iotpb.NewDeviceManagerClient(conn)
	ctx := t.Context()
	createReq := &iotpb.CreateDeviceRegistryRequest{Parent: "projects/p/locations/l", DeviceRegistry: &iotpb.DeviceRegistry{Id: "r1"}}
	getReq := &iotpb.GetDeviceRequest{Name: "projects/p/locations/l/registries/r1/devices/d1"}

	tests := []struct {
		name     string
		auth     string // authorization metadata; "" sends none
		call     func(context.Context) error
		wantCode codes.Code
		wantMsg  []string
	}{
		{name: "no token", call: func(ctx context.Context) error { _, err := dm.GetDevice(ctx, getReq); return err },
			wantCode: codes.Unauthenticated, wantMsg: []string{"missing bearer token", "authorization: Bearer <token>"}},
		{name: "unknown token", auth: "Bearer psl_not-a-real-token", call: func(ctx context.Context) error { _, err := dm.GetDevice(ctx, getReq); return err },
			wantCode: codes.Unauthenticated, wantMsg: []string{"invalid token"}},
		{name: "wrong scheme", auth: "Basic " + toks.editor, call: func(ctx context.Context) error { _, err := dm.GetDevice(ctx, getReq); return err },
			wantCode: codes.Unauthenticated, wantMsg: []string{"malformed"}},
		{name: "empty bearer", auth: "Bearer   ", call: func(ctx context.Context) error { _, err := dm.GetDevice(ctx, getReq); return err },
			wantCode: codes.Unauthenticated, wantMsg: []string{"malformed"}},
		{name: "viewer reads", auth: "Bearer " + toks.viewer, call: func(ctx context.Context) error {
			d, err := dm.GetDevice(ctx, getReq)
			if err == nil && d.GetId() != "called-by-dash" {
				t.Errorf("caller seen by the handler: %q", d.GetId())
			}
			return err
		}, wantCode: codes.OK},
		{name: "lower-case scheme", auth: "bearer " + toks.viewer, call: func(ctx context.Context) error { _, err := dm.GetDevice(ctx, getReq); return err },
			wantCode: codes.OK},
		{name: "viewer creates registry", auth: "Bearer " + toks.viewer, call: func(ctx context.Context) error { _, err := dm.CreateDeviceRegistry(ctx, createReq); return err },
			wantCode: codes.PermissionDenied, wantMsg: []string{"/google.cloud.iot.v1.DeviceManager/CreateDeviceRegistry", "requires role editor", `"dash"`, "role viewer"}},
		{name: "deviceController creates registry", auth: "Bearer " + toks.controller, call: func(ctx context.Context) error { _, err := dm.CreateDeviceRegistry(ctx, createReq); return err },
			wantCode: codes.PermissionDenied, wantMsg: []string{"role deviceController"}},
		{name: "editor creates registry", auth: "Bearer " + toks.editor, call: func(ctx context.Context) error {
			r, err := dm.CreateDeviceRegistry(ctx, createReq)
			if err == nil && r.GetName() != "terraform/editor" {
				t.Errorf("caller seen by the handler: %q", r.GetName())
			}
			return err
		}, wantCode: codes.OK},
		{name: "editor may not SetIamPolicy", auth: "Bearer " + toks.editor, call: func(ctx context.Context) error {
			_, err := dm.SetIamPolicy(ctx, nil)
			return err
		}, wantCode: codes.PermissionDenied, wantMsg: []string{"requires role admin"}},
		{name: "viewer reaches GetIamPolicy", auth: "Bearer " + toks.viewer, call: func(ctx context.Context) error {
			_, err := dm.GetIamPolicy(ctx, nil)
			return err
		}, wantCode: codes.Unimplemented}, // passed auth, the stub does not implement it
		{name: "health without token", call: func(ctx context.Context) error {
			_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}, wantCode: codes.OK},
		{name: "health watch (stream) without token", call: func(ctx context.Context) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				return err
			}
			resp, err := w.Recv()
			if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health status %v", resp.GetStatus())
			}
			return err
		}, wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			callCtx := ctx
			if tt.auth != "" {
				callCtx = withAuth(ctx, tt.auth)
			}
			err := tt.call(callCtx)
			st := status.Convert(err)
			if st.Code() != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", st.Code(), st.Message(), tt.wantCode)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(st.Message(), m) {
					t.Errorf("message %q does not contain %q", st.Message(), m)
				}
			}
			for _, secret := range []string{toks.viewer, toks.editor, toks.controller} {
				if strings.Contains(st.Message(), secret) {
					t.Errorf("message leaks a token: %q", st.Message())
				}
			}
		})
	}
}

func TestAuthDisabled(t *testing.T) {
	conn := startAuthTestServer(t, nil)
	dm := iotpb.NewDeviceManagerClient(conn)
	_, err := dm.CreateDeviceRegistry(t.Context(), &iotpb.CreateDeviceRegistryRequest{DeviceRegistry: &iotpb.DeviceRegistry{Id: "r"}})
	if err != nil {
		t.Fatalf("with auth disabled: %v", err)
	}
}

func TestMethodRolesCoverDeviceManager(t *testing.T) {
	roles := methodRoles()
	methods := iotpb.File_google_cloud_iot_v1_device_manager_proto.Services().ByName("DeviceManager").Methods()
	if methods.Len() != len(roles) {
		t.Errorf("DeviceManager has %d methods, the role table %d", methods.Len(), len(roles))
	}
	for i := range methods.Len() {
		full := deviceManagerPrefix + string(methods.Get(i).Name())
		if _, ok := roles[full]; !ok {
			t.Errorf("%s has no role in the table (it would need admin)", full)
		}
	}
	a := newAuthorizer(slog.New(slog.NewTextHandler(io.Discard, nil)), adminauth.NewTokens())
	if _, ok := a.roles["/google.cloud.iot.v1.DeviceManager/Unknown"]; ok {
		t.Error("unknown method in the table")
	}
}

func TestUnknownMethodNeedsAdmin(t *testing.T) {
	tokens, toks := newAuthTestTokens(t)
	a := newAuthorizer(slog.New(slog.NewTextHandler(io.Discard, nil)), tokens)
	md := metadata.Pairs("authorization", "Bearer "+toks.editor)
	_, err := a.authorize(metadata.NewIncomingContext(t.Context(), md), "/google.cloud.iot.v1.DeviceManager/Future")
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "requires role admin") {
		t.Fatalf("editor calling an unknown method: %v", err)
	}
}
