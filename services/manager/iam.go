package manager

import (
	"context"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// iamUnimplemented explains where Passerelle's access control lives instead
// of Cloud IAM policies.
var iamUnimplemented = status.Error(codes.Unimplemented,
	"IAM policies are not supported by Passerelle: admin access is granted by the tokens file, "+
		"where each token has one of the roles viewer, deviceController, provisioner, editor or admin")

// SetIamPolicy is not supported; see iamUnimplemented.
func (m *deviceManager) SetIamPolicy(context.Context, *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	return nil, iamUnimplemented
}

// GetIamPolicy is not supported; see iamUnimplemented.
func (m *deviceManager) GetIamPolicy(context.Context, *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	return nil, iamUnimplemented
}

// TestIamPermissions is not supported; see iamUnimplemented.
func (m *deviceManager) TestIamPermissions(context.Context, *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	return nil, iamUnimplemented
}
