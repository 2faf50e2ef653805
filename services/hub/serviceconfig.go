package hub

// ServiceConfig is the gRPC service config clients of the hub should use
// (grpc.WithDefaultServiceConfig in Go; every gRPC implementation takes
// the same JSON), the same as serviceconfig.json next to this file. It
// retries the unary calls that end with UNAVAILABLE, with exponential
// backoff: 5 attempts, waits of up to 0.2 s, 0.4 s, 0.8 s, 1.6 s (each a
// random part of it, as gRPC does), so about 3 s in all at most, which
// covers a hub replica stopping or being killed behind a load balancer.
//
// The streaming calls (Attach, SubscribeConfig, PublishState,
// SubscribeCommands) are not retried by gRPC once they have started:
// a caller whose stream ends with UNAVAILABLE opens it again, with the
// same backoff (0.2 s doubling to 2 s, with jitter), and goes on: Attach
// attaches again; SubscribeConfig delivers the current config first;
// PublishState sends again the requests not yet answered (each answer
// means the bridge acknowledged that state: at least once, as MQTT QoS 1).
// CreateGateway is not retried: a retry after a replica died in its middle
// may find the gateway created (ALREADY_EXISTS).
//
// A stream ends with UNAVAILABLE only when the replica serving it stops,
// dies or drains (reason HUB_CLOSING or HUB_DRAINING in its
// google.rpc.ErrorInfo, or none when the connection broke), or when the
// bridge cannot be reached (reason BRIDGE_UNAVAILABLE). When a gateway's
// connection moves between replicas, calls on the other replicas wait and
// go on: they see a delay, not an error.
const ServiceConfig = `{
  "methodConfig": [
    {
      "name": [
        {"service": "passerelle.hub.v1.Hub", "method": "PublishEvent"},
        {"service": "passerelle.hub.v1.Hub", "method": "ListGateways"},
        {"service": "passerelle.hub.v1.Hub", "method": "GetPool"}
      ],
      "retryPolicy": {
        "maxAttempts": 5,
        "initialBackoff": "0.2s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]
      }
    }
  ]
}
`
