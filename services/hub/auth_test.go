package hub_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/hub"
)

// authEnv is an env whose hub takes bearer tokens: one per role.
func authEnv(t *testing.T) (*env, map[adminauth.Role]string) {
	t.Helper()
	tokens := adminauth.NewTokens()
	byRole := map[adminauth.Role]string{}
	for _, r := range []adminauth.Role{adminauth.RoleViewer, adminauth.RoleDeviceController, adminauth.RoleAdmin} {
		tok := testutil.Must(adminauth.NewToken())
		if err := tokens.Add("t-"+r.String(), r, adminauth.HashToken(tok)); err != nil {
			t.Fatal(err)
		}
		byRole[r] = tok
	}
	return newEnv(t, envConfig{serverOpts: []hub.ServerOption{hub.WithTokens(tokens)}}), byRole
}

func bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// TestAuth: no token is UNAUTHENTICATED, a viewer may look at the pool
// but not attach, a deviceController attaches.
func TestAuth(t *testing.T) {
	e, toks := authEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	regName, gw := setupAs(t, e, bearer(ctx, toks[adminauth.RoleAdmin]))

	_, err := e.hub.GetPool(ctx, &hubv1.GetPoolRequest{})
	wantCode(t, "GetPool without a token", err, codes.Unauthenticated, "authorization")
	_, err = e.hub.GetPool(bearer(ctx, "not-a-token"), &hubv1.GetPoolRequest{})
	wantCode(t, "GetPool with an unknown token", err, codes.Unauthenticated, "unknown token")
	wantCode(t, "Attach without a token", attachErr(ctx, e.hub, &hubv1.AttachRequest{Gateway: gw, DeviceId: "bound"}), codes.Unauthenticated, "authorization")

	viewer := bearer(ctx, toks[adminauth.RoleViewer])
	if _, err := e.hub.GetPool(viewer, &hubv1.GetPoolRequest{}); err != nil {
		t.Errorf("GetPool as a viewer: %v", err)
	}
	wantCode(t, "Attach as a viewer", attachErr(viewer, e.hub, &hubv1.AttachRequest{Gateway: gw, DeviceId: "bound"}), codes.PermissionDenied, "deviceController")
	_, err = e.hub.CreateGateway(viewer, &hubv1.CreateGatewayRequest{Parent: regName, GatewayId: "gw-v"})
	wantCode(t, "CreateGateway as a viewer", err, codes.PermissionDenied, "provisioner")

	ctl := bearer(ctx, toks[adminauth.RoleDeviceController])
	att := testutil.Must(e.hub.Attach(ctl))
	if err := att.Send(&hubv1.AttachRequest{Gateway: gw, DeviceId: "bound"}); err != nil {
		t.Fatal(err)
	}
	if r, err := att.Recv(); err != nil || r.GetAttached() == nil {
		t.Fatalf("Attach as a deviceController: %v, %v", r, err)
	}
	if _, err := e.hub.PublishEvent(ctl, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", Data: []byte("x")}); err != nil {
		t.Fatalf("PublishEvent as a deviceController: %v", err)
	}
	_ = att.CloseSend()
	_, _ = att.Recv()
}

// TestGrpcurl drives the hub with grpcurl through server reflection:
// list, describe, and calls with a bearer token. CI installs grpcurl (make
// tools); elsewhere the test skips when it is not found.
func TestGrpcurl(t *testing.T) {
	bin, err := exec.LookPath("grpcurl")
	if err != nil {
		if local, lerr := filepath.Abs("../../.tools/bin/grpcurl"); lerr == nil {
			if _, serr := os.Stat(local); serr == nil {
				bin, err = local, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("grpcurl is not installed under CI: run make tools")
		}
		t.Skip("grpcurl not found; run make tools")
	}
	e, toks := authEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, gw := setupAs(t, e, bearer(ctx, toks[adminauth.RoleAdmin]))
	run := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-plaintext"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	auth := "authorization: Bearer " + toks[adminauth.RoleViewer]

	out, err := run(e.hubAddr, "list")
	if err != nil || !strings.Contains(out, "passerelle.hub.v1.Hub") {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	out, err = run(e.hubAddr, "describe", "passerelle.hub.v1.Hub.Attach")
	if err != nil || !strings.Contains(out, "stream .passerelle.hub.v1.AttachRequest") {
		t.Fatalf("grpcurl describe: %v\n%s", err, out)
	}
	out, err = run("-H", auth, e.hubAddr, "passerelle.hub.v1.Hub/ListGateways")
	if err != nil || !strings.Contains(out, `"name": "`+gw+`"`) {
		t.Fatalf("grpcurl ListGateways: %v\n%s", err, out)
	}
	// A connection for the pool to show.
	if _, err := e.hub.PublishEvent(bearer(ctx, toks[adminauth.RoleAdmin]), &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	out, err = run("-H", auth, "-d", `{}`, e.hubAddr, "passerelle.hub.v1.Hub/GetPool")
	if err != nil || !strings.Contains(out, `"gateway": "`+gw+`"`) || !strings.Contains(out, "CONNECTION_STATE_CONNECTED") {
		t.Fatalf("grpcurl GetPool: %v\n%s", err, out)
	}
	out, err = run(e.hubAddr, "passerelle.hub.v1.Hub/GetPool")
	if err == nil || !strings.Contains(out, "Unauthenticated") {
		t.Fatalf("grpcurl without a token: want Unauthenticated, got %v\n%s", err, out)
	}
	out, err = run(e.hubAddr, "grpc.health.v1.Health/Check")
	if err != nil || !strings.Contains(out, "SERVING") {
		t.Fatalf("grpcurl health: %v\n%s", err, out)
	}
}
