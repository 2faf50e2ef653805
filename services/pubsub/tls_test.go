package pubsub_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/devca"
	ps "github.com/passerelle-iot/passerelle/services/pubsub"
)

// TestTLS serves the API over TLS: Google's Go client on the explicit
// endpoint with the CA publishes and receives over gRPC, a REST user calls
// over HTTPS, and a plaintext client is refused.
func TestTLS(t *testing.T) {
	serverTLS, clientTLS, err := devca.Ephemeral("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, ps.WithTLS(serverTLS))
	ctx := context.Background()
	client := func(role adminauth.Role) *pubsub.Client {
		c, err := pubsub.NewClient(ctx, project, option.WithEndpoint(e.addr), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(credentials.NewTLS(clientTLS))),
			option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(e.tokens[role]))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	admin := client(adminauth.RoleEditor)
	if _, err := admin.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic("secure")}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: subName("secure"), Topic: topic("secure")}); err != nil {
		t.Fatal(err)
	}
	pub := client(adminauth.RoleDeviceController).Publisher(topic("secure"))
	defer pub.Stop()
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("over TLS")}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var got string
	err = client(adminauth.RoleViewer).Subscriber(subName("secure")).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		got = string(m.Data)
		m.Ack()
		cancel()
	})
	if err != nil || got != "over TLS" {
		t.Fatalf("Receive: %q, %v", got, err)
	}

	// REST over HTTPS, HTTP/1.1 as REST users call it.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", "https://"+e.addr+"/v1/projects/"+project+"/topics/secure", nil)
	req.Header.Set("Authorization", "Bearer "+e.tokens[adminauth.RoleViewer])
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tp struct{ Name string }
	err = json.NewDecoder(resp.Body).Decode(&tp)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || tp.Name != topic("secure") {
		t.Fatalf("GET topic over HTTPS: %d %+v %v", resp.StatusCode, tp, err)
	}

	// Plaintext gRPC and HTTP get no answer from a TLS port.
	plain, err := pubsub.NewClient(ctx, project, option.WithEndpoint(e.addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(e.tokens[adminauth.RoleViewer]))))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if _, err := plain.TopicAdminClient.GetTopic(pctx, &pubsubpb.GetTopicRequest{Topic: topic("secure")}); err == nil {
		t.Fatal("a plaintext gRPC call to the TLS port succeeded")
	}
	// (net/http answers plaintext on a TLS port with a 400.)
	resp, err = (&http.Client{Timeout: 5 * time.Second}).Get("http://" + e.addr + "/v1/projects/" + project + "/topics/secure")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("a plaintext HTTP call to the TLS port succeeded")
		}
	}
}
