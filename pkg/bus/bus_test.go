package bus_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/datadir"
)

const topic = "projects/my-project/topics/my.events"

func TestTopicSubject(t *testing.T) {
	valid := []struct{ topic, subject string }{
		{"projects/my-project/topics/events", "iot.pubsub.my-project.events"},
		{"projects/my-project/topics/my.events", "iot.pubsub.my-project.my%2Eevents"},
		{"projects/p1/topics/a%2Eb", "iot.pubsub.p1.a%252Eb"},
		{"projects/example.com:proj/topics/Tel_e~m+x-1", "iot.pubsub.example%2Ecom:proj.Tel_e~m+x-1"},
	}
	for _, c := range valid {
		got, err := bus.TopicSubject(c.topic)
		if err != nil || got != c.subject {
			t.Errorf("TopicSubject(%q) = %q, %v; want %q", c.topic, got, err, c.subject)
		}
	}
	invalid := []string{
		"", "events", "projects/p/topics/", "projects/p/topics/ab", "projects/p/topics/goog-events",
		"projects/p/topics/1events", "projects/p/topics/ev ents", "projects/p/topics/ev*nts",
		"projects/p/topics/ev>nts", "projects/p/topics/a/b/c", "projects//topics/events",
		"projects/p q/topics/events", "projects/p/subscriptions/events", "projects/p/topics/" + strings.Repeat("a", 256),
	}
	for _, tp := range invalid {
		if got, err := bus.TopicSubject(tp); !errors.Is(err, bus.ErrInvalidTopic) {
			t.Errorf("TopicSubject(%q) = %q, %v; want ErrInvalidTopic", tp, got, err)
		}
	}
}

func FuzzTopicSubject(f *testing.F) {
	f.Add("projects/p/topics/abc")
	f.Add("projects/a.b:c/topics/x.y%z")
	f.Fuzz(func(t *testing.T, tp string) {
		subject, err := bus.TopicSubject(tp)
		if err != nil {
			return
		}
		// Exactly prefix (2 tokens) + project + topic, no wildcard, no space.
		tokens := strings.Split(subject, ".")
		if len(tokens) != 4 {
			t.Fatalf("%q -> %q: %d tokens", tp, subject, len(tokens))
		}
		for _, tok := range tokens {
			if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n*>") {
				t.Fatalf("%q -> %q: bad token %q", tp, subject, tok)
			}
		}
	})
}

func TestNotificationStored(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(testing.TB, bus.Options) *bus.Bus) {
		b := open(t, bus.Options{})
		ctx := ctxT(t)
		all := bus.Attributes{
			DeviceID: "dev-1", DeviceNumID: "2820001", DeviceRegistryID: "reg-1",
			DeviceRegistryLocation: "europe-west1", ProjectID: "my-project",
			SubFolder: "a/b", GatewayID: "gw-1",
		}
		if err := b.PublishNotification(ctx, topic, bus.KindEvent, []byte("event-1"), all); err != nil {
			t.Fatalf("PublishNotification: %v", err)
		}
		few := bus.Attributes{DeviceID: "dev-1", DeviceNumID: "2820001", ProjectID: "my-project"}
		if err := b.PublishNotification(ctx, topic, bus.KindState, []byte("state-1"), few); err != nil {
			t.Fatalf("PublishNotification: %v", err)
		}
		acked := make(chan error, 1)
		if err := b.PublishNotificationAsync(ctx, topic, bus.KindEvent, []byte("event-2"), few, func(err error) { acked <- err }); err != nil {
			t.Fatalf("PublishNotificationAsync: %v", err)
		}
		if err := <-acked; err != nil {
			t.Fatalf("async ack: %v", err)
		}
		if err := b.PublishNotificationAtMostOnce(ctx, topic, bus.KindEvent, []byte("event-3"), few, func(err error) { acked <- err }); err != nil {
			t.Fatalf("PublishNotificationAtMostOnce: %v", err)
		}
		if err := <-acked; err != nil {
			t.Fatalf("at-most-once ack: %v", err)
		}

		subject, _ := b.TopicSubject(topic)
		msgs := storedNotifications(t, ctx, b, topic, 4)
		wantHeaders := []nats.Header{
			{"iot-kind": {"event"}, "deviceId": {"dev-1"}, "deviceNumId": {"2820001"}, "deviceRegistryId": {"reg-1"},
				"deviceRegistryLocation": {"europe-west1"}, "projectId": {"my-project"}, "subFolder": {"a/b"}, "gatewayId": {"gw-1"}},
			{"iot-kind": {"state"}, "deviceId": {"dev-1"}, "deviceNumId": {"2820001"}, "projectId": {"my-project"}},
			{"iot-kind": {"event"}, "deviceId": {"dev-1"}, "deviceNumId": {"2820001"}, "projectId": {"my-project"}},
			{"iot-kind": {"event"}, "deviceId": {"dev-1"}, "deviceNumId": {"2820001"}, "projectId": {"my-project"}},
		}
		// Each carries its own message id, so that a copy sent again is
		// stored once; the rest are the attributes. The at-most-once one
		// is never sent again and has none.
		ids := map[string]bool{}
		for i, m := range msgs {
			id := m.Headers().Get(nats.MsgIdHdr)
			if i == 3 {
				if id != "" {
					t.Errorf("the at-most-once message has Nats-Msg-Id %q, want none", id)
				}
				continue
			}
			if id == "" || ids[id] {
				t.Errorf("message %d: Nats-Msg-Id %q, want one of its own", i, id)
			}
			ids[id] = true
			m.Headers().Del(nats.MsgIdHdr)
		}
		for i, m := range msgs {
			if m.Subject() != subject {
				t.Errorf("message %d subject %q, want %q", i, m.Subject(), subject)
			}
			if want := []string{"event-1", "state-1", "event-2", "event-3"}[i]; string(m.Data()) != want {
				t.Errorf("message %d data %q, want %q", i, m.Data(), want)
			}
			if got := fmt.Sprint(m.Headers()); got != fmt.Sprint(wantHeaders[i]) {
				t.Errorf("message %d headers\n got %v\nwant %v", i, got, wantHeaders[i])
			}
		}
		if got := bus.AttributesFromHeader(msgs[0].Headers()); got != all {
			t.Errorf("AttributesFromHeader = %+v, want %+v", got, all)
		}
	})
}

func TestPublishRefusesInvalid(t *testing.T) {
	b := openEmbedded(t, bus.Options{})
	ctx := ctxT(t)
	if err := b.PublishNotification(ctx, "projects/p/topics/x", bus.KindEvent, nil, bus.Attributes{}); !errors.Is(err, bus.ErrInvalidTopic) {
		t.Errorf("short topic id: %v, want ErrInvalidTopic", err)
	}
	if err := b.PublishNotificationAsync(ctx, "topics/x", bus.KindEvent, nil, bus.Attributes{}, nil); !errors.Is(err, bus.ErrInvalidTopic) {
		t.Errorf("async bad topic: %v, want ErrInvalidTopic", err)
	}
	if err := b.PublishNotification(ctx, topic, bus.Kind("telemetry"), nil, bus.Attributes{}); !errors.Is(err, bus.ErrInvalid) {
		t.Errorf("bad kind: %v, want ErrInvalid", err)
	}
}

func TestAnnouncements(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(testing.TB, bus.Options) *bus.Bus) {
		b := open(t, bus.Options{})
		ctx := ctxT(t)
		type rec struct {
			mu  sync.Mutex
			got []bus.Announcement
		}
		var r1, r2 rec
		handler := func(r *rec) func(bus.Announcement) {
			return func(a bus.Announcement) { r.mu.Lock(); r.got = append(r.got, a); r.mu.Unlock() }
		}
		count := func(r *rec) int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.got) }
		stop1, err := b.SubscribeAnnouncements(handler(&r1))
		if err != nil {
			t.Fatal(err)
		}
		stop2, err := b.SubscribeAnnouncements(handler(&r2))
		if err != nil {
			t.Fatal(err)
		}
		defer stop2()
		sent := []bus.Announcement{
			{Kind: bus.ConfigChanged, Project: "p", Location: "l", Registry: "r", DeviceID: "d", NumID: 18446744073709551615,
				Config: &bus.AnnouncedConfig{Version: 7, Data: []byte{0, 1, 0xff}}},
			{Kind: bus.DeviceChanged, Project: "p", Location: "l", Registry: "r", DeviceID: "d", NumID: 1},
			{Kind: bus.DeviceDeleted, Project: "p", Location: "l", Registry: "r", DeviceID: "e", NumID: 2},
			{Kind: bus.RegistryChanged, Project: "p", Location: "l", Registry: "r.1"},
			{Kind: bus.RegistryDeleted, Project: "p", Location: "l", Registry: "r"},
		}
		for _, a := range sent {
			if err := b.Announce(ctx, a); err != nil {
				t.Fatalf("Announce: %v", err)
			}
		}
		waitFor(t, 5*time.Second, "announcements", func() bool { return count(&r1) == len(sent) && count(&r2) == len(sent) })
		for i, a := range sent {
			if !reflect.DeepEqual(r1.got[i], a) || !reflect.DeepEqual(r2.got[i], a) {
				t.Errorf("announcement %d: got %+v and %+v, want %+v", i, r1.got[i], r2.got[i], a)
			}
		}

		stop1()
		stop1() // idempotent
		if err := b.Announce(ctx, sent[0]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "one more announcement", func() bool { return count(&r2) == len(sent)+1 })
		if n := count(&r1); n != len(sent) {
			t.Errorf("stopped subscription got %d announcements, want %d", n, len(sent))
		}
		if got, want := r2.got[3].RegistryName(), "projects/p/locations/l/registries/r.1"; got != want {
			t.Errorf("RegistryName() = %q, want %q", got, want)
		}

		if err := b.Announce(ctx, bus.Announcement{Kind: bus.Resync, NumID: 1}); !errors.Is(err, bus.ErrInvalid) {
			t.Errorf("Announce(Resync) = %v, want ErrInvalid", err)
		}
		if err := b.Announce(ctx, bus.Announcement{Kind: bus.DeviceChanged}); !errors.Is(err, bus.ErrInvalid) {
			t.Errorf("Announce without NumID = %v, want ErrInvalid", err)
		}
		for _, a := range []bus.Announcement{
			{Kind: bus.RegistryChanged, Project: "p", Location: "l"},
			{Kind: bus.RegistryDeleted, Project: "p", Location: "l", Registry: "r", NumID: 1},
		} {
			if err := b.Announce(ctx, a); !errors.Is(err, bus.ErrInvalid) {
				t.Errorf("Announce(%+v) = %v, want ErrInvalid", a, err)
			}
		}
	})
}

// A handler that falls behind loses announcements and gets a Resync.
func TestAnnouncementsOverflowResync(t *testing.T) {
	b := openEmbedded(t, bus.Options{AnnouncementBuffer: 4})
	ctx := ctxT(t)
	release := make(chan struct{})
	var n, resyncs atomic.Int64
	stop, err := b.SubscribeAnnouncements(func(a bus.Announcement) {
		<-release
		if a.Kind == bus.Resync {
			resyncs.Add(1)
		} else {
			n.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for i := 0; i < 100; i++ {
		if err := b.Announce(ctx, bus.Announcement{Kind: bus.DeviceChanged, NumID: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	close(release)
	waitFor(t, 5*time.Second, "a resync", func() bool { return resyncs.Load() >= 1 })
	if got := n.Load(); got >= 100 {
		t.Errorf("handled %d announcements, expected some dropped", got)
	}
}

func TestCommands(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(testing.TB, bus.Options) *bus.Bus) {
		b := open(t, bus.Options{})
		ctx := ctxT(t)
		type got struct {
			cmd         bus.Command
			hasDeadline bool
		}
		received := make(chan got, 1)
		stop, err := b.HandleCommands(42, func(ctx context.Context, cmd bus.Command) error {
			_, ok := ctx.Deadline()
			received <- got{cmd, ok}
			switch string(cmd.Data) {
			case "fail":
				return errors.New("device is not subscribed to the commands topic")
			case "gone":
				return fmt.Errorf("just disconnected: %w", bus.ErrNotConnected)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		if err := b.SendCommand(ctx, 42, bus.Command{Data: []byte("reboot"), SubFolder: "power/now"}); err != nil {
			t.Fatalf("SendCommand: %v", err)
		}
		g := <-received
		if string(g.cmd.Data) != "reboot" || g.cmd.SubFolder != "power/now" || !g.hasDeadline {
			t.Errorf("handler got %+v (deadline %v)", g.cmd, g.hasDeadline)
		}

		err = b.SendCommand(ctx, 42, bus.Command{Data: []byte("fail")})
		<-received
		if !errors.Is(err, bus.ErrCommandFailed) || !strings.Contains(err.Error(), "not subscribed to the commands topic") {
			t.Errorf("failing handler: %v, want ErrCommandFailed with the handler's message", err)
		}
		err = b.SendCommand(ctx, 42, bus.Command{Data: []byte("gone")})
		<-received
		if !errors.Is(err, bus.ErrNotConnected) {
			t.Errorf("handler returning ErrNotConnected: %v", err)
		}

		// No handler: answered at once, not after a timeout.
		start := time.Now()
		if err := b.SendCommand(context.Background(), 43, bus.Command{Data: []byte("x")}); !errors.Is(err, bus.ErrNotConnected) {
			t.Errorf("device without handler: %v, want ErrNotConnected", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("ErrNotConnected took %v", d)
		}

		stop()
		stop()
		if err := b.SendCommand(ctx, 42, bus.Command{Data: []byte("x")}); !errors.Is(err, bus.ErrNotConnected) {
			t.Errorf("after stop: %v, want ErrNotConnected", err)
		}

		// A slow handler past the sender's deadline.
		stop, err = b.HandleCommands(44, func(ctx context.Context, _ bus.Command) error {
			<-ctx.Done()
			return ctx.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if err := b.SendCommand(short, 44, bus.Command{}); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("slow handler: %v, want DeadlineExceeded", err)
		}
	})
}

// A manager and a bridge on two connections: the embedded server of one
// serves the other over TCP, as the all-in-one binary could.
func TestTwoProcesses(t *testing.T) {
	bridge := openEmbedded(t, bus.Options{ListenAddr: "127.0.0.1:0"})
	addr := bridge.Server().Addr()
	if addr == nil {
		t.Fatal("ListenAddr set but the server listens nowhere")
	}
	manager, err := bus.Open(context.Background(), discard(), bus.Options{URL: bridge.Server().ClientURL(), Name: "manager"})
	if err != nil {
		t.Fatalf("Open on the first one's server: %v", err)
	}
	defer manager.Close()
	ctx := ctxT(t)

	got := make(chan string, 1)
	stop, err := bridge.HandleCommands(7, func(_ context.Context, cmd bus.Command) error { got <- string(cmd.Data); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := manager.SendCommand(ctx, 7, bus.Command{Data: []byte("hello")}); err != nil {
		t.Fatalf("SendCommand across connections: %v", err)
	}
	if s := <-got; s != "hello" {
		t.Errorf("got %q", s)
	}
	if err := manager.SendCommand(ctx, 8, bus.Command{}); !errors.Is(err, bus.ErrNotConnected) {
		t.Errorf("SendCommand to a device no one holds: %v", err)
	}

	anns := make(chan bus.Announcement, 1)
	stopA, err := bridge.SubscribeAnnouncements(func(a bus.Announcement) { anns <- a })
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	want := bus.Announcement{Kind: bus.ConfigChanged, NumID: 7, Config: &bus.AnnouncedConfig{Version: 3, Data: []byte("c")}}
	if err := manager.Announce(ctx, want); err != nil {
		t.Fatal(err)
	}
	if a := <-anns; !reflect.DeepEqual(a, want) {
		t.Errorf("announcement %+v, want %+v", a, want)
	}
}

func TestEmbeddedListensNowhereByDefault(t *testing.T) {
	b := openEmbedded(t, bus.Options{})
	if addr := b.Server().Addr(); addr != nil {
		t.Errorf("embedded server listens on %v", addr)
	}
	if err := b.Conn().Flush(); err != nil {
		t.Errorf("in-process connection: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := ctxT(t)
	if _, err := bus.Open(ctx, discard(), bus.Options{}); !errors.Is(err, bus.ErrInvalid) {
		t.Errorf("no URL and no DataDir: %v, want ErrInvalid", err)
	}

	// Nothing listens on a port we just closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "nats://user:secret@" + l.Addr().String()
	l.Close()
	_, err = bus.Open(ctx, discard(), bus.Options{URL: deadURL})
	if err == nil || !strings.Contains(err.Error(), "-js") || strings.Contains(err.Error(), "secret") {
		t.Errorf("unreachable server: %v (want advice, no password)", err)
	}

	// A server without JetStream.
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("test server not ready")
	}
	_, err = bus.Open(ctx, discard(), bus.Options{URL: srv.ClientURL()})
	if err == nil || !strings.Contains(err.Error(), "JetStream is not enabled") {
		t.Errorf("server without JetStream: %v", err)
	}
}

// Opening twice on the same data folder (a restart) keeps the messages.
func TestReopenKeepsMessages(t *testing.T) {
	dir := t.TempDir()
	ctx := ctxT(t)
	b, err := bus.Open(ctx, discard(), bus.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PublishNotification(ctx, topic, bus.KindEvent, []byte("kept"), bus.Attributes{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openEmbedded(t, bus.Options{DataDir: dir})
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, b.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("stream holds %d messages after reopening, want 1", n)
	}
}

func TestCloseIdempotentNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx := ctxT(t)
	b, err := bus.Open(ctx, discard(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.SubscribeAnnouncements(func(bus.Announcement) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.HandleCommands(1, func(context.Context, bus.Command) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.SendCommand(ctx, 1, bus.Command{}); err != nil {
		t.Fatal(err)
	}
	var acked atomic.Int64
	for i := 0; i < 100; i++ {
		if err := b.PublishNotificationAsync(ctx, topic, bus.KindEvent, []byte("x"), bus.Attributes{}, func(err error) {
			if err == nil {
				acked.Add(1)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := acked.Load(); n != 100 {
		t.Errorf("%d of 100 async publishes acknowledged before Close returned", n)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := b.PublishNotification(ctx, topic, bus.KindEvent, nil, bus.Attributes{}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("publish after Close: %v, want ErrClosed", err)
	}
	if err := b.PublishNotificationAsync(ctx, topic, bus.KindEvent, nil, bus.Attributes{}, nil); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("async publish after Close: %v, want ErrClosed", err)
	}
	if _, err := b.HandleCommands(2, func(context.Context, bus.Command) error { return nil }); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("HandleCommands after Close: %v, want ErrClosed", err)
	}
	if _, err := b.SubscribeAnnouncements(func(bus.Announcement) {}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("SubscribeAnnouncements after Close: %v, want ErrClosed", err)
	}
	if err := b.SendCommand(ctx, 1, bus.Command{}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("SendCommand after Close: %v, want ErrClosed", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two embedded servers on one JetStream folder would corrupt it: the
// second Open is refused, naming the first, and the folder is free again
// once the first is closed.
func TestEmbeddedFolderIsHeld(t *testing.T) {
	dir := t.TempDir()
	first, err := bus.Open(t.Context(), discard(), bus.Options{DataDir: dir, Name: "bridge-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bus.Open(t.Context(), discard(), bus.Options{DataDir: dir, Name: "bridge-2"})
	if !errors.Is(err, datadir.ErrInUse) || !strings.Contains(err.Error(), "embedded NATS of bridge-1") {
		t.Fatalf("second Open on the folder: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := bus.Open(t.Context(), discard(), bus.Options{DataDir: dir, Name: "bridge-2"})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	again.Close()
}

// The stream's duplicate window covers a publish and its resends (twice
// PublishTimeout), so that a copy sent again is stored once.
func TestDuplicateWindow(t *testing.T) {
	b := openEmbedded(t, bus.Options{PublishTimeout: 7 * time.Second})
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctxT(t), b.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.Duplicates; got != 14*time.Second {
		t.Errorf("stream Duplicates %s, want 14s", got)
	}
}
