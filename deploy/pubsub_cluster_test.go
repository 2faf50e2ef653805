package deploy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passerelle-iot/passerelle/pkg/devca"
)

// The telemetry path of a fleet behind the balancer: an HTTP device posts
// events through HAProxy to either bridge, and a consumer written against
// Google's Pub/Sub client reads them through HAProxy from either manager.
// Half way, manager-1 is killed (SIGKILL): a stream the subscriber had
// on it ends, the client reopens it through the balancer on manager-2
// (a subscription is a JetStream consumer, not a manager's state), and
// every event arrives.
func (c *cluster) testPubSubThroughTheBalancer(t *testing.T) {
	if c.lb == nil {
		t.Skip("needs HAProxy")
	}
	ctx := t.Context()
	// The admin API's gRPC goes through the balancer too (HTTP/2 to the
	// managers, health-checked over HTTP/1.1).
	lbAdmin, err := iot.NewDeviceManagerClient(ctx, option.WithEndpoint(c.lb.admin), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(c.token))))
	if err != nil {
		t.Fatal(err)
	}
	defer lbAdmin.Close()
	if _, err := lbAdmin.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: registryName()}); err != nil {
		t.Fatalf("GetDeviceRegistry over gRPC through the balancer: %v", err)
	}
	c.createDevices(t, false, "http-dev")
	ps, err := pubsub.NewClient(ctx, project, option.WithEndpoint(c.lb.pubsub), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(c.token))))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	const subName = "projects/" + project + "/subscriptions/cluster-app"
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: subName, Topic: eventTopic, AckDeadlineSeconds: 10,
		Filter: `attributes.deviceId = "http-dev"`,
	}); err != nil {
		t.Fatalf("create the subscription through the balancer: %v", err)
	}

	httpc := c.httpDeviceClient(t)
	post := func(i int) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"binary_data": base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "h%03d", i))})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
			"https://"+c.lb.http+"/v1/"+deviceName("http-dev")+":publishEvent", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.jwt(t))
		req.Header.Set("Content-Type", "application/json")
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatalf("publishEvent %d through the balancer: %v", i, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("publishEvent %d through the balancer: %s %s", i, resp.Status, msg)
		}
	}

	var (
		mu       sync.Mutex
		got      = map[string]int{}
		received = make(chan struct{}, 1024)
	)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- ps.Subscriber(subName).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			mu.Lock()
			got[string(m.Data)]++
			mu.Unlock()
			m.Ack()
			select {
			case received <- struct{}{}:
			default:
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Receive: %v", err)
		}
	}()
	const n = 60
	missing := func(upTo int) error {
		mu.Lock()
		defer mu.Unlock()
		for i := range upTo {
			if got[fmt.Sprintf("h%03d", i)] == 0 {
				return fmt.Errorf("event h%03d not received (%d distinct of %d)", i, len(got), upTo)
			}
		}
		return nil
	}
	for i := range n / 2 {
		post(i)
	}
	waitUntil(t, 30*time.Second, func() error { return missing(n / 2) })

	// Kill a manager while the subscriber streams from one of them.
	victim := c.managers[0]
	victim.kill()
	<-victim.done
	defer victim.restart(c.top)
	for i := n / 2; i < n; i++ {
		post(i)
	}
	waitUntil(t, 60*time.Second, func() error { return missing(n) })
	mu.Lock()
	again := 0
	for _, k := range got {
		again += k - 1
	}
	mu.Unlock()
	t.Logf("figure: %d events through 2 bridges and 2 managers behind HAProxy, a manager killed half way, %d delivered again (at-least-once)", n, again)

	// The device's lastEventTime came through whichever bridge took each post.
	waitUntil(t, 15*time.Second, func() error {
		dev, err := c.admin[1].GetDevice(ctx, &iotpb.GetDeviceRequest{Name: deviceName("http-dev")})
		if err != nil {
			return err
		}
		if dev.GetLastEventTime() == nil {
			return fmt.Errorf("the HTTP device has no lastEventTime")
		}
		return nil
	})
}

// httpDeviceClient is an HTTPS client that trusts the cluster's CA, as a
// device trusts roots.pem.
func (c *cluster) httpDeviceClient(t *testing.T) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(c.data, devca.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", devca.CAFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}
