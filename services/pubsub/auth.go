package pubsub

import (
	"context"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
)

// methodRoles is the role each method needs: viewer reads and pulls,
// deviceController publishes, editor creates, changes and deletes. A
// method missing here needs admin.
func methodRoles() map[string]adminauth.Role {
	table := map[adminauth.Role][]string{
		adminauth.RoleViewer: {
			"Publisher/GetTopic", "Publisher/ListTopics", "Publisher/ListTopicSubscriptions", "Publisher/ListTopicSnapshots",
			"Subscriber/GetSubscription", "Subscriber/ListSubscriptions", "Subscriber/Pull", "Subscriber/StreamingPull",
			"Subscriber/Acknowledge", "Subscriber/ModifyAckDeadline", "Subscriber/GetSnapshot", "Subscriber/ListSnapshots",
		},
		adminauth.RoleDeviceController: {"Publisher/Publish"},
		adminauth.RoleEditor: {
			"Publisher/CreateTopic", "Publisher/UpdateTopic", "Publisher/DeleteTopic", "Publisher/DetachSubscription",
			"Subscriber/CreateSubscription", "Subscriber/UpdateSubscription", "Subscriber/DeleteSubscription",
			"Subscriber/ModifyPushConfig", "Subscriber/Seek", "Subscriber/CreateSnapshot", "Subscriber/UpdateSnapshot",
			"Subscriber/DeleteSnapshot",
		},
	}
	m := map[string]adminauth.Role{
		"/google.iam.v1.IAMPolicy/GetIamPolicy":       adminauth.RoleViewer,
		"/google.iam.v1.IAMPolicy/TestIamPermissions": adminauth.RoleViewer,
		// Policies are stored, never enforced: the token's role governs.
		"/google.iam.v1.IAMPolicy/SetIamPolicy": adminauth.RoleEditor,
	}
	for role, methods := range table {
		for _, name := range methods {
			m["/google.pubsub.v1."+name] = role
		}
	}
	return m
}

// authorizer checks each call's bearer token against the tokens file and
// the role its method needs.
type authorizer struct {
	logger      *slog.Logger
	tokens      *adminauth.Tokens
	allowUnauth bool
	roles       map[string]adminauth.Role
}

func (a *authorizer) check(ctx context.Context, fullMethod string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if a.allowUnauth && (len(values) == 0 || a.tokens == nil) {
		return nil // no tokens at all (--insecure-no-auth): every call is served
	}
	if len(values) != 1 {
		return status.Error(codes.Unauthenticated, "missing bearer token: send 'authorization: Bearer <token>' with a Passerelle admin token (or run the server with --pubsub-allow-unauthenticated for emulator clients)")
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return status.Error(codes.Unauthenticated, "malformed authorization metadata: want 'Bearer <token>'")
	}
	if a.tokens == nil {
		return status.Error(codes.Unauthenticated, "this Pub/Sub server has no admin tokens configured")
	}
	name, role, ok := a.tokens.Authenticate(token)
	if !ok {
		a.logger.InfoContext(ctx, "pubsub call refused", "method", fullMethod, "reason", "invalid token")
		return status.Error(codes.Unauthenticated, "invalid token")
	}
	need, known := a.roles[fullMethod]
	if !known {
		need = adminauth.RoleAdmin
	}
	if !role.Includes(need) {
		a.logger.WarnContext(ctx, "pubsub call denied", "method", fullMethod, "caller", name, "role", role.String(), "required", need.String())
		return status.Errorf(codes.PermissionDenied, "%s requires role %s or higher; token %q has role %s", fullMethod, need, name, role)
	}
	return nil
}

func (a *authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}
