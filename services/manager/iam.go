package manager

import (
	"context"
	"slices"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/resource"
)

// iamUnimplemented explains where Passerelle's access control lives instead
// of Cloud IAM policies.
var iamUnimplemented = status.Error(codes.Unimplemented,
	"IAM policies are not supported by Passerelle: admin access is granted by the tokens file, "+
		"where each token has one of the roles viewer, deviceController, provisioner, editor or admin")

// permissionMethods maps Cloud IoT's IAM permission names to the
// DeviceManager method each one allows: a caller holds a permission when
// its token's role may call that method (methodRoles).
var permissionMethods = map[string]string{
	"cloudiot.registries.get":          "GetDeviceRegistry",
	"cloudiot.registries.list":         "ListDeviceRegistries",
	"cloudiot.registries.create":       "CreateDeviceRegistry",
	"cloudiot.registries.update":       "UpdateDeviceRegistry",
	"cloudiot.registries.delete":       "DeleteDeviceRegistry",
	"cloudiot.registries.getIamPolicy": "GetIamPolicy",
	"cloudiot.registries.setIamPolicy": "SetIamPolicy",
	"cloudiot.devices.get":             "GetDevice",
	"cloudiot.devices.list":            "ListDevices",
	"cloudiot.devices.create":          "CreateDevice",
	"cloudiot.devices.update":          "UpdateDevice",
	"cloudiot.devices.delete":          "DeleteDevice",
	"cloudiot.devices.updateConfig":    "ModifyCloudToDeviceConfig",
	"cloudiot.devices.sendCommand":     "SendCommandToDevice",
	"cloudiot.devices.bindGateway":     "BindDeviceToGateway",
	"cloudiot.devices.unbindGateway":   "UnbindDeviceFromGateway",
}

// testIamPermissionsDoc describes TestIamPermissions in the discovery
// document.
const testIamPermissionsDoc = "Returns the permissions of the request (Cloud IoT's names, such as " +
	"cloudiot.devices.updateConfig) that the caller's token holds: Passerelle has no IAM policies, the " +
	"answer follows the token's role (viewer, deviceController, provisioner, editor, admin) and is the " +
	"same on every registry. Unknown permissions are not held; wildcards are INVALID_ARGUMENT."

// maxTestPermissions bounds the permissions one TestIamPermissions call
// asks about (Google's limit is 100 as well).
const maxTestPermissions = 100

// SetIamPolicy is not supported; see iamUnimplemented.
func (m *deviceManager) SetIamPolicy(context.Context, *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	return nil, iamUnimplemented
}

// GetIamPolicy is not supported; see iamUnimplemented.
func (m *deviceManager) GetIamPolicy(context.Context, *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	return nil, iamUnimplemented
}

// TestIamPermissions answers which of the asked permissions the caller
// holds on a registry. Passerelle has no per-resource policies: the answer
// comes from the role of the caller's token (every permission when
// authentication is off) and is the same for every registry, existing or
// not, which is how the console learns what to offer before a registry
// exists. Unknown permission names are not held.
func (m *deviceManager) TestIamPermissions(ctx context.Context, req *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	if _, err := resource.ParseRegistry("resource", req.GetResource()); err != nil {
		return nil, invalidf("%s", err.Error())
	}
	if n := len(req.GetPermissions()); n > maxTestPermissions {
		return nil, invalidf("'permissions' has %d entries, at most %d are allowed", n, maxTestPermissions)
	}
	for i, p := range req.GetPermissions() {
		// As Google's IAM: a wildcard is refused, not read as "all of them".
		if p == "" || strings.Contains(p, "*") {
			return nil, invalidf("'permissions[%d]' is %q: name one permission, such as cloudiot.devices.get (wildcards are not allowed)", i, p)
		}
	}
	_, role, authenticated := callerFromContext(ctx)
	roles := methodRoles()
	var held []string
	for _, p := range req.GetPermissions() {
		method, known := permissionMethods[p]
		if !known || slices.Contains(held, p) {
			continue
		}
		need, ok := roles[deviceManagerPrefix+method]
		if !ok {
			need = adminauth.RoleAdmin
		}
		if !authenticated || role.Includes(need) {
			held = append(held, p)
		}
	}
	return &iampb.TestIamPermissionsResponse{Permissions: held}, nil
}
