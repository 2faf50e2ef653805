package manager

import (
	"context"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
)

const deviceManagerPrefix = "/google.cloud.iot.v1.DeviceManager/"

// methodRoles returns the role each DeviceManager method needs (compat-spec
// section 9). A method missing from it needs admin: a method added to the
// service later is closed until someone decides otherwise.
func methodRoles() map[string]adminauth.Role {
	table := map[adminauth.Role][]string{
		adminauth.RoleViewer: {"GetDeviceRegistry", "ListDeviceRegistries", "GetDevice", "ListDevices",
			"ListDeviceConfigVersions", "ListDeviceStates", "GetIamPolicy", "TestIamPermissions"},
		adminauth.RoleDeviceController: {"ModifyCloudToDeviceConfig", "SendCommandToDevice"},
		adminauth.RoleProvisioner: {"CreateDevice", "UpdateDevice", "DeleteDevice",
			"BindDeviceToGateway", "UnbindDeviceFromGateway"},
		adminauth.RoleEditor: {"CreateDeviceRegistry", "UpdateDeviceRegistry", "DeleteDeviceRegistry"},
		adminauth.RoleAdmin:  {"SetIamPolicy"},
	}
	m := make(map[string]adminauth.Role)
	for role, methods := range table {
		for _, name := range methods {
			m[deviceManagerPrefix+name] = role
		}
	}
	return m
}

// publicMethod reports whether a method needs no token: health checks come
// from load balancers and orchestrators, and reflection only describes the
// API, which is public anyway.
func publicMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// callerKey is the context key of the authenticated caller.
type callerKey struct{}

// caller is who made a call, as the tokens file names them.
type caller struct {
	name string
	role adminauth.Role
}

// callerFromContext returns the authenticated caller of a call, for logs.
// ok is false for public methods and when authentication is disabled.
func callerFromContext(ctx context.Context) (name string, role adminauth.Role, ok bool) {
	c, ok := ctx.Value(callerKey{}).(caller)
	return c.name, c.role, ok
}

// authorizer checks the bearer token of each call against tokens and the
// role the method needs.
type authorizer struct {
	logger *slog.Logger
	tokens *adminauth.Tokens // nil: authentication disabled
	roles  map[string]adminauth.Role
}

func newAuthorizer(logger *slog.Logger, tokens *adminauth.Tokens) *authorizer {
	return &authorizer{logger: logger, tokens: tokens, roles: methodRoles()}
}

// authorize returns the context to run the call with, or a gRPC status
// error (Unauthenticated or PermissionDenied) to end it with.
func (a *authorizer) authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	if a.tokens == nil || publicMethod(fullMethod) {
		return ctx, nil
	}
	token, problem := bearerToken(ctx)
	if problem != "" {
		a.logger.InfoContext(ctx, "admin call refused", "method", fullMethod, "peer", peerAddr(ctx), "reason", problem)
		return nil, status.Error(codes.Unauthenticated, problem)
	}
	name, role, ok := a.tokens.Authenticate(token)
	if !ok {
		// Never log the token, not even redacted beyond its prefix: a typo'd
		// token is still most of a real one.
		a.logger.InfoContext(ctx, "admin call refused", "method", fullMethod, "peer", peerAddr(ctx), "reason", "invalid token")
		return nil, status.Error(codes.Unauthenticated, "invalid token")
	}
	need, known := a.roles[fullMethod]
	if !known {
		need = adminauth.RoleAdmin
	}
	if !role.Includes(need) {
		a.logger.WarnContext(ctx, "admin call denied", "method", fullMethod, "caller", name, "role", role.String(), "required", need.String())
		return nil, status.Errorf(codes.PermissionDenied, "%s requires role %s or higher; token %q has role %s",
			fullMethod, need, name, role)
	}
	return context.WithValue(ctx, callerKey{}, caller{name: name, role: role}), nil
}

// bearerToken extracts the token of "authorization: Bearer <token>". The
// problem it returns is the message for the caller; it never quotes the
// metadata value, which may be a secret.
func bearerToken(ctx context.Context) (token, problem string) {
	const missing = "missing bearer token: send 'authorization: Bearer <token>' metadata (the HTTP Authorization header) with a Passerelle admin token"
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	switch {
	case len(values) == 0:
		return "", missing
	case len(values) > 1:
		return "", "malformed authorization metadata: send exactly one 'authorization: Bearer <token>'"
	}
	scheme, rest, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	token = strings.TrimSpace(rest)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", "malformed authorization metadata: want 'Bearer <token>'"
	}
	return token, ""
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// unaryAuthInterceptor authenticates and authorizes unary calls; tokens nil
// disables both (--insecure-no-auth).
func unaryAuthInterceptor(logger *slog.Logger, tokens *adminauth.Tokens) grpc.UnaryServerInterceptor {
	a := newAuthorizer(logger, tokens)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// streamAuthInterceptor is unaryAuthInterceptor for streaming calls.
func streamAuthInterceptor(logger *slog.Logger, tokens *adminauth.Tokens) grpc.StreamServerInterceptor {
	a := newAuthorizer(logger, tokens)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if ctx != ss.Context() {
			ss = &authedStream{ServerStream: ss, ctx: ctx}
		}
		return handler(srv, ss)
	}
}

// authedStream carries the caller's context into a stream handler.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }
