package manager_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGrpcurl drives the manager with grpcurl through server reflection:
// list, describe, and calls with -d, as a user would. CI installs grpcurl
// (make tools); elsewhere the test skips when it is not on the PATH.
func TestGrpcurl(t *testing.T) {
	bin, err := exec.LookPath("grpcurl")
	if err != nil {
		if local, lerr := filepath.Abs("../../.tools/bin/grpcurl"); lerr == nil {
			if _, serr := os.Stat(local); serr == nil {
				bin, err = local, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("grpcurl is not installed under CI: run make tools")
		}
		t.Skip("grpcurl not found; run make tools")
	}
	env := newAPIEnv(t, filepath.Join(t.TempDir(), "passerelle.db"))
	run := func(args ...string) (string, error) {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"-plaintext"}, args...)...).CombinedOutput()
		return string(out), err
	}
	auth := "authorization: Bearer " + env.token

	out, err := run(env.addr, "list")
	if err != nil || !strings.Contains(out, "google.cloud.iot.v1.DeviceManager") {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	out, err = run(env.addr, "describe", "google.cloud.iot.v1.DeviceManager.CreateDevice")
	if err != nil || !strings.Contains(out, "CreateDeviceRequest") {
		t.Fatalf("grpcurl describe: %v\n%s", err, out)
	}
	out, err = run("-H", auth, "-d", `{"parent":"projects/p1/locations/us-central1","deviceRegistry":{"id":"grpcurl-reg"}}`,
		env.addr, "google.cloud.iot.v1.DeviceManager/CreateDeviceRegistry")
	if err != nil || !strings.Contains(out, `"name": "projects/p1/locations/us-central1/registries/grpcurl-reg"`) {
		t.Fatalf("grpcurl CreateDeviceRegistry: %v\n%s", err, out)
	}
	out, err = run("-H", auth, "-d", `{"parent":"projects/p1/locations/us-central1/registries/grpcurl-reg","device":{"id":"goog-device"}}`,
		env.addr, "google.cloud.iot.v1.DeviceManager/CreateDevice")
	if err == nil || !strings.Contains(out, "InvalidArgument") || !strings.Contains(out, "device.id") {
		t.Fatalf("grpcurl CreateDevice with a bad id: want InvalidArgument naming device.id, got %v\n%s", err, out)
	}
	out, err = run("-d", `{"parent":"projects/p1/locations/us-central1"}`,
		env.addr, "google.cloud.iot.v1.DeviceManager/ListDeviceRegistries")
	if err == nil || !strings.Contains(out, "Unauthenticated") {
		t.Fatalf("grpcurl without a token: want Unauthenticated, got %v\n%s", err, out)
	}
	out, err = run(env.addr, "grpc.health.v1.Health/Check")
	if err != nil || !strings.Contains(out, "SERVING") {
		t.Fatalf("grpcurl health: %v\n%s", err, out)
	}
}
