package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	pubsubv1 "cloud.google.com/go/pubsub"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// TestPubSubTelemetryCrash is the check, once with each of
// Google's Go clients (pubsub/v2, and v1's pubsub.NewClient, which teams
// moving from Cloud IoT still run): the client receives device telemetry published over MQTT, acks, nacks and sees the
// redelivery, and resumes after passerelle serve is SIGKILLed and started
// again, with no acknowledged event lost and none whose ack was confirmed
// delivered again; then the same through PUBSUB_EMULATOR_HOST. The kill
// comes right after an ack is confirmed, inside the window in which
// JetStream has the ack only in memory (it writes a consumer's state to
// disk on a 100 ms flush): the ack journal must make it stick.
func TestPubSubTelemetryCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	for _, v := range []struct {
		name string
		dial func(ctx context.Context, project string, opts ...option.ClientOption) (goPubSub, error)
	}{{"v2", dialV2}, {"v1", dialV1}} {
		t.Run(v.name, func(t *testing.T) { testPubSubTelemetryCrash(t, bin, v.dial) })
	}
}

func testPubSubTelemetryCrash(t *testing.T, bin string, dialPubSub func(context.Context, string, ...option.ClientOption) (goPubSub, error)) {
	dataDir := filepath.Join(t.TempDir(), "data")
	adminAddr, mqttAddr, psAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	start := func() *exec.Cmd {
		t.Helper()
		cmd, banner := startServeBinary(t, bin, "--data-dir", dataDir, "--admin-addr", adminAddr,
			"--mqtt-addr", "", "--mqtt-plain-addr", mqttAddr, "--hub-addr", "", "--pubsub-addr", psAddr, "--pubsub-allow-unauthenticated")
		if !strings.Contains(banner, "Pub/Sub API:  "+psAddr) || !strings.Contains(banner, "UNAUTHENTICATED") {
			t.Errorf("the banner does not say the Pub/Sub API takes unauthenticated calls:\n%s", banner)
		}
		return cmd
	}
	cmd := start()
	ctx := context.Background()
	token := strings.TrimSpace(string(testutil.Must(os.ReadFile(filepath.Join(dataDir, "admin.token")))))
	dial := []option.ClientOption{option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(token)))}
	c, err := iot.NewDeviceManagerClient(ctx, append([]option.ClientOption{option.WithEndpoint(adminAddr)}, dial...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key, pubPEM := es256Key(t)
	// The registry names the topic; nobody creates it.
	reg, err := c.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{
		Parent: "projects/p1/locations/us-central1",
		DeviceRegistry: &iotpb.DeviceRegistry{Id: "ps-reg",
			EventNotificationConfigs: []*iotpb.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/ps-events"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg.GetName(), Device: &iotpb.Device{
		Id: "dev-1",
		Credentials: []*iotpb.DeviceCredential{{Credential: &iotpb.DeviceCredential_PublicKey{
			PublicKey: &iotpb.PublicKeyCredential{Format: iotpb.PublicKeyFormat_ES256_PEM, Key: pubPEM}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}

	ps, err := dialPubSub(ctx, "p1", append([]option.ClientOption{option.WithEndpoint(psAddr)}, dial...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if err := ps.createSubscription(ctx, "app", "ps-events", true); err != nil {
		t.Fatal(err)
	}

	mc := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).
		SetClientID(reg.GetName() + "/devices/dev-1").SetUsername("unused").
		SetPassword(testutil.Must(jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
			IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)), Audience: jwt.ClaimStrings{"p1"},
		}).SignedString(key))).SetProtocolVersion(4).SetAutoReconnect(false))
	if tok := mc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT connect: %v", tok.Error())
	}
	const events = 40
	for i := range events {
		if tok := mc.Publish("/devices/dev-1/events/sensors", 1, false, fmt.Appendf(nil, "e%02d", i)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("event %d: %v", i, tok.Error())
		}
	}
	mc.Disconnect(100)

	// Receive: the even events are acked (and the ack confirmed), the odd
	// ones nacked until the crash, and acked when they come back after it.
	// e00's ack waits for release; the kill follows its confirmation.
	var (
		crashed   atomic.Bool
		release   = make(chan struct{})
		lastAck   = make(chan struct{})
		held      atomic.Bool
		mu        sync.Mutex
		deliver   = map[string]int{} // payload -> deliveries
		confirmed = map[string]bool{}
		ids       = map[string]string{} // payload -> message id
		problems  []string
	)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- ps.receive(rctx, "app", func(ctx context.Context, m *pubsub.Message) {
			p := string(m.Data)
			mu.Lock()
			deliver[p]++

			if id, ok := ids[p]; ok && id != m.ID {
				problems = append(problems, fmt.Sprintf("%s came back with id %s, first %s", p, m.ID, id))
			}
			ids[p] = m.ID
			if confirmed[p] {
				problems = append(problems, fmt.Sprintf("%s was delivered again after its ack was confirmed (crashed: %v)", p, crashed.Load()))
			}
			if m.Attributes["deviceId"] != "dev-1" || m.Attributes["deviceRegistryId"] != "ps-reg" || m.Attributes["projectId"] != "p1" ||
				m.Attributes["deviceRegistryLocation"] != "us-central1" || m.Attributes["subFolder"] != "sensors" || m.Attributes["deviceNumId"] == "" {
				problems = append(problems, fmt.Sprintf("%s: attributes %v", p, m.Attributes))
			}
			mu.Unlock()
			odd := (p[len(p)-1]-'0')%2 == 1
			if odd && !crashed.Load() {
				m.Nack()
				return
			}
			hold := p == "e00" && held.CompareAndSwap(false, true)
			if hold {
				select {
				case <-release:
				case <-ctx.Done():
					return
				}
			}
			if s, err := m.AckWithResult().Get(ctx); err == nil && s == pubsub.AcknowledgeStatusSuccess {
				mu.Lock()
				confirmed[p] = true
				mu.Unlock()
				if hold {
					close(lastAck)
				}
			}
		})
	}()
	count := func(f func(p string) bool) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for i := range events {
			if f(fmt.Sprintf("e%02d", i)) {
				n++
			}
		}
		return n
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		if n := count(func(p string) bool { return confirmed[p] && (p[2]-'0')%2 == 0 }); n < events/2-1 {
			return fmt.Errorf("%d of %d even events acked", n, events/2-1)
		}
		return nil
	})

	// Every odd one was nacked at least once.
	testutil.WaitFor(t, 60*time.Second, func() error {
		if n := count(func(p string) bool { return deliver[p] > 0 }); n < events {
			return fmt.Errorf("%d of %d events delivered", n, events)
		}
		return nil
	})
	// Release e00 and kill as soon as its ack is confirmed.
	close(release)
	select {
	case <-lastAck:
	case <-time.After(30 * time.Second):
		t.Fatal("e00's ack was not confirmed")
	}
	crashed.Store(true)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	start()
	t.Log("killed right after an ack was confirmed; started again")
	// The client reconnects by itself, and every event ends acked.
	testutil.WaitFor(t, 90*time.Second, func() error {
		if n := count(func(p string) bool { return confirmed[p] }); n < events {
			return fmt.Errorf("%d of %d events acked", n, events)
		}
		return nil
	})
	t.Log("every event acked")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for _, p := range problems {
		t.Error(p)
	}
	for i := 1; i < events; i += 2 {
		if p := fmt.Sprintf("e%02d", i); deliver[p] < 2 {
			// nacked before the crash, acked after
			t.Errorf("%s was nacked and delivered %d times", p, deliver[p])
		}
	}
	mu.Unlock()

	// The same through PUBSUB_EMULATOR_HOST: no endpoint, no credentials.
	t.Setenv("PUBSUB_EMULATOR_HOST", psAddr)
	em, err := dialPubSub(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	if err := em.createSubscription(ctx, "emu", "ps-events", false); err != nil {
		t.Fatal(err)
	}
	id, err := em.publish(ctx, "ps-events", []byte("via-emulator-host"))
	if err != nil {
		t.Fatal(err)
	}
	ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
	defer ecancel()
	var got string
	if err := em.receive(ectx, "emu", func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		got = m.ID + " " + string(m.Data)
		ecancel()
	}); err != nil {
		t.Fatal(err)
	}
	if got != id+" via-emulator-host" {
		t.Errorf("through PUBSUB_EMULATOR_HOST received %q, want %q", got, id+" via-emulator-host")
	}
}

// goPubSub is what the test does with one of Google's Go Pub/Sub clients.
// Both deliver the same *pubsub.Message (an alias of one internal type).
type goPubSub interface {
	createSubscription(ctx context.Context, id, topic string, exactlyOnce bool) error
	// receive's streams ask for the subscription's 10 s (not Go's default
	// 60 s): a nack lost in a crash comes back 10 s after the restart.
	receive(ctx context.Context, sub string, f func(context.Context, *pubsub.Message)) error
	publish(ctx context.Context, topic string, data []byte) (string, error)
	Close() error
}

type goPubSubV2 struct{ *pubsub.Client }

func dialV2(ctx context.Context, project string, opts ...option.ClientOption) (goPubSub, error) {
	c, err := pubsub.NewClient(ctx, project, opts...)
	return goPubSubV2{c}, err
}

func (c goPubSubV2) createSubscription(ctx context.Context, id, topic string, exactlyOnce bool) error {
	_, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/" + c.Project() + "/subscriptions/" + id, Topic: "projects/" + c.Project() + "/topics/" + topic,
		AckDeadlineSeconds: 10, EnableExactlyOnceDelivery: exactlyOnce,
	})
	return err
}

func (c goPubSubV2) receive(ctx context.Context, sub string, f func(context.Context, *pubsub.Message)) error {
	s := c.Subscriber(sub)
	s.ReceiveSettings.MaxDurationPerAckExtension = 10 * time.Second
	return s.Receive(ctx, f)
}

func (c goPubSubV2) publish(ctx context.Context, topic string, data []byte) (string, error) {
	p := c.Publisher(topic)
	defer p.Stop()
	return p.Publish(ctx, &pubsub.Message{Data: data}).Get(ctx)
}

type goPubSubV1 struct{ *pubsubv1.Client }

func dialV1(ctx context.Context, project string, opts ...option.ClientOption) (goPubSub, error) {
	c, err := pubsubv1.NewClient(ctx, project, opts...)
	return goPubSubV1{c}, err
}

func (c goPubSubV1) createSubscription(ctx context.Context, id, topic string, exactlyOnce bool) error {
	_, err := c.CreateSubscription(ctx, id, pubsubv1.SubscriptionConfig{
		Topic: c.Topic(topic), AckDeadline: 10 * time.Second, EnableExactlyOnceDelivery: exactlyOnce,
	})
	return err
}

func (c goPubSubV1) receive(ctx context.Context, sub string, f func(context.Context, *pubsub.Message)) error {
	s := c.Subscription(sub)
	s.ReceiveSettings.MaxExtensionPeriod = 10 * time.Second
	return s.Receive(ctx, f)
}

func (c goPubSubV1) publish(ctx context.Context, topic string, data []byte) (string, error) {
	t := c.Topic(topic)
	defer t.Stop()
	return t.Publish(ctx, &pubsub.Message{Data: data}).Get(ctx)
}
