package mqttwire

import "errors"

// Type is an MQTT control packet type (the high nibble of the first byte).
type Type uint8

// Control packet types of MQTT 3.1.1 section 2.2.1.
const (
	Connect     Type = 1
	Connack     Type = 2
	Publish     Type = 3
	Puback      Type = 4
	Pubrec      Type = 5
	Pubrel      Type = 6
	Pubcomp     Type = 7
	Subscribe   Type = 8
	Suback      Type = 9
	Unsubscribe Type = 10
	Unsuback    Type = 11
	Pingreq     Type = 12
	Pingresp    Type = 13
	Disconnect  Type = 14
)

// CONNACK return codes of MQTT 3.1.1 section 3.2.2.3.
const (
	Accepted                    byte = 0
	RefusedProtocolVersion      byte = 1
	RefusedIdentifierRejected   byte = 2
	RefusedServerUnavailable    byte = 3
	RefusedBadUserNameOrPassord byte = 4
	RefusedNotAuthorized        byte = 5
)

// SubackFailure is the SUBACK return code of a refused subscription.
const SubackFailure byte = 0x80

// MaxRemaining is the largest remaining length MQTT can encode (256 MB).
const MaxRemaining = 268_435_455

var (
	// ErrMalformed is a packet that breaks MQTT 3.1.1: the connection
	// must be closed (section 4.8).
	ErrMalformed = errors.New("mqttwire: malformed packet")
	// ErrTooLarge is a packet larger than the reader accepts.
	ErrTooLarge = errors.New("mqttwire: packet too large")
	// ErrUnsupported is a well-formed packet the bridge does not serve
	// (QoS 2, MQTT 5 or another protocol level).
	ErrUnsupported = errors.New("mqttwire: unsupported packet")
)

// Header is a packet's fixed header.
type Header struct {
	Type      Type
	Flags     byte // the low nibble of the first byte
	Remaining int  // length of the variable header and payload
}
