package pubsub

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// storeError turns an error of the bus or the bucket into the status a
// caller can act on; the detail goes to the log only.
func (s *Server) storeError(ctx context.Context, op string, err error) error {
	if _, ok := status.FromError(err); ok && err != nil {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		s.logger.WarnContext(ctx, "pubsub: JetStream unavailable", "op", op, "err", err)
		return status.Error(codes.Unavailable, "the message store (JetStream) is unavailable; retry")
	}
	s.logger.ErrorContext(ctx, "pubsub: internal error", "op", op, "err", err)
	return status.Error(codes.Internal, "internal error; the server log has the detail")
}

// errorInterceptor makes sure no uncoded error reaches a client.
func errorInterceptor(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err == nil {
			return resp, nil
		}
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		logger.ErrorContext(ctx, "pubsub: uncoded error", "method", info.FullMethod, "err", err)
		return nil, status.Error(codes.Internal, "internal error; the server log has the detail")
	}
}
