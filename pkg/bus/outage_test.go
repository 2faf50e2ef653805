package bus_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// announcements records what a subscription's handler got.
type announcements struct {
	mu   sync.Mutex
	got  []bus.Announcement
	kind map[bus.AnnouncementKind]int
}

func (a *announcements) handle(x bus.Announcement) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, x)
	if a.kind == nil {
		a.kind = map[bus.AnnouncementKind]int{}
	}
	a.kind[x.Kind]++
}

func (a *announcements) count(k bus.AnnouncementKind) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.kind[k]
}

// The NATS server stops and starts again on the same port and folder: the
// Bus says it is not ready (once in the log), publishes are not
// acknowledged, commands fail at once, a publish made during the outage
// waits for the server and is acknowledged once stored; afterwards it is
// ready again by itself, subscriptions get a Resync, and announcements and
// commands flow again.
func TestNATSOutageAndRecovery(t *testing.T) {
	node := testutil.NewNATSNode(t, "restarted")
	node.Start()
	var logs syncBuffer
	ctx := t.Context()
	b, err := bus.Open(ctx, textLogger(&logs), bus.Options{URL: node.URL(), Name: "under-test", PublishTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	other := openUnique(t, bus.Options{URL: node.URL(), StreamName: b.StreamName()}) // the manager's side
	var anns announcements
	sub, err := b.WatchAnnouncements(anns.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	var cmds atomic.Int64
	stopCmd, err := b.HandleCommands(7, func(context.Context, bus.Command) error { cmds.Add(1); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer stopCmd()
	const topic = "projects/p/topics/outage"
	publish := func(d time.Duration, data string) error {
		pctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return b.PublishNotification(pctx, topic, bus.KindEvent, []byte(data), bus.Attributes{DeviceID: "d"})
	}
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready before the outage: %v", err)
	}
	if err := publish(5*time.Second, "before"); err != nil {
		t.Fatal(err)
	}

	node.Stop()
	waitFor(t, 10*time.Second, "Ready to fail", func() bool { return b.Ready(ctx) != nil })
	if err := b.Ready(ctx); !errors.Is(err, bus.ErrUnavailable) || !strings.Contains(err.Error(), "not connected to NATS at "+node.URL()) {
		t.Errorf("Ready during the outage: %v", err)
	}
	for i := range 20 {
		if err := publish(100*time.Millisecond, "lost"); !errors.Is(err, bus.ErrUnavailable) {
			t.Fatalf("publish %d during the outage: %v, want an error wrapping ErrUnavailable", i, err)
		}
	}
	if err := b.SendCommand(ctx, 7, bus.Command{Data: []byte("c")}); !errors.Is(err, bus.ErrUnavailable) {
		t.Errorf("SendCommand during the outage: %v", err)
	}
	if err := sub.Sync(ctx); !errors.Is(err, bus.ErrUnavailable) {
		t.Errorf("Sync during the outage: %v", err)
	}
	// A publish made now waits for the server's return.
	waiting := make(chan error, 1)
	go func() { waiting <- publish(30*time.Second, "waited") }()

	node.Start()
	if err := <-waiting; err != nil {
		t.Fatalf("the publish made during the outage: %v", err)
	}
	waitFor(t, 15*time.Second, "Ready again", func() bool { return b.Ready(ctx) == nil })
	waitFor(t, 10*time.Second, "a Resync", func() bool { return anns.count(bus.Resync) == 1 })
	if err := sub.Sync(ctx); err != nil {
		t.Errorf("Sync after the Resync: %v", err)
	}

	waitFor(t, 10*time.Second, "the other connection back", func() bool { return other.Ready(ctx) == nil })
	if err := other.Announce(ctx, bus.Announcement{Kind: bus.DeviceChanged, NumID: 7}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the announcement after the outage", func() bool { return anns.count(bus.DeviceChanged) == 1 })
	waitFor(t, 10*time.Second, "a command after the outage", func() bool {
		return other.SendCommand(ctx, 7, bus.Command{Data: []byte("c")}) == nil && cmds.Load() >= 1
	})
	if err := publish(5*time.Second, "after"); err != nil {
		t.Fatal(err)
	}
	// Everything acknowledged is stored, in order ("lost" ones may be too:
	// the client's buffer kept them; a device would have sent them again).
	var data []string
	for _, m := range allStored(t, b, topic) {
		if s := string(m.Data()); s != "lost" {
			data = append(data, s)
		}
	}
	if got := strings.Join(data, ","); got != "before,waited,after" {
		t.Errorf("stored %s, want before,waited,after", got)
	}

	// One line for the loss and one for the return, whatever was published.
	out := logs.String()
	if n := strings.Count(out, "disconnected from NATS"); n != 1 {
		t.Errorf("%d lines about the loss of the connection, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "reconnected to NATS"); n != 1 {
		t.Errorf("%d lines about the reconnection, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "down_for=") {
		t.Errorf("the reconnection line does not say for how long:\n%s", out)
	}
}

// Sync returns only once the handler has handled what was announced
// before it was called, and does not wait for other subscriptions.
func TestSyncWaitsForTheHandler(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(tb testing.TB, opts bus.Options) *bus.Bus) {
		a, b := pair(t, open)

		release := make(chan struct{})
		var handled atomic.Int64
		sub, err := b.WatchAnnouncements(func(x bus.Announcement) {
			if x.Kind == bus.DeviceChanged {
				<-release
				handled.Add(1)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Stop()
		// Another subscription, stuck: Sync does not wait for it.
		block := make(chan struct{})
		stuck, err := b.WatchAnnouncements(func(bus.Announcement) { <-block })
		if err != nil {
			t.Fatal(err)
		}
		defer stuck.Stop()
		defer close(block) // before Stop, which waits for the handler
		if err := sub.Sync(t.Context()); err != nil {
			t.Fatalf("Sync with nothing announced: %v", err)
		}
		if err := a.Announce(t.Context(), bus.Announcement{Kind: bus.DeviceChanged, NumID: 9}); err != nil {
			t.Fatal(err)
		}
		synced := make(chan error, 1)
		go func() { synced <- sub.Sync(t.Context()) }()
		select {
		case err := <-synced:
			t.Fatalf("Sync returned (%v) while the handler was still blocked", err)
		case <-time.After(100 * time.Millisecond):
		}
		close(release)
		if err := <-synced; err != nil {
			t.Fatal(err)
		}
		if handled.Load() != 1 {
			t.Fatal("Sync returned before the handler handled the announcement")
		}

		// The stuck handler's own Sync ends with the caller's deadline.
		sctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		if err := stuck.Sync(sctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Sync with a stuck handler: %v", err)
		}
	})
}

// pair opens two Buses on one server with the same names: the embedded
// server of the first, served on a port, or the external one.
func pair(t *testing.T, open func(tb testing.TB, opts bus.Options) *bus.Bus) (a, b *bus.Bus) {
	t.Helper()
	if u := externalURL(t); u != "" && strings.HasSuffix(t.Name(), "/external") {
		id := uniqueID(t)
		opts := bus.Options{URL: u, StreamName: "PASSERELLE_TEST_" + strings.ToUpper(id), SubjectPrefix: "ptest." + id + ".pubsub",
			ControlPrefix: "ptest." + id + ".ctl", Stream: bus.StreamLimits{MaxBytes: 64 << 20}}
		return openUnique(t, opts), openUnique(t, opts)
	}
	a = open(t, bus.Options{ListenAddr: "127.0.0.1:0"})
	return a, openUnique(t, bus.Options{URL: a.Server().ClientURL(), StreamName: a.StreamName()})
}

// allStored reads every message the stream holds for topic, oldest first.
func allStored(tb testing.TB, b *bus.Bus, topic string) []jetstream.Msg {
	tb.Helper()
	subject, err := b.TopicSubject(topic)
	if err != nil {
		tb.Fatal(err)
	}
	js, err := jetstream.New(b.Conn())
	if err != nil {
		tb.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctxT(tb), b.StreamName(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		tb.Fatal(err)
	}
	batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	return msgs
}
