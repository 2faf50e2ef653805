// Command hubdemo is the gateway demo of the Cloud IoT Core documentation
// (hub_demo.py), ported to Passerelle: it creates a Pub/Sub topic and lets
// Cloud IoT publish to it (the sample's create_iot_topic, through the
// Pub/Sub API), a registry sending its events and states there, a
// subscription, a gateway (through the hub, which keeps its key), and a device to
// bind; binds them; listens for config messages for the device and the
// gateway, logging each to a CSV file; publishes 15 state messages on
// behalf of the bound device; reads them back from the subscription; and, once the
// user presses enter, cleans up. Deleting the gateway through the admin
// API also ends the hub's connection for it and removes its key.
//
//	hubdemo [--admin-addr 127.0.0.1:8080] [--hub-addr 127.0.0.1:8090] [--pubsub-addr 127.0.0.1:8085] [--data-dir ./passerelle-data]
//	        [--token TOKEN] [--yes] [--set-config DATA] [--listen 30s]
//	        [--config-log <data-dir>/config_log.csv]
//
// It talks to the manager with google.golang.org/api/cloudiot/v1, the Go
// twin of the sample's googleapiclient, to the hub with its gRPC API, and
// to the Pub/Sub API with Google's Go client (cloud.google.com/go/pubsub/v2).
package main

import (
	"bufio"
	"context"
	b64 "encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"golang.org/x/oauth2"
	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/ops"
)

func main() {
	ctx, stop := ops.SignalContext(context.Background(), os.Stderr, "hubdemo", os.Exit, os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

type demoConfig struct {
	AdminAddr  string
	HubAddr    string
	PubSubAddr string
	DataDir    string
	Token      string
	Yes        bool
	SetConfig  string
	Listen     time.Duration
	Project    string
	Region     string
	ConfigLog  string
	States     int
	StateEvery time.Duration
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	var c demoConfig
	fs := flag.NewFlagSet("hubdemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.AdminAddr, "admin-addr", config.DefaultListen, "address of the admin API (as passerelle serve --admin-addr)")
	fs.StringVar(&c.HubAddr, "hub-addr", "127.0.0.1:8090", "address of the hub (as passerelle serve --hub-addr)")
	fs.StringVar(&c.PubSubAddr, "pubsub-addr", config.DefaultPubSubAddr, "address of the Pub/Sub API (as passerelle serve --pubsub-addr)")
	fs.StringVar(&c.DataDir, "data-dir", config.DefaultDataDir, "data folder of passerelle serve, where the admin token is")
	fs.StringVar(&c.Token, "token", "", "admin token (default: the content of <data-dir>/admin.token)")
	fs.BoolVar(&c.Yes, "yes", false, "run unattended: do not wait for enter where the sample pauses")
	fs.StringVar(&c.SetConfig, "set-config", "", "set this config on the bound device during the listening window, as a person would with grpcurl")
	fs.DurationVar(&c.Listen, "listen", 30*time.Second, "how long to listen for config messages")
	fs.StringVar(&c.Project, "project", "passerelle-demo", "project id of the demo's resources")
	fs.StringVar(&c.Region, "region", "us-central1", "location of the demo's registry")
	fs.StringVar(&c.ConfigLog, "config-log", "", "CSV file the received config messages are logged to (time,topic,data); default <data-dir>/config_log.csv")
	fs.IntVar(&c.States, "states", 15, "state messages to publish")
	fs.DurationVar(&c.StateEvery, "state-interval", time.Second, "time between two state messages (the bridge takes one per second per device)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := config.ApplyEnv(fs, lookupEnv); err != nil {
		fmt.Fprintf(stderr, "hubdemo: %v\n", err)
		return 2
	}
	if c.ConfigLog == "" {
		c.ConfigLog = filepath.Join(c.DataDir, "config_log.csv")
	}
	if c.Token == "" {
		raw, err := os.ReadFile(filepath.Join(c.DataDir, "admin.token"))
		if err != nil {
			fmt.Fprintf(stderr, "hubdemo: no admin token: %v (give --token, or --data-dir of the running passerelle serve)\n", err)
			return 2
		}
		c.Token = strings.TrimSpace(string(raw))
	}
	d, err := newDemo(ctx, c, stdin, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "hubdemo: %v\n", err)
		return 1
	}
	defer d.close()
	if err := d.run(ctx); err != nil {
		fmt.Fprintf(stderr, "hubdemo: %v\n", err)
		return 1
	}
	return 0
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

type demo struct {
	cfg     demoConfig
	in      *bufio.Reader
	reading chan struct{} // closed when the line a pause waits for is read
	out     io.Writer
	admin   *cloudiot.ProjectsLocationsRegistriesService
	hubConn *grpc.ClientConn
	hub     hubv1.HubClient
	pubsub  *pubsub.Client
}

func newDemo(ctx context.Context, c demoConfig, stdin io.Reader, stdout io.Writer) (*demo, error) {
	svc, err := cloudiot.NewService(ctx, option.WithEndpoint("http://"+c.AdminAddr+"/"),
		option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: c.Token, TokenType: "Bearer"})))
	if err != nil {
		return nil, fmt.Errorf("admin API client: %w", err)
	}
	conn, err := grpc.NewClient(c.HubAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer(c.Token)))
	if err != nil {
		return nil, fmt.Errorf("hub client: %w", err)
	}
	ps, err := pubsub.NewClient(ctx, c.Project, option.WithEndpoint(c.PubSubAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(c.Token))))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("Pub/Sub client: %w", err)
	}
	return &demo{cfg: c, in: bufio.NewReader(stdin), out: stdout, admin: svc.Projects.Locations.Registries,
		hubConn: conn, hub: hubv1.NewHubClient(conn), pubsub: ps}, nil
}

func (d *demo) close() {
	d.hubConn.Close()
	_ = d.pubsub.Close()
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// pause shows prompt and waits for enter (or the end of stdin), or for
// ctx to end (^C). Unless --yes. A read that ctx cut short is the one the
// next pause waits for: one read of stdin at a time. The reading goroutine
// ends with its line, or with stdin.
func (d *demo) pause(ctx context.Context, prompt string) {
	if d.cfg.Yes {
		return
	}
	d.say("%s", prompt)
	if d.reading == nil {
		done := make(chan struct{})
		d.reading = done
		go func() {
			_, _ = d.in.ReadString('\n')
			close(done)
		}()
	}
	select {
	case <-d.reading:
		d.reading = nil
	case <-ctx.Done():
	}
}

func (d *demo) run(ctx context.Context) error {
	registryID := fmt.Sprintf("test-registry-%d", time.Now().Unix())
	gatewayID, deviceID := "test-device-RS256", "test-device-noauthbind"
	parent := fmt.Sprintf("projects/%s/locations/%s", d.cfg.Project, d.cfg.Region)
	registry := parent + "/registries/" + registryID
	gateway := registry + "/devices/" + gatewayID
	device := registry + "/devices/" + deviceID

	topic := fmt.Sprintf("projects/%s/topics/%s", d.cfg.Project, "gateway-demo")
	subscription := fmt.Sprintf("projects/%s/subscriptions/%s", d.cfg.Project, registryID)

	d.say("Running demo\n")
	if err := d.createIoTTopic(ctx, topic); err != nil {
		return err
	}
	d.say("Creating registry: %s", registryID)
	if _, err := d.admin.Create(parent, &cloudiot.DeviceRegistry{
		Id:                       registryID,
		EventNotificationConfigs: []*cloudiot.EventNotificationConfig{{PubsubTopicName: topic}},
		StateNotificationConfig:  &cloudiot.StateNotificationConfig{PubsubTopicName: topic},
	}).Context(ctx).Do(); err != nil {
		return fmt.Errorf("create the registry: %w", err)
	}
	d.say("Created registry\n")
	// Clean up whatever happens next, as the sample's finally would.
	cleanup := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := d.admin.UnbindDeviceFromGateway(registry, &cloudiot.UnbindDeviceFromGatewayRequest{
			GatewayId: gatewayID, DeviceId: deviceID,
		}).Context(cctx).Do(); err == nil {
			d.say("Device unbound: {}")
		}
		for _, name := range []string{device, gateway} {
			if _, err := d.admin.Devices.Delete(name).Context(cctx).Do(); err == nil {
				d.say("Delete device")
			}
		}
		if _, err := d.admin.Delete(registry).Context(cctx).Do(); err == nil {
			d.say("Delete registry")
		} else {
			d.say("Could not delete registry %s: %v", registryID, err)
		}
		if err := d.pubsub.SubscriptionAdminClient.DeleteSubscription(cctx, &pubsubpb.DeleteSubscriptionRequest{Subscription: subscription}); err == nil {
			d.say("Delete subscription")
		}
	}
	defer cleanup()

	// The device's states, and only they, come to this subscription.
	if _, err := d.pubsub.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: subscription, Topic: topic, Filter: fmt.Sprintf("attributes.deviceId = %q", deviceID),
	}); err != nil {
		return fmt.Errorf("create the subscription: %w", err)
	}
	d.say("Created subscription %s\n", subscription)

	d.say("Creating gateway: %s", gatewayID)
	if _, err := d.hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{
		Parent: registry, GatewayId: gatewayID, Algorithm: hubv1.Algorithm_ALGORITHM_RS256,
		GatewayAuthMethod: hubv1.GatewayAuthMethod_GATEWAY_AUTH_METHOD_ASSOCIATION_ONLY,
	}); err != nil {
		return fmt.Errorf("create the gateway through the hub: %w", err)
	}
	gw, err := d.admin.Devices.Get(gateway).Context(ctx).Do()
	if err != nil {
		return fmt.Errorf("read the gateway back: %w", err)
	}
	d.say("Created gateway %s", brief(gw))
	d.say("Creating device to bind: %s", deviceID)
	dev, err := d.admin.Devices.Create(registry, &cloudiot.Device{
		Id:            deviceID,
		GatewayConfig: &cloudiot.GatewayConfig{GatewayType: "NON_GATEWAY", GatewayAuthMethod: "ASSOCIATION_ONLY"},
	}).Context(ctx).Do()
	if err != nil {
		return fmt.Errorf("create the device: %w", err)
	}
	d.say("Created Device %s\n", brief(dev))

	d.say("Binding device")
	if _, err := d.admin.BindDeviceToGateway(registry, &cloudiot.BindDeviceToGatewayRequest{
		GatewayId: gatewayID, DeviceId: deviceID,
	}).Context(ctx).Do(); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	d.say("Device Bound!")

	if err := d.listen(ctx, registry, gateway, device, gatewayID, deviceID); err != nil {
		return err
	}
	if err := d.publish(ctx, registryID, gateway, device, gatewayID, deviceID); err != nil {
		return err
	}
	if err := d.readStates(ctx, subscription); err != nil {
		return err
	}
	// Time to read the states before they go with the device.
	d.pause(ctx, "Press enter to clean up")
	return nil
}

// listen subscribes to the config of the bound device and of the gateway
// through the hub, logging each message to the CSV file.
func (d *demo) listen(ctx context.Context, registry, gateway, device, gatewayID, deviceID string) error {
	d.say("Listening for messages for %s", d.cfg.Listen)
	d.say("Try setting configuration in: %s", d.consoleURL(device, "config"))
	d.say("or with:")
	d.say("  grpcurl -plaintext -H \"authorization: Bearer $(cat %s)\" -d '{\"name\": \"%s\", \"binaryData\": \"%s\"}' %s google.cloud.iot.v1.DeviceManager/ModifyCloudToDeviceConfig",
		filepath.Join(d.cfg.DataDir, "admin.token"), device, "ZGV2aWNlLWNvbmZpZw==", d.cfg.AdminAddr)
	d.pause(ctx, "Press enter to continue")

	if err := os.MkdirAll(filepath.Dir(d.cfg.ConfigLog), 0o700); err != nil {
		return fmt.Errorf("open the config log: %w", err)
	}
	f, err := os.Create(d.cfg.ConfigLog)
	if err != nil {
		return fmt.Errorf("open the config log: %w", err)
	}
	d.say("Logging config messages to %s", d.cfg.ConfigLog)
	defer f.Close()
	log := csv.NewWriter(f)
	defer log.Flush()
	_ = log.Write([]string{"time", "topic", "data"})

	// The window is timed here, not by a stream deadline: the server can
	// report an expired deadline before this process's own timer fires,
	// which would look like a failure.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	window := time.NewTimer(d.cfg.Listen)
	defer window.Stop()
	d.say("Attaching: /devices/%s/attach", deviceID)
	d.say("Waiting for device to attach.")
	type message struct{ topic, data string }
	msgs := make(chan message, 16)
	errs := make(chan error, 2)
	for _, target := range []struct{ id, deviceID string }{{deviceID, deviceID}, {gatewayID, ""}} {
		stream, err := d.hub.SubscribeConfig(lctx, &hubv1.SubscribeConfigRequest{Gateway: gateway, DeviceId: target.deviceID})
		if err != nil {
			return fmt.Errorf("subscribe to the config of %s: %w", target.id, err)
		}
		go func() {
			for {
				c, err := stream.Recv()
				if err != nil {
					errs <- err
					return
				}
				select {
				case msgs <- message{"/devices/" + target.id + "/config", string(c.GetData())}:
				case <-lctx.Done():
					return
				}
			}
		}()
	}
	setDone := d.cfg.SetConfig == ""
	for {
		select {
		case m := <-msgs:
			d.say("Received message '%s' on topic '%s' with Qos 1", m.data, m.topic)
			_ = log.Write([]string{time.Now().UTC().Format(time.RFC3339Nano), m.topic, m.data})
			log.Flush()
			if !setDone && m.topic == "/devices/"+deviceID+"/config" {
				// The current config arrived: the subscription is live, so
				// a change made now is delivered.
				setDone = true
				if _, err := d.admin.Devices.ModifyCloudToDeviceConfig(device, &cloudiot.ModifyCloudToDeviceConfigRequest{
					BinaryData: base64(d.cfg.SetConfig),
				}).Context(ctx).Do(); err != nil {
					return fmt.Errorf("set the config: %w", err)
				}
			}
		case err := <-errs:
			return fmt.Errorf("config stream: %w", err)
		case <-window.C:
			cancel()
			d.say("Detaching: /devices/%s/detach", deviceID)
			d.say("Finished.\n")
			return nil
		}
	}
}

// publish sends state messages for the bound device through the hub, each
// acknowledged once the bridge has PUBACKed it, then reads them back.
func (d *demo) publish(ctx context.Context, registryID, gateway, device, gatewayID, deviceID string) error {
	d.say("Publishing messages demo")
	d.say("Publishing: %d messages", d.cfg.States)
	d.say("Attaching: /devices/%s/attach", deviceID)
	d.say("Waiting for device to attach.")
	stream, err := d.hub.PublishState(ctx)
	if err != nil {
		return err
	}
	for i := 1; i <= d.cfg.States; i++ {
		payload := fmt.Sprintf("%s/%s-%s-payload-%d", registryID, gatewayID, deviceID, i)
		d.say("Publishing message %d/%d: '%s' to /devices/%s/state", i, d.cfg.States, payload, deviceID)
		if err := stream.Send(&hubv1.PublishStateRequest{Gateway: gateway, DeviceId: deviceID, Data: []byte(payload)}); err != nil {
			return fmt.Errorf("publish state %d: %w", i, err)
		}
		if _, err := stream.Recv(); err != nil {
			return fmt.Errorf("state %d not acknowledged: %w", i, err)
		}
		if i < d.cfg.States {
			select {
			case <-time.After(d.cfg.StateEvery):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	_ = stream.CloseSend()
	_, _ = stream.Recv() // the hub ends the stream once it detached
	d.say("Detaching: /devices/%s/detach", deviceID)
	d.say("Finished.\n")

	states, err := d.admin.Devices.States.List(device).Context(ctx).Do()
	if err != nil {
		return fmt.Errorf("list the states: %w", err)
	}
	d.say("You can read the state messages for your device at this URL: %s", d.consoleURL(device, "state"))
	d.say("or with:")
	d.say("    grpcurl -plaintext -H \"authorization: Bearer $(cat %s)\" -d '{\"name\": \"%s\"}' %s google.cloud.iot.v1.DeviceManager/ListDeviceStates",
		filepath.Join(d.cfg.DataDir, "admin.token"), device, d.cfg.AdminAddr)
	if n := len(states.DeviceStates); n > 0 {
		d.say("ListDeviceStates: %d states kept, the newest '%s'\n", n, unbase64(states.DeviceStates[0].BinaryData))
	}
	return nil
}

// brief renders a device as the sample prints it: the JSON of its id,
// numId, config and gateway config (not its keys).
func brief(d *cloudiot.Device) string {
	b, err := json.Marshal(map[string]any{"id": d.Id, "numId": fmt.Sprint(d.NumId), "config": d.Config, "gatewayConfig": d.GatewayConfig})
	if err != nil {
		return d.Id
	}
	return string(b)
}

func base64(s string) string { return b64.StdEncoding.EncodeToString([]byte(s)) }

func unbase64(s string) string {
	b, err := b64.StdEncoding.DecodeString(s)
	if err != nil {
		return s
	}
	return string(b)
}

// createIoTTopic is the sample's create_iot_topic: create the topic (an
// existing one is fine), then get its policy, add Cloud IoT's service
// account as publisher, and set it.
func (d *demo) createIoTTopic(ctx context.Context, topic string) error {
	admin := d.pubsub.TopicAdminClient
	t, err := admin.CreateTopic(ctx, &pubsubpb.Topic{Name: topic})
	switch status.Code(err) {
	case codes.OK:
		d.say("Topic created: %s", t.GetName())
	case codes.AlreadyExists:
		d.say("Topic %s already exists", topic)
	default:
		return fmt.Errorf("create the topic: %w", err)
	}
	policy, err := admin.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: topic})
	if err != nil {
		return fmt.Errorf("get the topic's policy: %w", err)
	}
	const role, member = "roles/pubsub.publisher", "serviceAccount:cloud-iot@system.gserviceaccount.com"
	added := false
	for _, b := range policy.GetBindings() {
		if b.GetRole() == role {
			if !slices.Contains(b.GetMembers(), member) {
				b.Members = append(b.Members, member)
			}
			added = true
		}
	}
	if !added {
		policy.Bindings = append(policy.Bindings, &iampb.Binding{Role: role, Members: []string{member}})
	}
	policy, err = admin.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: topic, Policy: policy})
	if err != nil {
		return fmt.Errorf("set the topic's policy: %w", err)
	}
	d.say("Topic policy: %d binding(s), %s may publish\n", len(policy.GetBindings()), member)
	return nil
}

// readStates receives the state notifications of the subscription with
// Google's client and acks them, until it has one of each state sent.
func (d *demo) readStates(ctx context.Context, subscription string) error {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := map[string]bool{}
	newest, newestNum := "", 0
	err := d.pubsub.Subscriber(subscription).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		payload := string(m.Data)
		mu.Lock()
		defer mu.Unlock()
		seen[payload] = true
		var n int
		if i := strings.LastIndex(payload, "-payload-"); i >= 0 {
			n, _ = strconv.Atoi(payload[i+len("-payload-"):])
		}
		if n > newestNum {
			newest, newestNum = payload, n
		}
		if len(seen) >= d.cfg.States {
			cancel()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil || len(seen) < d.cfg.States {
		return fmt.Errorf("read %d of %d states from %s: %v", len(seen), d.cfg.States, subscription, err)
	}
	d.say("Read %d states from subscription %s, the newest '%s'\n", len(seen), subscription, newest)
	return nil
}

// consoleURL is the console's page of a device (its config or state
// section) on the admin port, as the sample linked Google's console.
func (d *demo) consoleURL(device, page string) string {
	return "http://" + d.cfg.AdminAddr + "/console/" + device + "/" + page
}
