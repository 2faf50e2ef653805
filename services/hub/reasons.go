package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
)

// errorDomain is the google.rpc.ErrorInfo domain of every hub error; the
// reason is the name of a hubv1.ErrorReason value (errors.proto).
const errorDomain = "hub.passerelle.dev"

// withReason is a status with a google.rpc.ErrorInfo of reason and
// metadata given as key, value pairs.
func withReason(code codes.Code, reason hubv1.ErrorReason, msg string, kv ...string) error {
	info := &errdetails.ErrorInfo{Reason: reason.String(), Domain: errorDomain}
	if len(kv) > 0 {
		info.Metadata = make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			info.Metadata[kv[i]] = kv[i+1]
		}
	}
	st := status.New(code, msg)
	if d, err := st.WithDetails(info); err == nil {
		st = d
	}
	return st.Err()
}

// unavailable is an UNAVAILABLE status with reason.
func unavailable(reason hubv1.ErrorReason, msg string) error {
	return withReason(codes.Unavailable, reason, msg)
}

// invalidField is an INVALID_ARGUMENT about field.
func invalidField(field, format string, args ...any) error {
	return withReason(codes.InvalidArgument, hubv1.ErrorReason_INVALID_FIELD, fmt.Sprintf(format, args...), "field", field)
}

// tooLarge is the INVALID_ARGUMENT of a payload over the bridge's limit.
func tooLarge(what string, n, limit int) error {
	return withReason(codes.InvalidArgument, hubv1.ErrorReason_PAYLOAD_TOO_LARGE,
		fmt.Sprintf("%s of %d bytes is over the bridge's limit of %d", what, n, limit), "limit", fmt.Sprint(limit))
}

// targetChanged is the INVALID_ARGUMENT of a stream message that names
// another gateway or device than the first.
func targetChanged(format string, args ...any) error {
	return withReason(codes.InvalidArgument, hubv1.ErrorReason_STREAM_TARGET_CHANGED, fmt.Sprintf(format, args...))
}

// reasonOf returns the hub's ErrorInfo reason of a status, UNSPECIFIED
// for none.
func reasonOf(st *status.Status) hubv1.ErrorReason {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return hubv1.ErrorReason(hubv1.ErrorReason_value[info.GetReason()])
		}
	}
	return hubv1.ErrorReason_ERROR_REASON_UNSPECIFIED
}

// bridgeErrorStatus maps a gateway error the bridge answered a call with
// (compat-spec 7; the descriptions are the bridge's) to its status.
func bridgeErrorStatus(be *BridgeError) error {
	msg := fmt.Sprintf("the bridge says %s: %s", be.ErrorType, be.Description)
	d := be.Description
	switch {
	case be.ErrorType == ErrorTypeAttachment && strings.Contains(d, "does not exist"):
		return withReason(codes.FailedPrecondition, hubv1.ErrorReason_DEVICE_NOT_FOUND, msg)
	case be.ErrorType == ErrorTypeAttachment && strings.Contains(d, "most attached"):
		return withReason(codes.ResourceExhausted, hubv1.ErrorReason_TOO_MANY_DEVICES, msg)
	case be.ErrorType == ErrorTypeAttachment && strings.Contains(d, "not bound"):
		return withReason(codes.PermissionDenied, hubv1.ErrorReason_DEVICE_NOT_BOUND, msg)
	case be.ErrorType == ErrorTypeAttachment && strings.Contains(d, "blocked"):
		return withReason(codes.PermissionDenied, hubv1.ErrorReason_DEVICE_BLOCKED, msg)
	case be.ErrorType == ErrorTypeAttachment && strings.Contains(d, "token"):
		return withReason(codes.PermissionDenied, hubv1.ErrorReason_DEVICE_TOKEN_REFUSED, msg)
	case be.ErrorType == ErrorTypeAttachment:
		return withReason(codes.PermissionDenied, hubv1.ErrorReason_GATEWAY_ATTACHMENT_ERROR, msg)
	case strings.Contains(d, "more than"):
		return withReason(codes.ResourceExhausted, hubv1.ErrorReason_RATE_LIMITED, msg)
	case be.ErrorType == ErrorTypeDeviceNotFound:
		return withReason(codes.FailedPrecondition, hubv1.ErrorReason_DEVICE_NOT_ATTACHED, msg)
	}
	return withReason(codes.FailedPrecondition, hubv1.ErrorReason_GATEWAY_ERROR, msg, "error_type", be.ErrorType)
}

// codeReasons is the reason an error status the hub's own code made
// without one gets at the edge (gRPC's own errors: a stream's Recv, a
// cancelled call).
var codeReasons = map[codes.Code]hubv1.ErrorReason{
	codes.Canceled:           hubv1.ErrorReason_CALL_CANCELLED,
	codes.DeadlineExceeded:   hubv1.ErrorReason_DEADLINE_EXCEEDED,
	codes.InvalidArgument:    hubv1.ErrorReason_INVALID_FIELD,
	codes.Unavailable:        reasonMoved,
	codes.ResourceExhausted:  hubv1.ErrorReason_SLOW_CONSUMER,
	codes.Unauthenticated:    hubv1.ErrorReason_TOKEN_UNKNOWN,
	codes.PermissionDenied:   hubv1.ErrorReason_ROLE_INSUFFICIENT,
	codes.FailedPrecondition: hubv1.ErrorReason_GATEWAY_ERROR,
}

// withDefaultReason gives an error leaving the hub an ErrorInfo when it
// has none, so that every error carries a reason.
func withDefaultReason(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			st = status.FromContextError(err)
		} else {
			st = status.New(codes.Unknown, err.Error())
		}
	}
	if st.Code() == codes.OK || reasonOf(st) != hubv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return err
	}
	r, ok := codeReasons[st.Code()]
	if !ok {
		r = hubv1.ErrorReason_INTERNAL_ERROR
	}
	return withReason(st.Code(), r, st.Message())
}

// reasonUnary and reasonStream are the interceptors that apply
// withDefaultReason.
func reasonUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, withDefaultReason(err)
}

func reasonStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return withDefaultReason(handler(srv, ss))
}
