package hub

// ServiceConfig is the gRPC service config clients of the hub should use
// (grpc.WithDefaultServiceConfig in Go; every gRPC implementation takes
// the same JSON), the same as serviceconfig.json next to this file and as
// the policy of the Python, TypeScript and Java clients. A call that ends
// with UNAVAILABLE is tried again, up to 5 attempts in all, after a random
// wait of up to 0.2 s, 0.4 s, 0.8 s and 1.6 s (about 3 s at most in all),
// which covers a hub replica stopping, draining or killed behind a load
// balancer.
//
// gRPC retries a stream only until its first response: a caller whose
// stream (Attach, SubscribeConfig, PublishState, SubscribeCommands) ends
// with UNAVAILABLE later opens it again, with the same backoff (from 0.2 s
// doubling, with jitter), and goes on: Attach attaches again;
// SubscribeConfig delivers the current config first; PublishState sends
// again the requests not yet answered (each answer means the bridge
// acknowledged that state). A repeated PublishEvent or PublishState may
// deliver a payload twice, as MQTT QoS 1 does. CreateGateway is not
// retried: a retry after a replica died in its middle may find the
// gateway created (ALREADY_EXISTS).
//
// A call ends with UNAVAILABLE only when the replica serving it stops,
// dies or drains (reason HUB_CLOSING or HUB_DRAINING in its
// google.rpc.ErrorInfo, none when the connection broke), when no replica
// could take its gateway in time (GATEWAY_MOVED), or when the bridge cannot
// be reached (BRIDGE_UNAVAILABLE). When a gateway's connection moves
// between replicas, calls on the other replicas wait and go on: they see
// a delay, not an error.
const ServiceConfig = `{
  "methodConfig": [
    {
      "name": [{"service": "passerelle.hub.v1.Hub"}],
      "retryPolicy": {
        "maxAttempts": 5,
        "initialBackoff": "0.2s",
        "maxBackoff": "5s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]
      }
    },
    {
      "name": [{"service": "passerelle.hub.v1.Hub", "method": "CreateGateway"}]
    }
  ]
}
`
