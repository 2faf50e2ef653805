// Package bridge is Passerelle's Cloud IoT Core MQTT protocol bridge
// (compat-spec sections 6 and 7): device JWT authentication against the
// store's credentials, per-connection topic rules, telemetry and state
// forwarding to the bus, config delivery with ack tracking, commands from
// the bus, and the gateway attach/detach protocol.
//
// It is an MQTT 3.1.1 server made for a device bridge, not a general
// broker: no routing between clients, no retained messages, no sessions.
// Its connection layer (session.go, wire.go) runs one goroutine per
// connection, which holds no buffer while the device is silent (a
// one-byte read; a pooled buffer only while bytes wait, or while a plain
// connection's device streams) and whose stack
// the collector shrinks to 4 KiB; packets are parsed by pkg/mqttwire
// without allocation and written whole, with no writer goroutine.
//
// The bridge reads devices through a small DeviceStore interface and
// writes server-set fields (lastHeartbeatTime, lastEventTime...) in one
// batch per second, never once per message.
//
// QoS 1 events are pipelined (pubacks.go): a connection's events go to
// the stream without waiting, up to WithEventsInFlight at once, and their
// PUBACKs are written in the order of the PUBLISHes as the stream
// acknowledges them, those ready together in one write; an event is on
// disk before its PUBACK. The bus sends an event the stream did not
// answer again (a stream leader election, a NATS server lost), stored
// once, until its publish timeout: a failover delays PUBACKs, it does not
// close connections.
//
// Rate limits (compat-spec section 6, see WithMessageRate and
// WithByteRate) cost no goroutine or timer: token buckets refilled from
// the clock. Spans and metrics go to OpenTelemetry (WithTracerProvider,
// WithMeterProvider; the otel globals by default).
//
// Connections are admitted as they are accepted, in the bridge's own
// listener (WithMaxConnections, WithMaxPendingConnections,
// WithMaxPendingPerAddress): a flood of silent sockets from one address
// cannot take the file descriptors or the handshake budget of the others.
// Registry and device changes announced on the bus apply to live
// connections at once.
//
// In a cluster (WithPresence, with pkg/cluster's Presence) each bridge
// claims the connections it holds, and closes one of its own when a newer
// connection of the same device or gateway is made on any other bridge,
// with the lastErrorStatus of a takeover; devices attached through
// gateways make no claim, so a device may be held directly and through
// gateways at once on any bridges, as on one. Configs, device changes
// and commands reach whichever bridge holds a device, through the bus.
// Ready is the bridge's readiness for a load balancer; WithDrain sheds the
// connections over a period when Serve's context ends.
//
// The same Bridge also serves Cloud IoT Core's HTTP device bridge
// (compat-spec section 8, ServeHTTPBridge): publishEvent, setState and
// getConfig, with the MQTT bridge's rules (device JWTs, blocked devices,
// the registry's httpConfig, gateways acting for bound devices, rates and
// sizes) and Google's JSON errors, sharing the caches, the server-set
// fields and the bus with MQTT.
//
// TLS is the caller's: Serve takes net.Listeners, typically made with
// tls.NewListener (TLS 1.2 or newer), so the same bridge also serves plain
// MQTT in tests or behind a TLS-terminating proxy.
package bridge
