package manager_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
	"github.com/passerelle-iot/passerelle/pkg/resource"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/store/storetest"
	"github.com/passerelle-iot/passerelle/services/manager"
)

// apiEnv is a manager serving on 127.0.0.1:0 with an admin token, and
// Google's gapic client connected to it in gRPC and in REST mode.
type apiEnv struct {
	addr  string
	token string
	store store.Store
	srv   *manager.Server
	grpc  *iot.DeviceManagerClient
	rest  *iot.DeviceManagerClient
}

// bearer is gRPC per-RPC credentials that send a bearer token over plaintext
// (Google's oauth credentials insist on TLS).
type bearer string

func (t bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// forEachBackend runs fn on a fresh manager over SQLite, and over
// PostgreSQL when PASSERELLE_TEST_POSTGRES_URL is set.
func forEachBackend[T testing.TB](tb T, fn func(T, *apiEnv)) {
	type runner interface {
		Run(string, func(T)) bool
	}
	r, ok := any(tb).(runner)
	if !ok {
		tb.Fatalf("forEachBackend needs *testing.T or *testing.B")
	}
	r.Run("sqlite", func(tb T) {
		fn(tb, newAPIEnv(tb, filepath.Join(tb.TempDir(), "passerelle.db")))
	})
	r.Run("postgres", func(tb T) {
		fn(tb, newAPIEnv(tb, storetest.PostgresURL(tb)))
	})
}

func newAPIEnv(tb testing.TB, databaseURL string, opts ...manager.Option) *apiEnv {
	tb.Helper()
	return newAPIEnvLogged(tb, slog.New(slog.NewTextHandler(io.Discard, nil)), databaseURL, opts...)
}

// newAPIEnvLogged is newAPIEnv with the store and the manager logging to
// logger.
func newAPIEnvLogged(tb testing.TB, logger *slog.Logger, databaseURL string, opts ...manager.Option) *apiEnv {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlstore.Open(ctx, logger, databaseURL)
	if err != nil {
		tb.Fatal(err)
	}
	token, err := adminauth.NewToken()
	if err != nil {
		tb.Fatal(err)
	}
	tokens := mustTokens(tb, "admin", adminauth.RoleAdmin, token)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := manager.New(logger, st, append([]manager.Option{manager.WithTokens(tokens)}, opts...)...)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	env := &apiEnv{addr: lis.Addr().String(), token: token, store: st, srv: srv}
	env.grpc = grpcClient(tb, env.addr, token)
	env.rest = restClient(tb, env.addr, token)
	tb.Cleanup(func() {
		env.grpc.Close()
		env.rest.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			tb.Error("Serve did not return 15 s after its context ended")
		}
		st.Close()
	})
	return env
}

// mustTokens builds a token set holding one token.
func mustTokens(tb testing.TB, name string, role adminauth.Role, token string) *adminauth.Tokens {
	tb.Helper()
	var buf bytes.Buffer
	if err := adminauth.WriteTokenLine(&buf, name, role, token); err != nil {
		tb.Fatal(err)
	}
	t, err := adminauth.ParseTokens(&buf, "test")
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func grpcClient(tb testing.TB, addr, token string) *iot.DeviceManagerClient {
	tb.Helper()
	c, err := iot.NewDeviceManagerClient(context.Background(),
		option.WithEndpoint(addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(token))),
	)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func restClient(tb testing.TB, addr, token string) *iot.DeviceManagerClient {
	tb.Helper()
	c, err := iot.NewDeviceManagerRESTClient(context.Background(),
		option.WithEndpoint("http://"+addr),
		option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token})),
	)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// createRegistry creates a registry with a Pub/Sub topic in project p1 and
// returns its name.
func (e *apiEnv) createRegistry(tb testing.TB, id string) string {
	tb.Helper()
	r, err := e.grpc.CreateDeviceRegistry(context.Background(), &iotpb.CreateDeviceRegistryRequest{
		Parent: "projects/p1/locations/us-central1",
		DeviceRegistry: &iotpb.DeviceRegistry{
			Id: id,
			EventNotificationConfigs: []*iotpb.EventNotificationConfig{
				{PubsubTopicName: "projects/p1/topics/" + id},
			},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return r.GetName()
}

func registryKey(tb testing.TB, name string) store.RegistryKey {
	tb.Helper()
	r, err := resource.ParseRegistry("name", name)
	if err != nil {
		tb.Fatal(err)
	}
	return store.RegistryKey{Project: r.Project, Location: r.Location, ID: r.Registry}
}
