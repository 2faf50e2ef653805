package mqttwire

// The Append functions append an encoded packet to b and return the
// extended buffer, so that several packets can go out in one write.

// appendHeader appends a fixed header.
func appendHeader(b []byte, t Type, flags byte, remaining int) []byte {
	b = append(b, byte(t)<<4|flags)
	for {
		d := byte(remaining % 128)
		remaining /= 128
		if remaining > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if remaining == 0 {
			return b
		}
	}
}

// AppendConnack appends a CONNACK with a return code (Accepted or a
// Refused* code).
func AppendConnack(b []byte, sessionPresent bool, code byte) []byte {
	var sp byte
	if sessionPresent {
		sp = 1
	}
	return append(b, byte(Connack)<<4, 2, sp, code)
}

// AppendPublish appends a PUBLISH of payload on topic at qos (0 or 1;
// pid is then its packet identifier). The caller keeps the topic and
// payload within MaxRemaining.
func AppendPublish(b []byte, topic string, qos byte, pid uint16, payload []byte) []byte {
	return appendPublish(b, topic, qos<<1, pid, payload)
}

// AppendPublishDup appends a QoS 1 PUBLISH sent again, with the DUP flag
// [MQTT-3.3.1-1].
func AppendPublishDup(b []byte, topic string, pid uint16, payload []byte) []byte {
	return appendPublish(b, topic, 8|1<<1, pid, payload)
}

func appendPublish(b []byte, topic string, flags byte, pid uint16, payload []byte) []byte {
	qos := (flags >> 1) & 3
	rem := 2 + len(topic) + len(payload)
	if qos > 0 {
		rem += 2
	}
	b = appendHeader(b, Publish, flags, rem)
	b = append(b, byte(len(topic)>>8), byte(len(topic)))
	b = append(b, topic...)
	if qos > 0 {
		b = append(b, byte(pid>>8), byte(pid))
	}
	return append(b, payload...)
}

// AppendPuback appends a PUBACK for packet identifier pid.
func AppendPuback(b []byte, pid uint16) []byte {
	return append(b, byte(Puback)<<4, 2, byte(pid>>8), byte(pid))
}

// AppendSuback appends a SUBACK with one return code per filter (the
// granted QoS, or SubackFailure).
func AppendSuback(b []byte, pid uint16, codes []byte) []byte {
	b = appendHeader(b, Suback, 0, 2+len(codes))
	b = append(b, byte(pid>>8), byte(pid))
	return append(b, codes...)
}

// AppendUnsuback appends an UNSUBACK.
func AppendUnsuback(b []byte, pid uint16) []byte {
	return append(b, byte(Unsuback)<<4, 2, byte(pid>>8), byte(pid))
}

// AppendPingresp appends a PINGRESP.
func AppendPingresp(b []byte) []byte {
	return append(b, byte(Pingresp)<<4, 0)
}
