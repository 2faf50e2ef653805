package mqttwire

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// Next finds the first whole packet at the start of b. It returns its
// header, its body (variable header and payload, a slice of b) and the
// bytes it takes (n). n is 0, with a nil error, when b does not yet hold
// a whole packet: the caller reads more and calls again. A packet whose
// remaining length is over maxSize (0: MaxRemaining) is ErrTooLarge as
// soon as its header is read, before its body arrives.
func Next(b []byte, maxSize int) (h Header, body []byte, n int, err error) {
	if len(b) < 2 {
		return Header{}, nil, 0, nil
	}
	h.Type, h.Flags = Type(b[0]>>4), b[0]&0x0f
	if err := checkFlags(h); err != nil {
		return h, nil, 0, err
	}
	rem, mult, i := 0, 1, 1
	for {
		if i >= len(b) {
			return h, nil, 0, nil
		}
		if i > 4 {
			return h, nil, 0, fmt.Errorf("%w: remaining length longer than 4 bytes", ErrMalformed)
		}
		d := b[i]
		rem += int(d&0x7f) * mult
		mult *= 128
		i++
		if d&0x80 == 0 {
			break
		}
	}
	if maxSize <= 0 || maxSize > MaxRemaining {
		maxSize = MaxRemaining
	}
	if rem > maxSize {
		return h, nil, 0, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, rem, maxSize)
	}
	h.Remaining = rem
	if len(b)-i < rem {
		return h, nil, 0, nil
	}
	return h, b[i : i+rem], i + rem, nil
}

// HeaderLen is the length of a fixed header announcing remaining bytes.
func HeaderLen(remaining int) int {
	switch {
	case remaining < 128:
		return 2
	case remaining < 16384:
		return 3
	case remaining < 2097152:
		return 4
	}
	return 5
}

// checkFlags applies section 2.2.2: fixed flags for every type but
// PUBLISH, whose QoS must not be 3.
func checkFlags(h Header) error {
	switch h.Type {
	case Publish:
		if (h.Flags>>1)&3 == 3 {
			return fmt.Errorf("%w: PUBLISH with QoS 3", ErrMalformed)
		}
		return nil
	case Pubrel, Subscribe, Unsubscribe:
		if h.Flags != 2 {
			return fmt.Errorf("%w: packet type %d with flags %#x", ErrMalformed, h.Type, h.Flags)
		}
		return nil
	case 0, 15:
		return fmt.Errorf("%w: reserved packet type %d", ErrMalformed, h.Type)
	}
	if h.Flags != 0 {
		return fmt.Errorf("%w: packet type %d with flags %#x", ErrMalformed, h.Type, h.Flags)
	}
	return nil
}

// reader walks a packet body; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
}

func (r *reader) byte(what string) byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail(what + " missing")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uint16(what string) uint16 {
	if r.err != nil || len(r.b) < 2 {
		r.fail(what + " missing")
		return 0
	}
	v := uint16(r.b[0])<<8 | uint16(r.b[1])
	r.b = r.b[2:]
	return v
}

// bytes reads a length-prefixed field (binary data).
func (r *reader) bytes(what string) []byte {
	n := int(r.uint16(what))
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.fail(what + " truncated")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// string reads a length-prefixed UTF-8 string (section 1.5.3: valid
// UTF-8 without U+0000).
func (r *reader) string(what string) []byte {
	v := r.bytes(what)
	if r.err == nil && !validString(v) {
		r.fail(what + " is not valid UTF-8")
	}
	return v
}

func validString(b []byte) bool {
	return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0
}

func (r *reader) end(what string) error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Sprintf("%d bytes after the %s", len(r.b), what))
	}
	return r.err
}

// ConnectPacket is a parsed CONNECT; its byte fields are slices of the
// body it was parsed from.
type ConnectPacket struct {
	ProtocolName []byte
	Level        byte // 4 for MQTT 3.1.1
	CleanSession bool
	KeepAlive    uint16 // seconds; 0: none
	ClientID     []byte
	WillFlag     bool
	WillQoS      byte
	WillRetain   bool
	WillTopic    []byte
	WillMessage  []byte
	UsernameFlag bool
	Username     []byte
	PasswordFlag bool
	Password     []byte
}

// ParseConnect parses a CONNECT body (section 3.1). Another protocol
// than MQTT 3.1.1 ("MQTT", level 4) is ErrUnsupported; the caller answers
// it with CONNACK RefusedProtocolVersion.
func ParseConnect(body []byte, c *ConnectPacket) error {
	*c = ConnectPacket{}
	r := reader{b: body}
	c.ProtocolName = r.string("protocol name")
	c.Level = r.byte("protocol level")
	flags := r.byte("connect flags")
	c.KeepAlive = r.uint16("keep alive")
	if r.err != nil {
		return r.err
	}
	if string(c.ProtocolName) != "MQTT" || c.Level != 4 {
		return fmt.Errorf("%w: protocol %q level %d (MQTT 3.1.1 is \"MQTT\" level 4)", ErrUnsupported, c.ProtocolName, c.Level)
	}
	if flags&1 != 0 {
		return fmt.Errorf("%w: reserved connect flag set", ErrMalformed)
	}
	c.CleanSession = flags&0x02 != 0
	c.WillFlag = flags&0x04 != 0
	c.WillQoS = (flags >> 3) & 3
	c.WillRetain = flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	// Two breaches of [MQTT-3.1.2-13] and [MQTT-3.1.2-22] that devices
	// send and brokers (Mosquitto, mochi) accept are accepted here too: a
	// will QoS without a will, and a password without a user name.
	switch {
	case c.WillQoS == 3:
		return fmt.Errorf("%w: will QoS 3", ErrMalformed)
	case !c.WillFlag && c.WillRetain:
		return fmt.Errorf("%w: will retain without a will", ErrMalformed)
	}
	c.ClientID = r.string("client identifier")
	if c.WillFlag {
		c.WillTopic = r.string("will topic")
		c.WillMessage = r.bytes("will message")
	}
	if c.UsernameFlag {
		c.Username = r.string("user name")
	}
	if c.PasswordFlag {
		c.Password = r.bytes("password")
	}
	return r.end("CONNECT payload")
}

// PublishPacket is a parsed PUBLISH; Topic and Payload are slices of the
// body it was parsed from.
type PublishPacket struct {
	Topic    []byte
	PacketID uint16 // 0 at QoS 0
	QoS      byte
	Retain   bool
	Dup      bool
	Payload  []byte
}

// ParsePublish parses a PUBLISH body (section 3.3) with the flags of its
// header. A topic with wildcards is malformed (section 4.7.1); QoS 2 is
// ErrUnsupported.
func ParsePublish(h Header, body []byte, p *PublishPacket) error {
	*p = PublishPacket{QoS: (h.Flags >> 1) & 3, Retain: h.Flags&1 != 0, Dup: h.Flags&8 != 0}
	r := reader{b: body}
	p.Topic = r.string("topic name")
	if p.QoS > 0 {
		p.PacketID = r.uint16("packet identifier")
	}
	if r.err != nil {
		return r.err
	}
	switch {
	case len(p.Topic) == 0:
		return fmt.Errorf("%w: empty topic name", ErrMalformed)
	case bytes.ContainsAny(p.Topic, "+#"):
		return fmt.Errorf("%w: wildcard in topic name %q", ErrMalformed, p.Topic)
	case p.QoS > 0 && p.PacketID == 0:
		return fmt.Errorf("%w: packet identifier 0", ErrMalformed)
	case p.QoS == 0 && p.Dup:
		return fmt.Errorf("%w: DUP set at QoS 0", ErrMalformed)
	case p.QoS == 2:
		return fmt.Errorf("%w: QoS 2", ErrUnsupported)
	}
	p.Payload = r.b
	return nil
}

// ParsePacketID parses the body of a PUBACK (or UNSUBACK, PUBREC...):
// a packet identifier, not 0.
func ParsePacketID(body []byte) (uint16, error) {
	r := reader{b: body}
	pid := r.uint16("packet identifier")
	if err := r.end("packet identifier"); err != nil {
		return 0, err
	}
	if pid == 0 {
		return 0, fmt.Errorf("%w: packet identifier 0", ErrMalformed)
	}
	return pid, nil
}

// ParseEmpty checks the body of a PINGREQ or DISCONNECT: nothing.
func ParseEmpty(body []byte) error {
	if len(body) != 0 {
		return fmt.Errorf("%w: %d bytes in a packet that has none", ErrMalformed, len(body))
	}
	return nil
}

// Filters iterates over the topic filters of a SUBSCRIBE or UNSUBSCRIBE,
// without allocating. Parse* has already checked every entry.
type Filters struct {
	rest []byte
	qos  bool // SUBSCRIBE: each filter is followed by a requested QoS
}

// Next returns the next filter (and its requested QoS for a SUBSCRIBE);
// ok is false after the last.
func (f *Filters) Next() (filter []byte, qos byte, ok bool) {
	if len(f.rest) == 0 {
		return nil, 0, false
	}
	r := reader{b: f.rest}
	filter = r.bytes("")
	if f.qos {
		qos = r.byte("")
	}
	f.rest = r.b
	return filter, qos, true
}

// ParseSubscribe parses a SUBSCRIBE body (section 3.8): a packet
// identifier and at least one filter, each a valid string followed by a
// requested QoS of 0, 1 or 2. Filters are not otherwise checked: which
// are allowed is the bridge's business.
func ParseSubscribe(body []byte) (pid uint16, filters Filters, err error) {
	return parseFilters(body, true)
}

// ParseUnsubscribe parses an UNSUBSCRIBE body (section 3.10).
func ParseUnsubscribe(body []byte) (pid uint16, filters Filters, err error) {
	return parseFilters(body, false)
}

func parseFilters(body []byte, withQoS bool) (uint16, Filters, error) {
	r := reader{b: body}
	pid := r.uint16("packet identifier")
	if r.err == nil && pid == 0 {
		r.fail("packet identifier 0")
	}
	if r.err == nil && len(r.b) == 0 {
		r.fail("no topic filter")
	}
	list := r.b
	for r.err == nil && len(r.b) > 0 {
		f := r.string("topic filter")
		if r.err == nil && len(f) == 0 {
			r.fail("empty topic filter")
		}
		if withQoS {
			if q := r.byte("requested QoS"); r.err == nil && q > 2 {
				r.fail(fmt.Sprintf("requested QoS %#x", q))
			}
		}
	}
	if r.err != nil {
		return 0, Filters{}, r.err
	}
	return pid, Filters{rest: list, qos: withQoS}, nil
}
