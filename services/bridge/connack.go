package bridge

import (
	"errors"
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3), which MQTT 3.1
// shares. A 3.1.1 client knows no other.
const (
	connackBadProtocol        = 1 // unacceptable protocol version
	connackIdentifierRejected = 2
	connackServerUnavailable  = 3
	connackBadUserOrPassword  = 4 // the user name or password is malformed
	connackNotAuthorized      = 5
)

// refusal is why the bridge refuses a CONNECT: the reason counted in
// passerelle.bridge.connects.refused, the text logged, and the CONNACK
// return code sent.
type refusal struct {
	why    refuseReason
	reason string // "" when not refused
	code   byte
}

// refuse is a refusal answered "not authorised", as every authentication
// failure is (compat-spec section 6).
func refuse(why refuseReason, reason string) refusal {
	return refusal{why, reason, connackNotAuthorized}
}

// refuseRead is the refusal after a failed store read of what the client
// id names: not authorised when it does not exist (a client learns nothing
// of which registries and devices exist), server unavailable when the
// store did not answer, so that the device tries again rather than doubt
// its credentials.
func refuseRead(why refuseReason, what string, err error) refusal {
	r := refusal{why, what + ": " + err.Error(), connackNotAuthorized}
	if !errors.Is(err, store.ErrNotFound) {
		r.code = connackServerUnavailable
	}
	return r
}

// errConnectViolation ends, without a CONNACK, a CONNECT that breaks the
// protocol (MQTT 3.1.1 section 4.8: close the network connection).
// ErrRejectPacket is what makes mochi stop reading.
var errConnectViolation = fmt.Errorf("%w: CONNECT violates MQTT", packets.ErrRejectPacket)

// checkConnect sees a CONNECT before mochi validates it. It refuses,
// without a CONNACK, the protocol violations mochi refused with an MQTT 5
// code, which MQTT 3.1.1 says to close the connection for: an unknown
// protocol name [MQTT-3.1.2-1], the reserved flag set [MQTT-3.1.2-3], a
// will QoS of 3 [MQTT-3.1.2-14], will retain without a will
// [MQTT-3.1.2-15]. And it takes out what 3.1.1 allows but mochi would
// refuse with an MQTT 5 code: a zero-length password (it then fails
// authentication: CONNACK 5), and the will, which the bridge drops anyway
// (so a retained will, a will at QoS 2 or an empty will message no longer
// refuse the connection). Nothing mochi accepted is refused.
func checkConnect(pk packets.Packet) (packets.Packet, error) {
	c := &pk.Connect
	if name := string(c.ProtocolName); name != "MQTT" && name != "MQIsdp" {
		return pk, errConnectViolation
	}
	if pk.ReservedBit != 0 || (c.WillFlag && c.WillQos > 2) || (!c.WillFlag && c.WillRetain) {
		return pk, errConnectViolation
	}
	c.WillFlag, c.WillQos, c.WillRetain, c.WillTopic, c.WillPayload = false, 0, false, "", nil
	c.WillProperties = packets.Properties{}
	if c.PasswordFlag && len(c.Password) == 0 {
		c.PasswordFlag = false
	}
	return pk, nil
}

// OnPacketEncode answers a client that does not speak MQTT 5 only with
// MQTT 3.1.1 CONNACK return codes: the bridge's own refusals carry theirs
// (trackedConn.connack), and the MQTT 5 reason codes mochi uses for some
// of its refusals (0x80 and up) are mapped by connack311.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || pk.ReasonCode == 0 || cl.Properties.ProtocolVersion == 5 {
		return pk
	}
	if tc, ok := cl.Net.Conn.(*trackedConn); ok && tc.connack != 0 {
		pk.ReasonCode = tc.connack
		return pk
	}
	pk.ReasonCode = connack311(packets.Code{Code: pk.ReasonCode, Reason: pk.Properties.ReasonString})
	return pk
}

// connack311 maps a refusal's MQTT 5 reason code (as mochi's packets.Code,
// whose Reason tells apart refusals sharing a code) to the nearest MQTT
// 3.1.1 return code. What 3.1.1 has no code for is "not authorised".
func connack311(code packets.Code) byte {
	switch code {
	case packets.ErrProtocolViolationProtocolName, packets.ErrProtocolViolationProtocolVersion,
		packets.ErrMalformedProtocolName, packets.ErrMalformedProtocolVersion:
		return connackBadProtocol
	case packets.ErrMalformedUsername, packets.ErrMalformedPassword,
		packets.ErrProtocolViolationFlagNoUsername, packets.ErrProtocolViolationUsernameNoFlag,
		packets.ErrProtocolViolationPasswordNoFlag, packets.ErrProtocolViolationUsernameTooLong,
		packets.ErrProtocolViolationPasswordTooLong:
		return connackBadUserOrPassword
	}
	switch c := code.Code; {
	case c <= connackNotAuthorized: // already 3.1.1's
		return c
	case c == packets.ErrUnsupportedProtocolVersion.Code:
		return connackBadProtocol
	case c == packets.ErrClientIdentifierNotValid.Code,
		// mochi's answer to an empty client id without a clean session,
		// which 3.1.1 answers with 2 [MQTT-3.1.3-8].
		c == packets.ErrUnspecifiedError.Code:
		return connackIdentifierRejected
	case c == packets.ErrImplementationSpecificError.Code, c == packets.ErrServerUnavailable.Code,
		c == packets.ErrServerBusy.Code, c == packets.ErrServerShuttingDown.Code,
		c == packets.ErrQuotaExceeded.Code, c == packets.ErrUseAnotherServer.Code,
		c == packets.ErrServerMoved.Code, c == packets.ErrConnectionRateExceeded.Code:
		return connackServerUnavailable
	}
	return connackNotAuthorized
}
