package hub

import (
	"errors"
	"fmt"
)

// Errors of the pool. The gRPC service maps each to a status code in one
// place (grpcError).
var (
	// ErrInvalid: a malformed name, id or payload.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnavailable: the bridge could not be reached in time.
	ErrUnavailable = errors.New("the bridge is unavailable")
	// ErrRefused: the bridge refused the gateway's connection (unknown
	// gateway, wrong key, blocked).
	ErrRefused = errors.New("the bridge refused the gateway's connection")
	// ErrTooManyDevices: the gateway connection has the most attached
	// devices the bridge allows.
	ErrTooManyDevices = errors.New("too many devices attached to this gateway connection")
	// ErrSlowConsumer: a command subscriber did not keep up.
	ErrSlowConsumer = errors.New("the subscriber did not keep up with its messages")
	// ErrDropped: the bridge closed the gateway connection every time one
	// message was sent (compat-spec 6 closes it for an event of a
	// registry without an event notification config, among other misuse).
	ErrDropped = errors.New("the bridge closed the gateway connection each time this message was sent")
	// ErrGatewayDeleted: the gateway no longer exists in its registry
	// (see WithGatewayCheck).
	ErrGatewayDeleted = errors.New("the gateway was deleted from its registry")
	// ErrClosed: the pool is shut down.
	ErrClosed = errors.New("the hub is shutting down")
)

// GatewayError is a message of a gateway's errors topic
// (/devices/{gateway}/errors), compat-spec section 7.
type GatewayError struct {
	ErrorType   string `json:"error_type"`
	Description string `json:"description"`
	DeviceID    string `json:"device_id"`
	Info        struct {
		MessageType string `json:"message_type"`
		Topic       string `json:"topic"`
		PacketID    int    `json:"packet_id"`
	} `json:"mqtt_message_info"`
}

// Error types of the bridge's gateway errors.
const (
	ErrorTypeAttachment      = "GATEWAY_ATTACHMENT_ERROR"
	ErrorTypeDeviceNotFound  = "GATEWAY_DEVICE_NOT_FOUND"
	ErrorTypeDetachmentError = "GATEWAY_DETACHMENT_DEVICE_ERROR"
)

// BridgeError is a call failed by the bridge with a gateway error.
type BridgeError struct{ GatewayError }

func (e *BridgeError) Error() string {
	return fmt.Sprintf("%s: %s (device %s)", e.ErrorType, e.Description, e.DeviceID)
}
