// Command helper is the device side of the console's browser test
// (services/console/e2e/console.test.mjs): the things a person would do
// with real devices and backends while watching the console.
//
//	helper keygen DIR             write DIR/device.key and DIR/device.pub (ES256)
//	helper cacert DIR             write DIR/ca-cert.pem, a self-signed CA certificate
//	helper device FLAGS           a paho MQTT device: prints what it receives as
//	                              JSON lines, publishes what stdin asks
//	helper states FLAGS           create a gateway through the hub and publish
//	                              states for a device through it, then stay attached
//	helper seed FLAGS             write a registry of N devices straight into the
//	                              SQLite store, before serve starts
//
// It is a test tool, not part of Passerelle's binaries.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: helper keygen|device|states|seed ...")
	}
	switch args[0] {
	case "keygen":
		if len(args) != 2 {
			return errors.New("usage: helper keygen DIR")
		}
		return keygen(args[1])
	case "cacert":
		if len(args) != 2 {
			return errors.New("usage: helper cacert DIR")
		}
		return cacert(args[1])
	case "device":
		return device(ctx, args[1:])
	case "states":
		return states(ctx, args[1:])
	case "seed":
		return seed(ctx, args[1:])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func keygen(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "device.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "device.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

func cacert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "console e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "ca-cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// out prints one JSON line; the test reads them.
var outMu sync.Mutex

func out(v map[string]any) {
	b, _ := json.Marshal(v)
	outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	outMu.Unlock()
}

func device(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("device", flag.ContinueOnError)
	addr := fs.String("addr", "", "the bridge's MQTT over TLS address")
	caFile := fs.String("ca", "", "the CA the bridge's certificate is signed by (ca.pem)")
	name := fs.String("name", "", "the device's resource name")
	keyFile := fs.String("key", "", "the device's private key (PEM)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	parts := strings.Split(*name, "/")
	if len(parts) != 8 {
		return fmt.Errorf("-name %q is not a device name", *name)
	}
	project, deviceID := parts[1], parts[7]
	keyPEM, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	key, err := jwt.ParseECPrivateKeyFromPEM(keyPEM)
	if err != nil {
		return err
	}
	now := time.Now()
	token, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		Audience: jwt.ClaimStrings{project}, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}).SignedString(key)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	lost := make(chan error, 1)
	opts := mqtt.NewClientOptions().AddBroker("ssl://" + *addr).SetClientID(*name).SetUsername("unused").SetPassword(token).
		SetTLSConfig(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetKeepAlive(10 * time.Second).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	c := mqtt.NewClient(opts)
	if t := c.Connect(); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		return fmt.Errorf("connect: %v", t.Error())
	}
	defer c.Disconnect(250)
	// QoS 1: paho acknowledges each message after the handler returns,
	// which is the device's config acknowledgement.
	subs := map[string]byte{"/devices/" + deviceID + "/config": 1, "/devices/" + deviceID + "/commands/#": 1}
	if t := c.SubscribeMultiple(subs, func(_ mqtt.Client, m mqtt.Message) {
		kind := "command"
		if strings.HasSuffix(m.Topic(), "/config") {
			kind = "config"
		}
		out(map[string]any{"event": kind, "topic": m.Topic(), "data": string(m.Payload())})
	}); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		return fmt.Errorf("subscribe: %v", t.Error())
	}
	out(map[string]any{"event": "connected"})

	// stdin: "event TEXT" or "state TEXT", one a line.
	lines := make(chan string)
	go func() { // ends with stdin (the test closes it, or the process exits)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-lost:
			out(map[string]any{"event": "lost", "error": fmt.Sprint(err)})
			return nil
		case l, ok := <-lines:
			if !ok {
				return nil
			}
			kind, data, _ := strings.Cut(l, " ")
			topic := "/devices/" + deviceID + "/events"
			if kind == "state" {
				topic = "/devices/" + deviceID + "/state"
			}
			t := c.Publish(topic, 1, false, data)
			t.WaitTimeout(30 * time.Second)
			out(map[string]any{"event": "published", "kind": kind, "error": fmt.Sprint(t.Error())})
		}
	}
}

func states(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("states", flag.ContinueOnError)
	addr := fs.String("hub", "", "the hub's address")
	token := fs.String("token", "", "an admin token")
	registry := fs.String("registry", "", "the registry's resource name")
	gateway := fs.String("gateway", "", "the id of the gateway to create through the hub")
	deviceID := fs.String("device", "", "the device to publish for (created and bound when missing)")
	n := fs.Int("n", 15, "how many states")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*token)
	hub := hubv1.NewHubClient(conn)
	gwName := *registry + "/devices/" + *gateway
	if _, err := hub.CreateGateway(ctx, &hubv1.CreateGatewayRequest{Parent: *registry, GatewayId: *gateway}); err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("CreateGateway: %w", err)
	}
	out(map[string]any{"event": "gateway", "name": gwName})
	// Attach (creating and binding the device), and stay attached so the
	// pool shows it.
	att, err := hub.Attach(ctx)
	if err != nil {
		return err
	}
	if err := att.Send(&hubv1.AttachRequest{Gateway: gwName, DeviceId: *deviceID, CreateIfMissing: true, BindIfNeeded: true}); err != nil {
		return err
	}
	if _, err := att.Recv(); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	out(map[string]any{"event": "attached"})
	ps, err := hub.PublishState(ctx)
	if err != nil {
		return err
	}
	// One goroutine sends, this one's sibling reads the answers; both end
	// with the stream.
	var g errgroup.Group
	g.Go(func() error {
		for i := 1; i <= *n; i++ {
			req := &hubv1.PublishStateRequest{Data: fmt.Appendf(nil, `{"n":%d,"note":"<script>window.__pwned=true</script>"}`, i)}
			if i == 1 {
				req.Gateway, req.DeviceId = gwName, *deviceID
			}
			if err := ps.Send(req); err != nil {
				return err
			}
		}
		return ps.CloseSend()
	})
	g.Go(func() error {
		for i := 1; i <= *n; i++ {
			if _, err := ps.Recv(); err != nil {
				return fmt.Errorf("state %d: %w", i, err)
			}
			out(map[string]any{"event": "state", "n": i})
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	out(map[string]any{"event": "published", "n": *n})
	// Stay attached until stdin closes or a signal comes.
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return att.CloseSend()
}

func seed(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	db := fs.String("db", "", "the SQLite file (<data-dir>/passerelle.db)")
	registry := fs.String("registry", "", "the registry to create, projects/p/locations/l/registries/r")
	n := fs.Int("n", 100_000, "how many devices")
	workers := fs.Int("workers", 256, "concurrent writers (SQLite commits them in groups)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	parts := strings.Split(*registry, "/")
	if len(parts) != 6 {
		return fmt.Errorf("-registry %q is not a registry name", *registry)
	}
	st, err := sqlstore.Open(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), *db)
	if err != nil {
		return err
	}
	defer st.Close()
	key := store.RegistryKey{Project: parts[1], Location: parts[3], ID: parts[5]}
	if err := st.CreateRegistry(ctx, &store.Registry{Key: key}); err != nil {
		return err
	}
	start := time.Now()
	ids := make(chan int)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(ids)
		for i := range *n {
			select {
			case ids <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range *workers {
		g.Go(func() error {
			for i := range ids {
				d := &store.Device{Registry: key, ID: fmt.Sprintf("device-%06d", i), Metadata: map[string]string{"seed": "yes"}}
				if _, err := st.CreateDevice(gctx, d, time.Now()); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	out(map[string]any{"event": "seeded", "devices": *n, "ms": time.Since(start).Milliseconds()})
	return nil
}
