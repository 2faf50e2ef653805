// Package hub is Passerelle's hub: a gRPC service (passerelle.hub.v1.Hub)
// through which backend services speak for devices, and the gateway
// connection pool behind it.
//
// The pool holds one MQTT connection per gateway to a Cloud IoT
// Core-compatible bridge (compat-spec section 7), opened on first use,
// shared by every call for that gateway and closed after an idle period.
// It signs the gateway's JWTs from keys in a gateways file or in the hub's
// key store, reconnects before a JWT expires and after a lost connection
// (exponential backoff with jitter), and after every reconnect attaches
// again every device held, subscribes again every topic held, and sends
// again every QoS 1 publish not yet acknowledged: callers see no loss.
// Before it reconnects a lost or refused gateway, it asks the admin API
// whether the gateway still exists (WithGatewayCheck): one deleted from
// its registry is dropped with its key, its calls end with NOT_FOUND.
//
// Flow control: config subscribers keep only the newest version they have
// not read; command subscribers have a bounded buffer and a slow one is
// ended (ErrSlowConsumer); the MQTT message handler never blocks on a
// caller.
//
// Replicas (WithReplicas): several hubs share NATS. A gateway's MQTT
// connection is opened only by the replica holding the gateway's lease
// (pkg/cluster); the others relay their calls for it to that replica over
// its own Hub API. A Holder holds its gateway through a link, local or
// relayed, and follows the gateway when it moves (replicas.go, relay.go;
// balance.go places and balances gateways by rendezvous hashing, drain.go
// is the server's drain). The retry policy clients should use is
// ServiceConfig.
package hub
