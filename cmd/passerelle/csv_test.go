package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDevicesCreateFromCSV creates a fleet from a CSV file: keys as paths
// or inline PEM, metadata columns, gateways; a bad row is reported and
// the others are created; a second run skips what exists.
func TestDevicesCreateFromCSV(t *testing.T) {
	api := startManager(t)
	env := api.env(t)
	mustIoT(t, env, "registries", "create", "reg1", "--region=us-central1")
	pem, err := os.ReadFile(testdata("ec_public.pem"))
	if err != nil {
		t.Fatal(err)
	}
	csv := "id,public_key,key_type,blocked,device_type,auth_method,metadata.site,metadata.floor\n" +
		"dev-1," + testdata("rsa_cert.pem") + ",rs256,,,,lab,3\n" +
		"dev-2,\"" + string(pem) + "\",es256,true,,,,\n" +
		"gw-1,,,,gateway,association-only,roof,\n" +
		"bad-1,,,maybe,,,,\n" +
		"9bad,,,,,,,\n"
	file := filepath.Join(t.TempDir(), "fleet.csv")
	if err := os.WriteFile(file, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runIoT(t, env, "devices", "create", "--from-csv", file, "--region=us-central1", "--registry=reg1")
	if code != 1 || !strings.Contains(errOut, "Created 3 devices, skipped 0 that exist, 2 failed.") ||
		!strings.Contains(errOut, `line 5 [bad-1]`) || !strings.Contains(errOut, `line 6 [9bad]: INVALID_ARGUMENT`) ||
		!strings.Contains(errOut, "5/5 devices") {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	got := mustIoT(t, env, "devices", "list", "--region=us-central1", "--registry=reg1", "--format=csv(id,blocked,metadata.site,gatewayConfig.gatewayType)", "--device-field-mask=blocked,metadata,gatewayConfig", "--sort-by=id")
	want := "ID,BLOCKED,SITE,GATEWAY_TYPE\ndev-1,,lab,NON_GATEWAY\ndev-2,True,,NON_GATEWAY\ngw-1,,roof,GATEWAY\n"
	if got != want {
		t.Errorf("devices:\n%s\nwant\n%s", got, want)
	}
	if out := mustIoT(t, env, "devices", "credentials", "list", "--device=dev-2", "--region=us-central1", "--registry=reg1", "--format=value(publicKey.format)"); out != "ES256_PEM\n" {
		t.Errorf("dev-2's key: %q", out)
	}
	_, errOut, _ = runIoT(t, env, "devices", "create", "--from-csv", file, "--region=us-central1", "--registry=reg1")
	if !strings.Contains(errOut, "Created 0 devices, skipped 3 that exist, 2 failed.") {
		t.Errorf("second run:\n%s", errOut)
	}
}
