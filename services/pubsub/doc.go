// Package pubsub serves Google Cloud Pub/Sub's API (google.pubsub.v1
// Publisher and Subscriber, and google.iam.v1.IAMPolicy on topics and
// subscriptions) over gRPC and REST/JSON v1, on the JetStream stream the
// bridges write device telemetry to (pkg/bus), so that consumers written
// against Google's Pub/Sub client libraries move by changing an endpoint.
//
// # Mapping
//
//   - A topic "projects/p/topics/t" is the stream's subject of that topic
//     (bus.TopicSubject); the bridges write a registry's events and states
//     there. Topics that a registry names exist without CreateTopic (see
//     WithRegistryTopics); others are made with CreateTopic.
//   - Topic, subscription and IAM policy records live in a JetStream
//     key-value bucket (PASSERELLE_PUBSUB_META), so every replica of the
//     server sees the same ones.
//   - A subscription is a durable JetStream consumer on its topic's
//     subject, created and deleted with it. Its ack deadline is the
//     consumer's AckWait; ModifyAckDeadline is a NAK with that delay (0: at
//     once). The ack id is the JetStream ack subject of the delivery, so an
//     ack reaches JetStream from whichever replica receives it.
//   - message_id is the stream sequence (unique per topic, stable across
//     redeliveries), publish_time the time the stream stored the message,
//     delivery_attempt the JetStream delivery count (with a dead-letter
//     policy), attributes the message's NATS headers (the Cloud IoT ones for
//     device telemetry).
package pubsub
