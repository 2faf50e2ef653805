package hub_test

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/hub"
)

// serveBare serves a hub Server (no pool behind it) on 127.0.0.1:0 until
// the test ends, and returns its address.
func serveBare(t *testing.T, opts ...hub.ServerOption) string {
	t.Helper()
	lis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	srv := hub.NewServer(testutil.Logger(t), hubv1.UnimplementedHubServer{}, append(opts, hub.WithInsecureNoAuth())...)
	serve(t, func(ctx context.Context) error { return srv.Serve(ctx, lis) })
	return lis.Addr().String()
}

// TestSilentConnectionClosed: a client that connects and sends nothing is
// closed after the handshake timeout (5 s by default; gRPC's own default
// kept it 120 s), in plaintext and over TLS.
func TestSilentConnectionClosed(t *testing.T) {
	serverTLS, _ := testTLS()
	for name, opts := range map[string][]hub.ServerOption{
		"plaintext": nil,
		"tls":       {hub.WithTLS(serverTLS)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw := testutil.Must(net.Dial("tcp", serveBare(t, opts...)))
			defer raw.Close()
			// Bounds the wait, well past the default timeout and well
			// short of gRPC's 120 s.
			_ = raw.SetReadDeadline(time.Now().Add(30 * time.Second))
			// The server may write its HTTP/2 settings first: read on
			// until the connection ends.
			var err error
			for err == nil {
				_, err = raw.Read(make([]byte, 64))
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("a connection that sent nothing is still open")
			}
		})
	}
}

// TestIdleConnectionClosed: a connection with no call open is closed after
// WithMaxConnectionIdle; the client reconnects for its next call.
func TestIdleConnectionClosed(t *testing.T) {
	addr := serveBare(t, hub.WithMaxConnectionIdle(200*time.Millisecond))
	conn := testutil.Must(grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())))
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	health := healthpb.NewHealthClient(conn)
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if st := conn.GetState(); st == connectivity.Ready {
			return errors.New("the idle connection is still up")
		}
		return nil
	})
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a call after the idle close: %v", err)
	}
}
