package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/resource"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// invalidArgumentError is a request the caller must fix. Its message names
// the field and the rule, and is sent to the caller as is.
type invalidArgumentError struct{ msg string }

func (e *invalidArgumentError) Error() string { return e.msg }

// invalidf returns an INVALID_ARGUMENT error with a formatted message.
func invalidf(format string, args ...any) error {
	return &invalidArgumentError{msg: fmt.Sprintf(format, args...)}
}

// preconditionf returns a FAILED_PRECONDITION error; it reuses the store's
// error kind so that one mapping serves both.
func preconditionf(format string, args ...any) error {
	return store.Errorf(store.ErrFailedPrecondition, format, args...)
}

// unaryErrorInterceptor is the one place where the errors of the
// DeviceManager methods become gRPC statuses. Errors that already carry a
// status pass through; caller errors keep their message; anything else is
// logged with the method and answered with a generic INTERNAL, so that back
// end details (SQL, file paths) never reach the caller.
func unaryErrorInterceptor(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err == nil {
			return resp, nil
		}
		return nil, validUTF8(toStatus(ctx, logger, info.FullMethod, err))
	}
}

// validUTF8 makes a status message valid UTF-8, as protobuf strings must
// be: a message quoting bytes a caller sent could otherwise not be
// marshalled for a REST or Connect client.
func validUTF8(err error) error {
	st, ok := status.FromError(err)
	if !ok || utf8.ValidString(st.Message()) {
		return err
	}
	p := st.Proto()
	p.Message = strings.ToValidUTF8(p.Message, "\uFFFD")
	return status.ErrorProto(p)
}

// toStatus maps an error to a gRPC status error.
func toStatus(ctx context.Context, logger *slog.Logger, method string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	var inv *invalidArgumentError
	if errors.As(err, &inv) {
		return status.Error(codes.InvalidArgument, inv.msg)
	}
	var rerr *resource.Error
	if errors.As(err, &rerr) {
		return status.Error(codes.InvalidArgument, rerr.Msg)
	}
	for _, m := range []struct {
		kind error
		code codes.Code
	}{
		{store.ErrNotFound, codes.NotFound},
		{store.ErrAlreadyExists, codes.AlreadyExists},
		{store.ErrFailedPrecondition, codes.FailedPrecondition},
		{store.ErrInvalidArgument, codes.InvalidArgument},
		{store.ErrResourceExhausted, codes.ResourceExhausted},
	} {
		if errors.Is(err, m.kind) {
			// Store errors of these kinds carry a message written for the
			// caller (store.Errorf); a bare sentinel still says what it is.
			return status.Error(m.code, err.Error())
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the request was canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the request deadline was exceeded")
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, bus.ErrUnavailable):
		// An outage, logged once by the readiness checks (pkg/ops), not
		// once per request.
		logger.DebugContext(ctx, "request failed: a dependency is unavailable", slog.String("method", method), slog.Any("error", err))
		if errors.Is(err, store.ErrUnavailable) {
			return status.Error(codes.Unavailable, "the database is unreachable: retry later")
		}
		return status.Error(codes.Unavailable, "the message bus is unreachable: retry later")
	}
	logger.ErrorContext(ctx, "request failed", slog.String("method", method), slog.Any("error", err))
	return status.Error(codes.Internal, "internal error")
}
