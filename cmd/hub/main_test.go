package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	hubv1 "github.com/passerelle-iot/passerelle/gen/passerelle/hub/v1"
	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

var noEnv = config.MapEnv(nil)

func oneLine(t *testing.T, what, out, contains string) {
	t.Helper()
	out = strings.TrimSpace(out)
	if strings.Count(out, "\n") != 0 || !strings.Contains(out, contains) {
		t.Errorf("%s: output %q, want one line containing %q", what, out, contains)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	if code := run(t.Context(), []string{"--insecure-no-auth", "--data-dir", dir, "--check-config"}, &out, noEnv); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	oneLine(t, "--check-config", out.String(), "configuration OK")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("--check-config created %s", dir)
	}
	// The environment sets flags too, and is checked the same way.
	out.Reset()
	env := config.MapEnv(map[string]string{"PASSERELLE_BRIDGE": "no-port"})
	if code := run(t.Context(), []string{"--check-config"}, &out, env); code != 2 {
		t.Errorf("PASSERELLE_BRIDGE=no-port: exit %d", code)
	}
	oneLine(t, "PASSERELLE_BRIDGE=no-port", out.String(), "--bridge")
}

func TestBadFlagsAreOneClearLine(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		contains string
	}{
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--bridge", "localhost"}, "want host:port"},
		{[]string{"--bridge-plain", "--bridge-ca", "ca.pem"}, "exclude each other"},
		{[]string{"--tls-cert", "c.pem"}, "go together"},
		{[]string{"--manager-url", "ftp://x"}, "--manager-url"},
		{[]string{"--log-level", "loud"}, "log-level"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		var out bytes.Buffer
		if code := run(t.Context(), tc.args, &out, noEnv); code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		oneLine(t, strings.Join(tc.args, " "), out.String(), tc.contains)
	}
	// --help is not an error, and prints the usage.
	var out bytes.Buffer
	if code := run(t.Context(), []string{"--help"}, &out, noEnv); code != 0 || !strings.Contains(out.String(), "--gateways-file") && !strings.Contains(out.String(), "-gateways-file") {
		t.Errorf("--help: exit %d, output %q", code, out.String())
	}
}

func TestMissingTokensFile(t *testing.T) {
	var out bytes.Buffer
	code := run(t.Context(), []string{"--listen", testutil.FreeAddr(t), "--data-dir", t.TempDir(), "--bridge-plain"}, &out, noEnv)
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, out.String())
	}
	oneLine(t, "no tokens file", out.String(), "tokens file")
}

func TestBusyPort(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var out bytes.Buffer
	code := run(t.Context(), []string{"--insecure-no-auth", "--listen", lis.Addr().String(), "--data-dir", t.TempDir(), "--bridge-plain"}, &out, noEnv)
	if code != 1 || !strings.Contains(out.String(), "address already in use") {
		t.Errorf("exit %d, output %q", code, out.String())
	}
}

// TestServesUntilCanceled: the binary's loop on free ports: it answers
// health checks and the API, and stops on cancel with exit 0.
func TestServesUntilCanceled(t *testing.T) {
	addr := testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var out testutil.SyncBuffer
	go func() {
		done <- run(ctx, []string{"--listen", addr, "--bridge", testutil.FreeAddr(t), "--bridge-plain", "--insecure-no-auth",
			"--data-dir", t.TempDir(), "--manager-url", "http://" + testutil.FreeAddr(t)}, &out, noEnv)
	}()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{Service: "passerelle.hub.v1.Hub"})
		ccancel()
		if err == nil {
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health %v", resp.GetStatus())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub never answered: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling for start-up
	}
	c := hubv1.NewHubClient(conn)
	if pv, err := c.GetPool(ctx, &hubv1.GetPoolRequest{}); err != nil || len(pv.GetConnections()) != 0 {
		t.Errorf("GetPool: %v, %v", pv, err)
	}
	// A gateway it has no key for: a clear error, not a hang.
	_, err = c.PublishEvent(ctx, &hubv1.PublishEventRequest{Gateway: "projects/p1/locations/us-central1/registries/reg1/devices/gw-1", Data: []byte("x")})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("PublishEvent for an unknown gateway: %v", err)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d\n%s", code, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the hub did not stop after cancel")
	}
}
