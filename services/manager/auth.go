package manager

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

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
// role the method needs. It runs before a request's message or body is
// read (a gRPC tap, the REST front end) and again in the interceptors,
// which hand the caller to the methods.
type authorizer struct {
	logger *slog.Logger
	tokens *adminauth.Tokens // nil: authentication disabled, unless denyAll
	// denyAll refuses every call but the public ones: a manager started
	// without tokens fails closed rather than serving everyone.
	denyAll bool
	roles   map[string]adminauth.Role
}

// newAuthorizer checks tokens; tokens nil disables authentication
// (--insecure-no-auth).
func newAuthorizer(logger *slog.Logger, tokens *adminauth.Tokens) *authorizer {
	return &authorizer{logger: logger, tokens: tokens, roles: methodRoles()}
}

// newDenyAllAuthorizer refuses every call but health and reflection.
func newDenyAllAuthorizer(logger *slog.Logger) *authorizer {
	return &authorizer{logger: logger, denyAll: true, roles: methodRoles()}
}

const denyMessage = "this Passerelle manager has no admin tokens configured: restart it with a tokens file (or --insecure-no-auth for local experiments)"

// authorize returns the context to run a gRPC call with, or a gRPC status
// error (Unauthenticated or PermissionDenied) to end it with.
func (a *authorizer) authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c, err := a.check(ctx, fullMethod, md.Get("authorization"), peerAddr(ctx))
	if err != nil || c == nil {
		return ctx, err
	}
	return context.WithValue(ctx, callerKey{}, *c), nil
}

// check authenticates the authorization values sent with a call of
// fullMethod and checks the role that method needs; fullMethod "" (a
// request whose method is not known yet) is only authenticated. It returns
// the caller (nil when authentication is off or the method is public), or a
// gRPC status error.
func (a *authorizer) check(ctx context.Context, fullMethod string, authorization []string, peer string) (*caller, error) {
	if publicMethod(fullMethod) || (a.tokens == nil && !a.denyAll) {
		return nil, nil
	}
	if a.denyAll {
		return nil, status.Error(codes.Unauthenticated, denyMessage)
	}
	token, problem := bearerToken(authorization)
	if problem != "" {
		a.logger.InfoContext(ctx, "admin call refused", "method", fullMethod, "peer", peer, "reason", problem)
		return nil, status.Error(codes.Unauthenticated, problem)
	}
	name, role, ok := a.tokens.Authenticate(token)
	if !ok {
		// Never log the token, not even redacted beyond its prefix: a typo'd
		// token is still most of a real one.
		a.logger.InfoContext(ctx, "admin call refused", "method", fullMethod, "peer", peer, "reason", "invalid token")
		return nil, status.Error(codes.Unauthenticated, "invalid token")
	}
	if fullMethod == "" {
		return &caller{name: name, role: role}, nil
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
	return &caller{name: name, role: role}, nil
}

// tap refuses a gRPC call that would be refused anyway before the server
// reads its message, so that an unauthenticated caller costs a header
// check and no more (grpc.InTapHandle; native gRPC only).
func (a *authorizer) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	_, err := a.check(ctx, info.FullMethodName, info.Header.Get("authorization"), peerAddr(ctx))
	return ctx, err
}

// checkHTTP is check for a request that arrives over HTTP (REST, Connect,
// gRPC-Web, or gRPC through the TLS server), before its body is read.
func (a *authorizer) checkHTTP(r *http.Request, fullMethod string) error {
	_, err := a.check(r.Context(), fullMethod, r.Header.Values("Authorization"), r.RemoteAddr)
	return err
}

// bearerToken extracts the token of "authorization: Bearer <token>". The
// problem it returns is the message for the caller; it never quotes the
// value, which may be a secret.
func bearerToken(values []string) (token, problem string) {
	const missing = "missing bearer token: send 'authorization: Bearer <token>' metadata (the HTTP Authorization header) with a Passerelle admin token"
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

// unary is a grpc.UnaryServerInterceptor that authenticates and
// authorizes unary calls.
func (a *authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// stream is unary for streaming calls.
func (a *authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if ctx != ss.Context() {
		ss = &authedStream{ServerStream: ss, ctx: ctx}
	}
	return handler(srv, ss)
}

// authedStream carries the caller's context into a stream handler.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }
