package manager_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/store/storetest"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/manager"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// PostgreSQL goes away (the proxy to it is cut) and comes back: the
// manager reports not ready and answers UNAVAILABLE, without an error line
// per call, and serves again by itself once the database is back.
func TestDatabaseOutage(t *testing.T) {
	u, err := url.Parse(storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testutil.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	var logs lockedBuffer
	env := newAPIEnvLogged(t, slog.New(slog.NewTextHandler(&logs, nil)), u.String(), manager.WithDeviceCacheTTL(0))
	ctx := context.Background()
	testutil.WaitFor(t, 10*time.Second, func() error { return env.srv.Ready(ctx) })
	reg := env.createRegistry(t, "outage")
	dev, err := env.grpc.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg, Device: &iotpb.Device{Id: "dev-1"}})
	if err != nil {
		t.Fatal(err)
	}

	proxy.Cut()
	if err := env.srv.Ready(ctx); err == nil || !strings.Contains(err.Error(), "the database does not answer") {
		t.Errorf("Ready with the database away: %v", err)
	}
	// Google's clients retry UNAVAILABLE by themselves (GetDevice for up
	// to two minutes): once is enough here.
	once := gax.WithRetry(func() gax.Retryer { return nil })
	for range 20 {
		_, err := env.grpc.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()}, once)
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "the database is unreachable: retry later" {
			t.Fatalf("GetDevice with the database away: %v, want UNAVAILABLE", err)
		}
	}
	if _, err := env.rest.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()}, once); status.Code(err) != codes.Unavailable {
		t.Errorf("REST GetDevice with the database away: %v", err)
	}
	if s := logs.String(); strings.Contains(s, "level=ERROR") {
		t.Errorf("an outage logged as request errors:\n%s", s)
	}

	proxy.Restore()
	testutil.WaitFor(t, 10*time.Second, func() error { return env.srv.Ready(ctx) })
	if _, err := env.grpc.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()}); err != nil {
		t.Errorf("GetDevice once the database is back: %v", err)
	}
}

// Ready is false before Serve serves and from the start of its shutdown.
func TestReadyFollowsServe(t *testing.T) {
	st := newAPIEnv(t, t.TempDir()+"/p.db").store
	srv := manager.New(testutil.Logger(t), st, manager.WithInsecureNoAuth())
	if err := srv.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "not serving yet") {
		t.Errorf("Ready before Serve: %v", err)
	}
	env := newAPIEnv(t, t.TempDir()+"/q.db")
	testutil.WaitFor(t, 10*time.Second, func() error { return env.srv.Ready(t.Context()) })
}
