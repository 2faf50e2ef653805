package bus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/bus"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// backend opens a Bus for a test: the embedded server in a temporary
// folder, or the external server of PASSERELLE_TEST_NATS_URL with names of
// its own so that parallel tests and other users do not collide.
type backend struct {
	name string
	open func(tb testing.TB, opts bus.Options) *bus.Bus
}

func externalURL(tb testing.TB) string {
	u := os.Getenv("PASSERELLE_TEST_NATS_URL")
	if u == "" && os.Getenv("CI") == "true" {
		tb.Fatal("PASSERELLE_TEST_NATS_URL is required when CI=true")
	}
	return u
}

func backends(tb testing.TB) []backend {
	bs := []backend{{name: "embedded", open: openEmbedded}}
	if u := externalURL(tb); u != "" {
		bs = append(bs, backend{name: "external", open: func(tb testing.TB, opts bus.Options) *bus.Bus {
			opts.URL = u
			return openUnique(tb, opts)
		}})
	}
	return bs
}

// eachBackend runs f as a subtest on every backend.
func eachBackend(t *testing.T, f func(t *testing.T, open func(tb testing.TB, opts bus.Options) *bus.Bus)) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) { f(t, be.open) })
	}
}

func openEmbedded(tb testing.TB, opts bus.Options) *bus.Bus {
	tb.Helper()
	if opts.DataDir == "" {
		opts.DataDir = tb.TempDir()
	}
	b, err := bus.Open(context.Background(), discard(), opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

func uniqueID(tb testing.TB) string {
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(r[:])
}

// openUnique opens a Bus on an external server with a stream and subjects
// of its own, deleted when the test ends.
func openUnique(tb testing.TB, opts bus.Options) *bus.Bus {
	tb.Helper()
	id := uniqueID(tb)
	if opts.StreamName == "" {
		opts.StreamName = "PASSERELLE_TEST_" + strings.ToUpper(id)
		opts.SubjectPrefix = "ptest." + id + ".pubsub"
		opts.ControlPrefix = "ptest." + id + ".ctl"
		opts.Stream.MaxBytes = 64 << 20
	}
	b, err := bus.Open(context.Background(), discard(), opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if js, err := jetstream.New(b.Conn()); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = js.DeleteStream(ctx, opts.StreamName)
			cancel()
		}
		_ = b.Close()
	})
	return b
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// storedNotifications reads up to n messages the stream holds for topic,
// oldest first.
func storedNotifications(tb testing.TB, ctx context.Context, b *bus.Bus, topic string, n int) []jetstream.Msg {
	tb.Helper()
	subject, err := b.TopicSubject(topic)
	if err != nil {
		tb.Fatal(err)
	}
	js, err := jetstream.New(b.Conn())
	if err != nil {
		tb.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, b.StreamName(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		tb.Fatalf("OrderedConsumer: %v", err)
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != n {
		tb.Fatalf("got %d stored messages, want %d (%v)", len(msgs), n, batch.Error())
	}
	return msgs
}
