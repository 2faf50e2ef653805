package manager_test

import (
	"bytes"
	"context"
	"fmt"
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
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/passerelle-iot/passerelle/pkg/bus"
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

// NATS goes away and comes back under two managers: commands answer
// UNAVAILABLE at once (not FAILED_PRECONDITION: whether a bridge holds
// the device cannot be known), writes still succeed, the other manager's
// cache does not serve what it can no longer confirm, Ready names the bus,
// and everything works again by itself once NATS is back.
func TestNATSOutage(t *testing.T) {
	node := testutil.NewNATSNode(t, "manager-nats")
	node.Start()
	db := t.TempDir() + "/p.db"
	conn := func() *bus.Bus {
		b, err := bus.Open(t.Context(), testutil.Logger(t), bus.Options{URL: node.URL(), Name: "manager"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	first := newAPIEnv(t, db, manager.WithBus(conn()), manager.WithDeviceCacheTTL(time.Hour))
	second := newAPIEnv(t, db, manager.WithBus(conn()), manager.WithDeviceCacheTTL(time.Hour))
	ctx := context.Background()
	testutil.WaitFor(t, 10*time.Second, func() error { return second.srv.Ready(ctx) })
	reg := first.createRegistry(t, "nats-outage")
	dev, err := first.grpc.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg, Device: &iotpb.Device{Id: "dev-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.grpc.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()}); err != nil { // cached
		t.Fatal(err)
	}
	once := gax.WithRetry(func() gax.Retryer { return nil })
	if _, err := first.grpc.SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{Name: dev.GetName(), BinaryData: []byte("c")}, once); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a command for an unconnected device: %v, want FAILED_PRECONDITION", err)
	}

	node.Stop()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if err := first.srv.Ready(ctx); err == nil || !strings.Contains(err.Error(), "the bus") {
			return fmt.Errorf("Ready: %v", err)
		}
		return nil
	})
	_, err = first.grpc.SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{Name: dev.GetName(), BinaryData: []byte("c")}, once)
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "the message bus is unreachable: retry later" {
		t.Fatalf("a command with NATS away: %v, want UNAVAILABLE", err)
	}
	if _, err := first.grpc.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{
		Device:     &iotpb.Device{Name: dev.GetName(), Blocked: true},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"blocked"}},
	}); err != nil {
		t.Fatalf("a write with NATS away: %v", err)
	}
	// The second manager missed the announcement: it reads the store.
	if d, err := second.grpc.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()}); err != nil || !d.GetBlocked() {
		t.Fatalf("GetDevice through the second manager with NATS away: blocked %v, %v", d.GetBlocked(), err)
	}

	node.Start()
	for _, e := range []*apiEnv{first, second} {
		testutil.WaitFor(t, 15*time.Second, func() error { return e.srv.Ready(ctx) })
	}
	if _, err := first.grpc.SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{Name: dev.GetName(), BinaryData: []byte("c")}, once); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("a command after NATS came back: %v, want FAILED_PRECONDITION", err)
	}
	if _, err := first.grpc.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{
		Device:     &iotpb.Device{Name: dev.GetName(), Blocked: false},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"blocked"}},
	}); err != nil {
		t.Fatal(err)
	}
	if d, err := second.grpc.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()}); err != nil || d.GetBlocked() {
		t.Errorf("GetDevice through the second manager after NATS came back: blocked %v, %v", d.GetBlocked(), err)
	}
}
