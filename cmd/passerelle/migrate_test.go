package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/passerelle-iot/passerelle/pkg/config"
	"github.com/passerelle-iot/passerelle/pkg/migrate"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
)

func dialAPI(t testing.TB, addr, token string) *iot.DeviceManagerClient {
	t.Helper()
	c, err := iot.NewDeviceManagerClient(context.Background(), option.WithEndpoint(addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithGRPCDialOption(grpc.WithPerRPCCredentials(bearer(token))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const fleetRegistry = "projects/p1/locations/us-central1/registries/fleet"

// fleet is what populate put in a source: keys by device id.
type fleet struct {
	keys map[string]*ecdsa.PrivateKey
}

// populate makes registry fleet with n devices, of which one in 100 is a
// gateway with 10 devices bound to it (n/10 bindings in all); each device
// has an ES256 key (one of 8), metadata, one in 7 a config written after
// creation, one in 50 is blocked.
func populate(t testing.TB, c *iot.DeviceManagerClient, n int) *fleet {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{Parent: "projects/p1/locations/us-central1", DeviceRegistry: &iotpb.DeviceRegistry{
		Id: "fleet", LogLevel: iotpb.LogLevel_INFO,
		EventNotificationConfigs: []*iotpb.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/fleet-events"}},
		StateNotificationConfig:  &iotpb.StateNotificationConfig{PubsubTopicName: "projects/p1/topics/fleet-state"},
	}}); err != nil {
		t.Fatal(err)
	}
	f := &fleet{keys: map[string]*ecdsa.PrivateKey{}}
	var privs []*ecdsa.PrivateKey
	var pubs []string
	for range 8 {
		k := testutil.Must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		der := testutil.Must(x509.MarshalPKIXPublicKey(&k.PublicKey))
		privs, pubs = append(privs, k), append(pubs, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	}
	id := func(i int) string {
		if i%100 == 0 {
			return fmt.Sprintf("gw-%05d", i)
		}
		return fmt.Sprintf("dev-%05d", i)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range n {
		f.keys[id(i)] = privs[i%8]
		g.Go(func() error {
			d := &iotpb.Device{
				Id:       id(i),
				Metadata: map[string]string{"serial": strconv.Itoa(i), "site": "s" + strconv.Itoa(i%13)},
				Blocked:  i%50 == 49,
				LogLevel: []iotpb.LogLevel{0, iotpb.LogLevel_NONE, iotpb.LogLevel_ERROR, iotpb.LogLevel_INFO, iotpb.LogLevel_DEBUG}[i%5],
				Credentials: []*iotpb.DeviceCredential{{Credential: &iotpb.DeviceCredential_PublicKey{
					PublicKey: &iotpb.PublicKeyCredential{Format: iotpb.PublicKeyFormat_ES256_PEM, Key: pubs[i%8]},
				}}},
			}
			if i%100 == 0 {
				d.GatewayConfig = &iotpb.GatewayConfig{GatewayType: iotpb.GatewayType_GATEWAY, GatewayAuthMethod: iotpb.GatewayAuthMethod_ASSOCIATION_ONLY}
			}
			if _, err := c.CreateDevice(gctx, &iotpb.CreateDeviceRequest{Parent: fleetRegistry, Device: d}); err != nil {
				return fmt.Errorf("create %s: %w", d.Id, err)
			}
			if i%7 == 3 {
				if _, err := c.ModifyCloudToDeviceConfig(gctx, &iotpb.ModifyCloudToDeviceConfigRequest{Name: fleetRegistry + "/devices/" + d.Id, BinaryData: []byte("config of " + d.Id)}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(32)
	for gw := 0; gw < n; gw += 100 {
		for j := 1; j <= 10 && gw+j < n; j++ {
			g.Go(func() error {
				_, err := c.BindDeviceToGateway(gctx, &iotpb.BindDeviceToGatewayRequest{Parent: fleetRegistry, GatewayId: id(gw), DeviceId: id(gw + j)})
				return err
			})
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return f
}

// sameFleet checks that dst holds src's registry, devices and bindings.
func sameFleet(t *testing.T, src, dst *iot.DeviceManagerClient) {
	t.Helper()
	ctx := context.Background()
	sr, err := src.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: fleetRegistry})
	if err != nil {
		t.Fatal(err)
	}
	dr, err := dst.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: fleetRegistry})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(sr, dr) {
		t.Errorf("registry differs:\nsource %v\ntarget %v", sr, dr)
	}
	list := func(c *iot.DeviceManagerClient, opts *iotpb.GatewayListOptions) map[string]*iotpb.Device {
		devices, err := listAllDevices(c, &iotpb.ListDevicesRequest{Parent: fleetRegistry, FieldMask: migrate.FullDeviceMask(), PageSize: 10000, GatewayListOptions: opts})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*iotpb.Device{}
		for _, d := range devices {
			m[d.Id] = d
		}
		return m
	}
	s, d := list(src, nil), list(dst, nil)
	if len(s) != len(d) {
		t.Fatalf("source has %d devices, target %d", len(s), len(d))
	}
	bad := 0
	for id, sd := range s {
		dd := d[id]
		if dd == nil {
			t.Fatalf("device %s missing on the target", id)
		}
		same := proto.Equal(&iotpb.Device{Credentials: sd.Credentials, Metadata: sd.Metadata, Blocked: sd.Blocked, LogLevel: sd.LogLevel, GatewayConfig: sd.GatewayConfig},
			&iotpb.Device{Credentials: dd.Credentials, Metadata: dd.Metadata, Blocked: dd.Blocked, LogLevel: dd.LogLevel, GatewayConfig: dd.GatewayConfig}) &&
			string(sd.GetConfig().GetBinaryData()) == string(dd.GetConfig().GetBinaryData())
		if !same && bad < 5 {
			bad++
			t.Errorf("device %s differs:\nsource %v\ntarget %v", id, sd, dd)
		}
	}
	for id, sd := range s {
		if sd.GetGatewayConfig().GetGatewayType() != iotpb.GatewayType_GATEWAY {
			continue
		}
		opts := &iotpb.GatewayListOptions{Filter: &iotpb.GatewayListOptions_AssociationsGatewayId{AssociationsGatewayId: id}}
		sb, db := list(src, opts), list(dst, opts)
		if len(sb) != len(db) {
			t.Errorf("gateway %s: %d devices bound on the source, %d on the target", id, len(sb), len(db))
		}
		for b := range sb {
			if db[b] == nil {
				t.Errorf("gateway %s: %s not bound on the target", id, b)
			}
		}
	}
}

func listAllDevices(c *iot.DeviceManagerClient, req *iotpb.ListDevicesRequest) ([]*iotpb.Device, error) {
	var out []*iotpb.Device
	it := c.ListDevices(context.Background(), req)
	for {
		d, err := it.Next()
		if err != nil {
			if err.Error() == "no more items in iterator" {
				return out, nil
			}
			return nil, err
		}
		out = append(out, d)
	}
}

// readReport reads a --report file.
func readReport(t *testing.T, path string) *migrate.Report {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r migrate.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// mqttConnects connects a device to a bridge's plaintext MQTT address
// with a JWT signed by key, subscribes to its config and returns the
// first config it gets.
func mqttConnects(t *testing.T, mqttAddr, device string, key *ecdsa.PrivateKey) (string, error) {
	t.Helper()
	now := time.Now()
	password, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), Audience: jwt.ClaimStrings{"p1"},
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	opts := paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).
		SetClientID(fleetRegistry + "/devices/" + device).SetUsername("unused").SetPassword(password).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false)
	mc := paho.NewClient(opts)
	if tok := mc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return "", fmt.Errorf("connect %s: %v", device, tok.Error())
	}
	defer mc.Disconnect(100)
	configs := make(chan string, 4)
	if tok := mc.Subscribe("/devices/"+device+"/config", 1, func(_ paho.Client, m paho.Message) { configs <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return "", fmt.Errorf("subscribe: %v", tok.Error())
	}
	select {
	case c := <-configs:
		return c, nil
	case <-time.After(10 * time.Second):
		return "", errors.New("no config 10 s after SUBACK")
	}
}

// startTarget runs `passerelle serve` in process with a plaintext MQTT
// address, and returns its admin address, token and MQTT address.
func startTarget(t *testing.T) (adminAddr, token, mqttAddr string) {
	t.Helper()
	dataDir := filepath.Join(t.TempDir(), "data")
	adminAddr, mqttAddr = testutil.FreeAddr(t), testutil.FreeAddr(t)
	startServe(t, noEnv, "serve", "--data-dir", dataDir, "--admin-addr", adminAddr, "--mqtt-addr", "", "--mqtt-plain-addr", mqttAddr, "--hub-addr", testutil.FreeAddr(t))
	raw, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return adminAddr, strings.TrimSpace(string(raw)), mqttAddr
}

// TestMigratePasserelleToPasserelle copies a registry of 10,000 devices
// with 1,000 bindings, configs and credentials from one Passerelle to
// another: the first run is interrupted halfway, the second (the command
// line) resumes and converges, a third finds nothing to do, and copied
// devices connect to the target's MQTT bridge with their old keys.
func TestMigratePasserelleToPasserelle(t *testing.T) {
	n := 10000
	if testing.Short() || raceEnabled {
		n = 1000
	}
	srcAPI := startManager(t)
	src := dialAPI(t, srcAPI.addr, srcAPI.token)
	fl := populate(t, src, n)
	adminAddr, token, mqttAddr := startTarget(t)
	dst := dialAPI(t, adminAddr, token)

	// Run 1, interrupted once half the devices are done.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var done atomic.Int64
	api := &migrate.API{Client: src, Locations: []string{"projects/p1/locations/us-central1"}, CallOptions: migrate.Retry()}
	first, err := migrate.Run(ctx, testutil.Logger(t), api, dst, migrate.Options{Concurrency: 16, CallOptions: migrate.Retry(), Progress: func(bool) {
		if done.Add(1) == int64(n/2) {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	created := first.Counts["device"][migrate.Created]
	if created == 0 || created >= n {
		t.Fatalf("the interrupted run created %d of %d devices", created, n)
	}
	t.Logf("interrupted run: %d devices created", created)

	// Run 2: the command line resumes.
	reportFile := filepath.Join(t.TempDir(), "report.json")
	env := config.MapEnv(map[string]string{"PASSERELLE_ENDPOINT": adminAddr, "PASSERELLE_TOKEN": token, "PASSERELLE_CONFIG_DIR": t.TempDir()})
	var out testutil.SyncBuffer
	if code := run(context.Background(), []string{"migrate", "--from", srcAPI.addr, "--from-token", srcAPI.token, "--project", "p1", "--region", "us-central1", "--report", reportFile}, &out, env); code != 0 {
		t.Fatalf("resumed run: exit %d\n%s", code, lastLines(out.String()))
	}
	second := readReport(t, reportFile)
	dc := second.Counts["device"]
	if dc[migrate.Failed] != 0 || dc[migrate.Created]+dc[migrate.Skipped]+dc[migrate.Updated] != n || dc[migrate.Skipped] < created {
		t.Errorf("resumed run's devices: %v (the first created %d)", dc, created)
	}
	if bc := second.Counts["binding"]; bc[migrate.Created]+bc[migrate.Skipped] != n/10 || bc[migrate.Failed] != 0 {
		t.Errorf("resumed run's bindings: %v, want %d in all", bc, n/10)
	}
	for _, it := range second.Items {
		if it.Kind == "device" && it.Action == migrate.Created && (it.OldNum == 0 || it.NewNum == 0) {
			t.Errorf("report item %+v lacks the old or new numeric id", it)
			break
		}
	}
	if !strings.Contains(out.String(), "devices") || !strings.Contains(out.String(), "created") {
		t.Errorf("the command printed no progress or summary:\n%s", lastLines(out.String()))
	}
	sameFleet(t, src, dst)

	// Run 3: nothing left to do.
	out = testutil.SyncBuffer{}
	if code := run(context.Background(), []string{"migrate", "--from", srcAPI.addr, "--from-token", srcAPI.token, "--project", "p1", "--region", "us-central1", "--report", reportFile}, &out, env); code != 0 {
		t.Fatalf("third run: exit %d\n%s", code, lastLines(out.String()))
	}
	third := readReport(t, reportFile)
	for kind, want := range map[string]int{"device": n, "binding": n / 10, "registry": 1} {
		if c := third.Counts[kind]; c[migrate.Skipped] != want || len(c) != 1 {
			t.Errorf("third run's %ss: %v, want %d skipped", kind, c, want)
		}
	}

	// Copied devices connect to the target with their old keys and get
	// their copied config.
	for _, id := range []string{"dev-00003", "dev-00001", "gw-00000"} {
		got, err := mqttConnects(t, mqttAddr, id, fl.keys[id])
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		want := ""
		if i, _ := strconv.Atoi(id[strings.IndexByte(id, '-')+1:]); i%7 == 3 {
			want = "config of " + id
		}
		if got != want {
			t.Errorf("%s got config %q, want %q", id, got, want)
		}
	}
	// A blocked device stays blocked.
	if _, err := mqttConnects(t, mqttAddr, "dev-00049", fl.keys["dev-00049"]); err == nil {
		t.Error("the blocked dev-00049 connected to the target")
	}
}

// TestMigrateFromExport copies the JSON that `passerelle iot devices list
// --format=json` prints with the full field mask (as gcloud's did): a
// --dry-run changes nothing, a device the target refuses is reported and
// the rest are copied, and they connect with their old keys.
func TestMigrateFromExport(t *testing.T) {
	srcAPI := startManager(t)
	src := dialAPI(t, srcAPI.addr, srcAPI.token)
	fl := populate(t, src, 30)
	srcEnv := srcAPI.env(t)
	mask := strings.Join(migrate.FullDeviceMask().Paths, ",")
	exported := mustIoT(t, srcEnv, "devices", "list", "--region=us-central1", "--registry=fleet", "--format=json", "--device-field-mask="+mask)
	var devices []map[string]any
	if err := json.Unmarshal([]byte(exported), &devices); err != nil {
		t.Fatal(err)
	}
	// One device the target must refuse: a key that does not parse.
	devices = append(devices, map[string]any{
		"id": "bad-key", "name": fleetRegistry + "/devices/9999",
		"credentials": []any{map[string]any{"publicKey": map[string]any{"format": "ES256_PEM", "key": "not a key"}}},
	})
	exportFile := filepath.Join(t.TempDir(), "export.json")
	raw, _ := json.Marshal(devices)
	if err := os.WriteFile(exportFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	adminAddr, token, mqttAddr := startTarget(t)
	dst := dialAPI(t, adminAddr, token)
	env := config.MapEnv(map[string]string{"PASSERELLE_ENDPOINT": adminAddr, "PASSERELLE_TOKEN": token, "PASSERELLE_CONFIG_DIR": t.TempDir()})

	stdout, stderr, code := runMigrate(t, env, "--from-export", exportFile, "--dry-run")
	if code != 0 || !strings.Contains(stdout, "created  device   "+fleetRegistry+"/devices/dev-00001") {
		t.Fatalf("dry run: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := dst.GetDeviceRegistry(t.Context(), &iotpb.GetDeviceRegistryRequest{Name: fleetRegistry}); err == nil {
		t.Fatal("the dry run created the registry")
	}

	reportFile := filepath.Join(t.TempDir(), "report.json")
	_, stderr, code = runMigrate(t, env, "--from-export", exportFile, "--report", reportFile)
	if code != 1 || !strings.Contains(stderr, "failed   device   "+fleetRegistry+"/devices/bad-key") || !strings.Contains(stderr, "INVALID_ARGUMENT") {
		t.Fatalf("run with a bad device: exit %d, want 1 and the device reported\n%s", code, stderr)
	}
	rep := readReport(t, reportFile)
	if c := rep.Counts["device"]; c[migrate.Created] != 30 || c[migrate.Failed] != 1 {
		t.Errorf("devices: %v, want 30 created and 1 failed", c)
	}
	// The export has no bindings: the target has the devices, unbound.
	for id := range fl.keys {
		d, err := dst.GetDevice(t.Context(), &iotpb.GetDeviceRequest{Name: fleetRegistry + "/devices/" + id})
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		s, _ := src.GetDevice(t.Context(), &iotpb.GetDeviceRequest{Name: fleetRegistry + "/devices/" + id})
		if !proto.Equal(&iotpb.Device{Credentials: s.Credentials, Metadata: s.Metadata, Blocked: s.Blocked}, &iotpb.Device{Credentials: d.Credentials, Metadata: d.Metadata, Blocked: d.Blocked}) ||
			string(s.GetConfig().GetBinaryData()) != string(d.GetConfig().GetBinaryData()) {
			t.Errorf("%s differs:\nsource %v\ntarget %v", id, s, d)
		}
	}
	if got, err := mqttConnects(t, mqttAddr, "dev-00010", fl.keys["dev-00010"]); err != nil || got != "config of dev-00010" {
		t.Errorf("dev-00010 on the target: config %q, %v", got, err)
	}
	// Changed on the source, copied again: updated, not created.
	if _, err := src.UpdateDevice(t.Context(), &iotpb.UpdateDeviceRequest{Device: &iotpb.Device{Name: fleetRegistry + "/devices/dev-00002", Metadata: map[string]string{"site": "moved"}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"metadata"}}}); err != nil {
		t.Fatal(err)
	}
	exported = mustIoT(t, srcEnv, "devices", "list", "--region=us-central1", "--registry=fleet", "--format=json", "--device-field-mask="+mask)
	if err := os.WriteFile(exportFile, []byte(exported), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runMigrate(t, env, "--from-export", exportFile, "--report", reportFile); code != 0 {
		t.Fatalf("second run: exit %d\n%s", code, stderr)
	}
	if c := readReport(t, reportFile).Counts["device"]; c[migrate.Updated] != 1 || c[migrate.Skipped] != 29 {
		t.Errorf("second run's devices: %v, want 1 updated and 29 skipped", c)
	}
}

func runMigrate(t *testing.T, env config.Env, args ...string) (string, string, int) {
	t.Helper()
	return runCommand(t, env, append([]string{"migrate"}, args...)...)
}
