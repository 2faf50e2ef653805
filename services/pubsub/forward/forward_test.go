package forward_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/pubsub/forward"
)

// TestForwardToGoogle forwards device events to pstest, Google's fake
// Pub/Sub, through a proxy that is cut for a while: the events wait in the
// stream, the backlog shows them, and every one arrives once Google is
// back, with its Cloud IoT attributes.
func TestForwardToGoogle(t *testing.T) {
	ctx := context.Background()
	log := testutil.Logger(t)
	b := testutil.Must(bus.Open(ctx, log, bus.Options{DataDir: filepath.Join(t.TempDir(), "nats")}))
	t.Cleanup(func() { _ = b.Close() })
	fake := pstest.NewServer()
	t.Cleanup(func() { _ = fake.Close() })
	proxy := testutil.NewProxy(t, fake.Addr)
	google := testutil.Must(pubsub.NewClient(ctx, "gcp", option.WithEndpoint(proxy.Addr()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))))
	t.Cleanup(func() { _ = google.Close() })
	if _, err := google.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/gcp/topics/mirror"}); err != nil {
		t.Fatal(err)
	}
	route := forward.Route{From: "projects/p/topics/events", To: "projects/gcp/topics/mirror"}
	f := testutil.Must(forward.New(log, b, google, []forward.Route{route}, forward.WithBackoff(50*time.Millisecond, 200*time.Millisecond)))
	stop := testutil.Serve(t, f.Run)
	defer stop()

	publish := func(from, to int) {
		for i := from; i < to; i++ {
			if err := b.PublishNotification(ctx, route.From, bus.KindEvent, fmt.Appendf(nil, "e%d", i),
				bus.Attributes{DeviceID: "dev-1", DeviceRegistryID: "reg", ProjectID: "p"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Events before the route's consumer exists are not for it: send
	// until one arrives.
	testutil.WaitFor(t, 20*time.Second, func() error {
		publish(0, 1)
		if n := len(fake.Messages()); n == 0 {
			return fmt.Errorf("%d messages at Google", n)
		}
		return nil
	})
	proxy.Cut()
	publish(1, 20)
	testutil.WaitFor(t, 20*time.Second, func() error {
		if n := f.Backlog(route); n == 0 {
			return fmt.Errorf("backlog %d while Google is unreachable", n)
		}
		return nil
	})
	proxy.Restore()
	testutil.WaitFor(t, 60*time.Second, func() error {
		got := map[string]bool{}
		for _, m := range fake.Messages() {
			got[string(m.Data)] = true
			if m.Attributes["deviceId"] != "dev-1" || m.Attributes["deviceRegistryId"] != "reg" || m.Attributes["iot-kind"] != "" {
				return fmt.Errorf("attributes at Google: %v", m.Attributes)
			}
		}
		if len(got) < 20 { // e0 .. e19
			return fmt.Errorf("%d of 20 events at Google", len(got))
		}
		return nil
	})
}
