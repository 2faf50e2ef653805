// Package mqttwire is an MQTT 3.1.1 codec for a device bridge: it parses
// packets in place, without allocating (the fields it returns are slices
// of the caller's buffer, valid until the buffer is reused), and appends
// encoded packets to a caller's buffer, so that many packets can go out
// in one write.
//
// It covers what Cloud IoT Core's MQTT subset uses (compat-spec sections
// 6 and 7): CONNECT, PUBLISH at QoS 0 and 1, PUBACK, SUBSCRIBE,
// UNSUBSCRIBE, PINGREQ and DISCONNECT from a client; CONNACK, PUBLISH,
// PUBACK, SUBACK, UNSUBACK and PINGRESP from the server. QoS 2 flows and
// MQTT 5 properties are refused as malformed.
package mqttwire
