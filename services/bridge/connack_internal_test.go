package bridge

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestConnack311 maps every CONNACK refusal mochi may send to an MQTT
// 3.1.1 return code.
func TestConnack311(t *testing.T) {
	for _, tc := range []struct {
		code packets.Code
		want byte
	}{
		{packets.Err3UnsupportedProtocolVersion, 1},
		{packets.Err3NotAuthorized, 5},
		{packets.ErrUnsupportedProtocolVersion, 1},
		{packets.ErrProtocolViolationProtocolName, 1},
		{packets.ErrProtocolViolationProtocolVersion, 1},
		{packets.ErrClientIdentifierNotValid, 2},
		{packets.ErrClientIdentifierTooLong, 2},
		{packets.ErrUnspecifiedError, 2},
		{packets.ErrServerUnavailable, 3},
		{packets.ErrServerBusy, 3},
		{packets.ErrServerShuttingDown, 3},
		{packets.ErrImplementationSpecificError, 3},
		{packets.ErrQuotaExceeded, 3},
		{packets.ErrConnectionRateExceeded, 3},
		{packets.ErrMalformedUsername, 4},
		{packets.ErrProtocolViolationFlagNoUsername, 4},
		{packets.ErrProtocolViolationPasswordTooLong, 4},
		{packets.ErrBadUsernameOrPassword, 5},
		{packets.ErrNotAuthorized, 5},
		{packets.ErrBanned, 5},
		{packets.ErrBadAuthenticationMethod, 5},
		{packets.ErrProtocolViolationReservedBit, 5},
		{packets.ErrRetainNotSupported, 5},
		{packets.ErrQosNotSupported, 5},
	} {
		if got := connack311(tc.code); got != tc.want {
			t.Errorf("connack311(%#x %q) = %d, want %d", tc.code.Code, tc.code.Reason, got, tc.want)
		}
	}
}
