package hub_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/hub"
)

// errorInfo returns the hub's ErrorInfo of err, nil for none.
func errorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == "hub.passerelle.dev" {
			return info
		}
	}
	return nil
}

// wantReason checks err's code and its ErrorInfo reason (any when reason
// is UNSPECIFIED: an error the client made, not the hub).
func wantReason(t *testing.T, what string, err error, code codes.Code, reason hubv1.ErrorReason) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: got %v, want %v", what, err, code)
		return
	}
	if reason == hubv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return
	}
	if info := errorInfo(err); info.GetReason() != reason.String() {
		t.Errorf("%s: got %v with ErrorInfo %v, want reason %s", what, err, info, reason)
	}
}

// TestErrorReasons: each error path of the hub carries its ErrorInfo
// reason, so callers branch on it.
func TestErrorReasons(t *testing.T) {
	e := newEnv(t, envConfig{})
	regName, gw := setup(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	regs := e.admin.Projects.Locations.Registries
	testutil.Must(regs.Devices.Create(regName, &cloudiot.Device{Id: "blocked", Blocked: true}).Do())
	testutil.Must(regs.BindDeviceToGateway(regName, &cloudiot.BindDeviceToGatewayRequest{DeviceId: "blocked", GatewayId: "gw-1"}).Do())

	attach := func(req *hubv1.AttachRequest) error { return attachErr(ctx, e.hub, req) }
	wantReason(t, "malformed gateway", attach(&hubv1.AttachRequest{Gateway: "devices/gw-1", DeviceId: "bound"}), codes.InvalidArgument, hubv1.ErrorReason_INVALID_FIELD)
	err := attach(&hubv1.AttachRequest{Gateway: gw, DeviceId: "1bad"})
	wantReason(t, "malformed device id", err, codes.InvalidArgument, hubv1.ErrorReason_INVALID_FIELD)
	if f := errorInfo(err).GetMetadata()["field"]; f != "device_id" {
		t.Errorf("malformed device id: field %q, want device_id", f)
	}
	wantReason(t, "no device id", attach(&hubv1.AttachRequest{Gateway: gw}), codes.InvalidArgument, hubv1.ErrorReason_INVALID_FIELD)
	wantReason(t, "gateway without key", attach(&hubv1.AttachRequest{Gateway: regName + "/devices/other", DeviceId: "bound"}), codes.FailedPrecondition, hubv1.ErrorReason_GATEWAY_KEY_MISSING)
	wantReason(t, "unbound device", attach(&hubv1.AttachRequest{Gateway: gw, DeviceId: "unbound"}), codes.PermissionDenied, hubv1.ErrorReason_DEVICE_NOT_BOUND)
	wantReason(t, "missing device", attach(&hubv1.AttachRequest{Gateway: gw, DeviceId: "nobody"}), codes.FailedPrecondition, hubv1.ErrorReason_DEVICE_NOT_FOUND)
	wantReason(t, "blocked device", attach(&hubv1.AttachRequest{Gateway: gw, DeviceId: "blocked"}), codes.PermissionDenied, hubv1.ErrorReason_DEVICE_BLOCKED)

	_, err = e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", Data: make([]byte, hub.MaxEventBytes+1)})
	wantReason(t, "event too large", err, codes.InvalidArgument, hubv1.ErrorReason_PAYLOAD_TOO_LARGE)
	if l := errorInfo(err).GetMetadata()["limit"]; l != "262144" {
		t.Errorf("event too large: limit %q", l)
	}
	_, err = e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound", SubFolder: "a/#"})
	wantReason(t, "bad subfolder", err, codes.InvalidArgument, hubv1.ErrorReason_INVALID_FIELD)
	_, err = e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "unbound"})
	wantReason(t, "event of an unbound device", err, codes.PermissionDenied, hubv1.ErrorReason_DEVICE_NOT_BOUND)

	// A state stream naming another device, then one over the limit.
	ps := testutil.Must(e.hub.PublishState(ctx))
	_ = ps.Send(&hubv1.PublishStateRequest{Gateway: gw, DeviceId: "bound", Data: []byte("s")})
	_, _ = ps.Recv()
	_ = ps.Send(&hubv1.PublishStateRequest{DeviceId: "other"})
	_, err = ps.Recv()
	wantReason(t, "state stream changing device", err, codes.InvalidArgument, hubv1.ErrorReason_STREAM_TARGET_CHANGED)
	ps = testutil.Must(e.hub.PublishState(ctx))
	_ = ps.Send(&hubv1.PublishStateRequest{Gateway: gw, DeviceId: "bound", Data: make([]byte, hub.MaxStateBytes+1)})
	_, err = ps.Recv()
	wantReason(t, "state too large", err, codes.InvalidArgument, hubv1.ErrorReason_PAYLOAD_TOO_LARGE)

	_, err = e.hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{Parent: "projects/p1", GatewayId: "gw-2"})
	wantReason(t, "bad parent", err, codes.InvalidArgument, hubv1.ErrorReason_INVALID_FIELD)
	_, err = e.hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{Parent: regName, GatewayId: "gw-1"})
	wantReason(t, "gateway twice", err, codes.AlreadyExists, hubv1.ErrorReason_GATEWAY_KEY_EXISTS)
	_, err = e.hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{Parent: regName, GatewayId: "gw-3", Algorithm: 9})
	wantReason(t, "unknown algorithm", err, codes.InvalidArgument, hubv1.ErrorReason_INVALID_FIELD)

	// A deadline that passes while the hub waits.
	dctx, dcancel := context.WithTimeout(ctx, time.Millisecond)
	defer dcancel()
	<-dctx.Done()
	_, err = e.hub.PublishEvent(dctx, &hubv1.PublishEventRequest{Gateway: gw, DeviceId: "bound"})
	wantReason(t, "deadline", err, codes.DeadlineExceeded, hubv1.ErrorReason_ERROR_REASON_UNSPECIFIED)

	// A gateway deleted from its registry: the bridge refuses it.
	testutil.Must(regs.UnbindDeviceFromGateway(regName, &cloudiot.UnbindDeviceFromGatewayRequest{DeviceId: "bound", GatewayId: "gw-1"}).Do())
	testutil.Must(regs.UnbindDeviceFromGateway(regName, &cloudiot.UnbindDeviceFromGatewayRequest{DeviceId: "blocked", GatewayId: "gw-1"}).Do())
	testutil.Must(regs.Devices.Delete(gw).Do())
	testutil.WaitFor(t, 30*time.Second, func() error {
		_, err := e.hub.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: gw})
		if r := errorInfo(err).GetReason(); r != hubv1.ErrorReason_GATEWAY_DELETED.String() && r != hubv1.ErrorReason_GATEWAY_REFUSED.String() {
			return err
		}
		return nil
	})
}

// TestErrorReasonsAuth: the token checks carry their reasons too, with
// the roles in the metadata.
func TestErrorReasonsAuth(t *testing.T) {
	e, toks := authEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := e.hub.ListGateways(ctx, &hubv1.ListGatewaysRequest{})
	wantReason(t, "no token", err, codes.Unauthenticated, hubv1.ErrorReason_TOKEN_MISSING)
	_, err = e.hub.ListGateways(bearer(ctx, "nope"), &hubv1.ListGatewaysRequest{})
	wantReason(t, "unknown token", err, codes.Unauthenticated, hubv1.ErrorReason_TOKEN_UNKNOWN)
	_, err = e.hub.CreateGateway(bearer(ctx, toks[adminauth.RoleViewer]), &hubv1.CreateGatewayRequest{Parent: "projects/p1/locations/l/registries/r", GatewayId: "g"})
	wantReason(t, "viewer creating", err, codes.PermissionDenied, hubv1.ErrorReason_ROLE_INSUFFICIENT)
	if md := errorInfo(err).GetMetadata(); md["role"] != "viewer" || md["needs"] == "" {
		t.Errorf("role metadata %v", md)
	}
	s := testutil.Must(e.hub.PublishEvents(bearer(ctx, toks[adminauth.RoleViewer])))
	_ = s.Send(&hubv1.PublishEventsRequest{})
	_, err = s.Recv()
	wantReason(t, "viewer publishing", err, codes.PermissionDenied, hubv1.ErrorReason_ROLE_INSUFFICIENT)
}
