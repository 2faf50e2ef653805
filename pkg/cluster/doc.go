// Package cluster holds what replicas of a Passerelle service agree on
// through NATS JetStream's key-value store, with no consensus of their own:
// which bridge holds a device's connection (presence), and which hub
// replica holds a gateway's MQTT connection (leases), with the live
// members each service has.
package cluster
