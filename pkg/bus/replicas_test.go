package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

func streamReplicas(tb testing.TB, b *bus.Bus) int {
	tb.Helper()
	js, err := jetstream.New(b.Conn())
	if err != nil {
		tb.Fatal(err)
	}
	st, err := js.Stream(ctxT(tb), b.StreamName())
	if err != nil {
		tb.Fatal(err)
	}
	return st.CachedInfo().Config.Replicas
}

// A single server, embedded or not, gets 1 replica; more is refused with
// what to do.
func TestReplicasOnASingleServer(t *testing.T) {
	b := openEmbedded(t, bus.Options{})
	if n := b.Replicas(); n != 1 {
		t.Errorf("embedded: %d replicas, want 1", n)
	}
	if _, err := bus.Open(t.Context(), discard(), bus.Options{DataDir: t.TempDir(), Replicas: 3}); !errors.Is(err, bus.ErrInvalid) ||
		!strings.Contains(err.Error(), "single server") {
		t.Errorf("3 replicas on the embedded server: %v", err)
	}

	node := testutil.NewNATSNode(t, "single")
	node.Start()
	b = openUnique(t, bus.Options{URL: node.URL()})
	if n := b.Replicas(); n != 1 || streamReplicas(t, b) != 1 {
		t.Errorf("single external server: %d replicas (stream %d), want 1", n, streamReplicas(t, b))
	}
	_, err := bus.Open(t.Context(), discard(), bus.Options{URL: node.URL(), Replicas: 3, StreamName: "PASSERELLE_R3"})
	if err == nil || !strings.Contains(err.Error(), "is a single server, not a cluster: give --nats-replicas 1") {
		t.Errorf("3 replicas on a single server: %v", err)
	}
	if _, err := bus.Open(t.Context(), discard(), bus.Options{URL: node.URL(), Replicas: 6}); !errors.Is(err, bus.ErrInvalid) {
		t.Errorf("6 replicas: %v", err)
	}
}

// On a cluster of three, the stream gets 3 replicas; a stream made with 1
// is updated to 3; 5 cannot be placed and the error says so. Then the
// acknowledgement needs a majority of the replicas: with one server of
// three down publishes are acknowledged, with two down none is (an error
// wrapping ErrUnavailable), and they are again once one comes back.
func TestClusterReplicasAndQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server NATS cluster")
	}
	nodes := testutil.StartNATSCluster(t, 3)
	url := testutil.ClusterURL(nodes)
	ctx := t.Context()

	one, err := bus.Open(ctx, discard(), bus.Options{URL: url, Replicas: 1, Name: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if n := streamReplicas(t, one); n != 1 {
		t.Fatalf("explicit 1: stream has %d replicas", n)
	}
	one.Close()

	var logs syncBuffer
	b, err := bus.Open(ctx, textLogger(&logs), bus.Options{URL: url, Name: "auto", PublishTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if n := b.Replicas(); n != 3 {
		t.Errorf("cluster of three: Replicas() %d, want 3", n)
	}
	waitFor(t, 30*time.Second, "the stream at 3 replicas", func() bool { return streamReplicas(t, b) == 3 })
	if !strings.Contains(logs.String(), "changed the stream's replica count") || !strings.Contains(logs.String(), "from=1 to=3") {
		t.Errorf("no line about the replica change:\n%s", logs.String())
	}

	if _, err := bus.Open(ctx, discard(), bus.Options{URL: url, Replicas: 5, StreamName: "PASSERELLE_R5", SubjectPrefix: "r5.pubsub", SetupTimeout: time.Second}); err == nil ||
		!strings.Contains(err.Error(), "cannot place 5 copies") {
		t.Errorf("5 replicas on 3 servers: %v", err)
	}

	publish := func() error {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return b.PublishNotification(pctx, "projects/p/topics/quorum", bus.KindEvent, []byte("x"), bus.Attributes{DeviceID: "d"})
	}
	// Wait until the stream's replicas are all current before stopping any.
	waitFor(t, 30*time.Second, "a first acknowledged publish", func() bool { return publish() == nil })

	// The server this Bus is connected to goes first: the client moves.
	connected := b.Conn().ConnectedServerName()
	var down []*testutil.NATSNode
	for _, n := range nodes {
		if n.Opts.ServerName == connected {
			n.Stop()
			down = append(down, n)
		}
	}
	waitFor(t, 30*time.Second, "publishes acknowledged with one server of three down", func() bool { return publish() == nil })
	// A process (re)started while a server is down opens the bus: the
	// stream is already at 3 replicas and stays so.
	again, err := bus.Open(ctx, discard(), bus.Options{URL: url, Name: "restarted-process"})
	if err != nil {
		t.Fatalf("Open with one server of three down: %v", err)
	}
	if n := again.Replicas(); n != 3 {
		t.Errorf("Replicas() %d with one server down, want 3", n)
	}
	again.Close()

	for _, n := range nodes {
		if n.Server() != nil && len(down) < 2 {
			n.Stop()
			down = append(down, n)
		}
	}
	waitFor(t, 30*time.Second, "the client on the last server", func() bool { return b.Ready(ctx) == nil })
	err = publish()
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("publish with one server of three: %v, want no acknowledgement (ErrUnavailable)", err)
	}

	down[1].Start()
	waitFor(t, 60*time.Second, "publishes acknowledged again with two servers of three", func() bool { return publish() == nil })
	if err := b.StreamReady(ctx); err != nil {
		t.Errorf("StreamReady with two servers of three: %v", err)
	}
}

// The server holding the stream's leader dies while the Bus is connected
// to it: a publish made at that moment is sent again until a new leader
// acknowledges it, within the caller's deadline, instead of waiting for an
// answer that cannot come.
func TestPublishAcrossTheLossOfTheStreamLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server NATS cluster")
	}
	nodes := testutil.StartNATSCluster(t, 3)
	ctx := t.Context()
	const topic = "projects/p/topics/leader-loss"
	setup, err := bus.Open(ctx, discard(), bus.Options{URL: testutil.ClusterURL(nodes)})
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close()
	publish := func(b *bus.Bus, d time.Duration) error {
		pctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return b.PublishNotification(pctx, topic, bus.KindEvent, []byte("x"), bus.Attributes{DeviceID: "d"})
	}
	waitFor(t, 30*time.Second, "a first acknowledged publish", func() bool { return publish(setup, 3*time.Second) == nil })
	js, err := jetstream.New(setup.Conn())
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, setup.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	var leader *testutil.NATSNode
	for _, n := range nodes {
		if n.Opts.ServerName == st.CachedInfo().Cluster.Leader {
			leader = n
		}
	}
	if leader == nil {
		t.Fatalf("no node is the stream leader %q", st.CachedInfo().Cluster.Leader)
	}
	// Connected to the leader's server only; the others are learnt from it.
	b, err := bus.Open(ctx, discard(), bus.Options{URL: leader.URL(), Name: "on-the-leader"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitFor(t, 10*time.Second, "the other servers learnt", func() bool { return len(b.Conn().DiscoveredServers()) == 2 })

	leader.Stop()
	start := time.Now()
	if err := publish(b, 30*time.Second); err != nil {
		t.Fatalf("publish across the loss of the stream leader: %v", err)
	}
	t.Logf("acknowledged %s after the stream leader's server stopped", time.Since(start).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "the setup connection back", func() bool { return setup.Ready(ctx) == nil })
	// At least once: a copy whose acknowledgement was lost may be stored
	// twice. Just after the election a read can come back empty (the new
	// leader still catching up its consumers), so read until both show.
	waitFor(t, 15*time.Second, "the first message and the one sent across the loss, read back", func() bool {
		return len(allStored(t, setup, topic)) >= 2
	})
}

// With the stream out of quorum (two servers of three stopped), an
// asynchronous publish is sent again and again, within PublishTimeout
// (here a minute), but no longer than its caller's context lasts (an
// at-most-once one is not sent again at all); Close
// sends nothing again and has answered every publish when it returns.
func TestPublishAsyncResendsEndWithTheContextAndClose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server NATS cluster")
	}
	nodes := testutil.StartNATSCluster(t, 3)
	ctx := t.Context()
	b, err := bus.Open(ctx, discard(), bus.Options{URL: testutil.ClusterURL(nodes), PublishTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const topic = "projects/p/topics/no-quorum"
	attrs := bus.Attributes{DeviceID: "d"}
	waitFor(t, 30*time.Second, "a first acknowledged publish", func() bool {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return b.PublishNotification(pctx, topic, bus.KindEvent, []byte("x"), attrs) == nil
	})
	for _, n := range nodes[:2] {
		n.Stop()
	}
	waitFor(t, 30*time.Second, "the client on the last server", func() bool { return b.Ready(ctx) == nil })

	// An at-most-once publish (a QoS 0 event) is not sent again: its
	// first attempt's failure is its answer, long before PublishTimeout.
	once := make(chan error, 1)
	if err := b.PublishNotificationAtMostOnce(ctx, topic, bus.KindEvent, []byte("at most once"), attrs, func(err error) { once <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-once:
		if !errors.Is(err, bus.ErrUnavailable) {
			t.Errorf("at-most-once publish without quorum: %v, want ErrUnavailable", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("an at-most-once publish is still unanswered after 30 s: it is being sent again (PublishTimeout is a minute)")
	}

	pctx, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	if err := b.PublishNotificationAsync(pctx, topic, bus.KindEvent, []byte("given up"), attrs, func(err error) { gaveUp <- err }); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	if err := b.PublishNotificationAsync(ctx, topic, bus.KindEvent, []byte("closed"), attrs, func(err error) { closed <- err }); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-gaveUp:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("publish whose context was cancelled: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a publish whose context was cancelled is still being sent again after 30 s (PublishTimeout is a minute)")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if !errors.Is(err, bus.ErrClosed) && !errors.Is(err, bus.ErrUnavailable) {
			t.Errorf("publish outstanding at Close: %v, want ErrClosed or ErrUnavailable", err)
		}
	default:
		t.Error("Close returned before answering the publish it had outstanding")
	}
}
