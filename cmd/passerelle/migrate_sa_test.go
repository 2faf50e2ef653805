package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/golang-jwt/jwt/v5"

	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/migrate"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

// TestMigrateServiceAccountAndConfigHistory reads the source over REST with a
// Google service-account key (as ClearBlade issues them: the token comes
// from the key's token_uri, here a local OAuth server that checks the
// signed assertion), and copies every kept config version; the target's
// one write per second per device is met with backoff.
func TestMigrateServiceAccountAndConfigHistory(t *testing.T) {
	srcAPI := startManager(t)
	src := dialAPI(t, srcAPI.addr, srcAPI.token)
	ctx := t.Context()
	reg := "projects/p1/locations/us-central1/registries/hist"
	if _, err := src.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{Parent: "projects/p1/locations/us-central1", DeviceRegistry: &iotpb.DeviceRegistry{Id: "hist"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: reg, Device: &iotpb.Device{Id: "dev-1"}}); err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{"c1", "c2", "c3"} {
		if _, err := src.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{Name: reg + "/devices/dev-1", BinaryData: []byte(data)}, migrate.Retry()...); err != nil {
			t.Fatal(err)
		}
	}

	key := testutil.Must(rsa.GenerateKey(rand.Reader, 2048))
	var exchanged atomic.Int32
	oauth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assertion := r.PostFormValue("assertion")
		if _, err := jwt.Parse(assertion, func(*jwt.Token) (any, error) { return &key.PublicKey, nil }, jwt.WithValidMethods([]string{"RS256"})); err != nil {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		exchanged.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": srcAPI.token, "token_type": "Bearer", "expires_in": 3600})
	}))
	defer oauth.Close()
	keyFile := filepath.Join(t.TempDir(), "key.json")
	raw, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "p1", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: testutil.Must(x509.MarshalPKCS8PrivateKey(key))})),
		"client_email": "migrator@p1.iam.gserviceaccount.com", "token_uri": oauth.URL + "/token",
	})
	if err := os.WriteFile(keyFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	dstAPI := startManager(t)
	dst := dialAPI(t, dstAPI.addr, dstAPI.token)
	env := config.MapEnv(map[string]string{"PASSERELLE_ENDPOINT": dstAPI.addr, "PASSERELLE_TOKEN": dstAPI.token, "PASSERELLE_CONFIG_DIR": t.TempDir()})
	// Over REST, as from ClearBlade.
	_, stderr, code := runMigrate(t, env, "--from", "http://"+srcAPI.addr, "--from-credentials-file", keyFile, "--project", "p1", "--region", "us-central1", "--config-history")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if exchanged.Load() == 0 {
		t.Error("the key was never exchanged for a token")
	}
	versions, err := dst.ListDeviceConfigVersions(ctx, &iotpb.ListDeviceConfigVersionsRequest{Name: reg + "/devices/dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range versions.DeviceConfigs {
		got = append(got, string(v.BinaryData))
	}
	if strings.Join(got, ",") != "c3,c2,c1," {
		t.Errorf("target's versions, newest first: %q, want c3, c2, c1 and the empty first", got)
	}

	// A key file that is no service-account key is a flag error.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"type": "authorized_user"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runMigrate(t, env, "--from", srcAPI.addr, "--from-credentials-file", bad, "--project", "p1", "--region", "us-central1"); code != 2 || !strings.Contains(stderr, "argument --from-credentials-file") {
		t.Errorf("bad key file: exit %d\n%s", code, stderr)
	}
}
