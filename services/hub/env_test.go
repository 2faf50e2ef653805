package hub_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/services/bridge"
	"github.com/passerelle-iot/passerelle/services/hub"
	"github.com/passerelle-iot/passerelle/services/manager"
)

func logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// env is the manager, the bridge (TLS) and the hub, in process.
type env struct {
	admin     *cloudiot.Service
	hub       hubv1.HubClient
	pool      *hub.Pool
	hubAddr   string
	clockSkew *atomic.Int64 // added to the bridge's clock, in ns
}

type envConfig struct {
	bridgeOpts []bridge.Option
	poolOpts   []hub.PoolOption
}

// serve runs f until the test ends, then cancels it and waits.
func serve(t *testing.T, f func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("a server did not stop")
		}
	})
}

func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	ctx := context.Background()
	log := logger(t)
	st := must(sqlstore.Open(ctx, log, t.TempDir()+"/db.sqlite"))
	t.Cleanup(func() { _ = st.Close() })
	b := must(bus.Open(ctx, log, bus.Options{DataDir: t.TempDir()}))
	t.Cleanup(func() { _ = b.Close() })

	// The manager.
	mlis := must(net.Listen("tcp", "127.0.0.1:0"))
	m := manager.New(log, st, manager.WithInsecureNoAuth(), manager.WithBus(b))
	serve(t, func(ctx context.Context) error { return m.Serve(ctx, mlis) })
	admin := must(cloudiot.NewService(ctx, option.WithEndpoint("http://"+mlis.Addr().String()+"/"), option.WithoutAuthentication()))

	// The bridge, over TLS, with a clock tests may move forward (the
	// bridge takes one state per second per device).
	skew := &atomic.Int64{}
	serverTLS, clientTLS := testTLS()
	blis := must(net.Listen("tcp", "127.0.0.1:0"))
	bopts := append([]bridge.Option{bridge.WithClock(func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })}, cfg.bridgeOpts...)
	br := bridge.New(log, st, b, bopts...)
	serve(t, func(ctx context.Context) error { return br.Serve(ctx, tls.NewListener(blis, serverTLS)) })

	// The hub.
	keys := must(hub.NewKeys("", t.TempDir()+"/hub-keys"))
	pool := hub.NewPool(log, blis.Addr().String(), keys, append([]hub.PoolOption{hub.WithBridgeTLS(clientTLS)}, cfg.poolOpts...)...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := pool.Close(ctx); err != nil {
			t.Errorf("pool.Close: %v", err)
		}
	})
	svc := hub.NewService(log, pool, keys, hub.NewManagerProvisioner(admin))
	hlis := must(net.Listen("tcp", "127.0.0.1:0"))
	hs := hub.NewServer(log, svc, hub.WithInsecureNoAuth(), hub.WithShutdownTimeout(time.Second))
	serve(t, func(ctx context.Context) error { return hs.Serve(ctx, hlis) })
	conn := must(grpc.NewClient(hlis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())))
	t.Cleanup(func() { _ = conn.Close() })
	return &env{admin: admin, hub: hubv1.NewHubClient(conn), pool: pool, hubAddr: hlis.Addr().String(), clockSkew: skew}
}

// testTLS makes a CA and a server certificate for 127.0.0.1.
func testTLS() (server, client *tls.Config) {
	caKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER := must(x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey))
	ca := must(x509.ParseCertificate(caDER))
	srvKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "bridge"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER := must(x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	server = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}},
	}
	return server, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// waitFor polls f until it returns nil.
func waitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
