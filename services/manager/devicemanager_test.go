package manager

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
)

const testLocation = "projects/p1/locations/us-central1"

// testEnv is a DeviceManager served over bufconn on a real SQLite store.
type testEnv struct {
	dm     *deviceManager
	store  store.Store
	gapic  *iot.DeviceManagerClient  // Google's client, as admin code uses it
	raw    iotpb.DeviceManagerClient // the bare stub: no retries, tokens visible
	offset atomic.Int64              // added to the clock, in nanoseconds
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlstore.Open(ctx, logger, filepath.Join(t.TempDir(), "passerelle.db"))
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{store: st}
	env.dm = newDeviceManager(logger, st, func() time.Time {
		return time.Now().Add(time.Duration(env.offset.Load()))
	}, nil)
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(unaryErrorInterceptor(logger)))
	iotpb.RegisterDeviceManagerServer(srv, env.dm)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	env.gapic, err = iot.NewDeviceManagerClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	env.raw = iotpb.NewDeviceManagerClient(conn)
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-served
		st.Close()
	})
	return env
}

// Certificates made for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: certPEM(der)}
}

// deviceCert returns an ES256 device certificate, signed by ca or, when ca
// is nil, by itself.
func deviceCert(t *testing.T, ca *testCA) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "device"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	parent, signer := tmpl, any(key)
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM(der)
}

var (
	rsaOnce sync.Once
	rsaPEM  string
)

// rsaSelfSigned returns a self-signed RS256 certificate, made once per run
// because RSA key generation is slow under -race.
func rsaSelfSigned(t *testing.T) string {
	t.Helper()
	rsaOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(3),
			Subject:      pkix.Name{CommonName: "gateway"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		rsaPEM = certPEM(der)
	})
	return rsaPEM
}

func es256Key(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func cred(format iotpb.PublicKeyFormat, key string) *iotpb.DeviceCredential {
	return &iotpb.DeviceCredential{Credential: &iotpb.DeviceCredential_PublicKey{PublicKey: &iotpb.PublicKeyCredential{Format: format, Key: key}}}
}

func mustCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}

func ids(ds []*iotpb.Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.GetId())
	}
	slices.Sort(out)
	return out
}

func (e *testEnv) list(t *testing.T, req *iotpb.ListDevicesRequest) []*iotpb.Device {
	t.Helper()
	var out []*iotpb.Device
	for {
		resp, err := e.raw.ListDevices(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resp.GetDevices()...)
		if resp.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// TestGatewayDemoAdminFlow runs the admin half of Cloud IoT's gateway demo
// with Google's Go client.
func TestGatewayDemoAdminFlow(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	c := env.gapic

	reg, err := c.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{
		Parent: testLocation,
		DeviceRegistry: &iotpb.DeviceRegistry{
			Id:                       "demo-registry",
			EventNotificationConfigs: []*iotpb.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/events"}},
			StateNotificationConfig:  &iotpb.StateNotificationConfig{PubsubTopicName: "projects/p1/topics/state"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if reg.GetName() != testLocation+"/registries/demo-registry" || reg.GetId() != "demo-registry" {
		t.Fatalf("registry name/id = %q/%q", reg.GetName(), reg.GetId())
	}
	if reg.GetMqttConfig().GetMqttEnabledState() != iotpb.MqttState_MQTT_ENABLED {
		t.Errorf("mqtt state = %v, want MQTT_ENABLED by default", reg.GetMqttConfig())
	}
	regName := reg.GetName()

	gw, err := c.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: regName, Device: &iotpb.Device{
		Id:            "demo-gateway",
		Credentials:   []*iotpb.DeviceCredential{cred(iotpb.PublicKeyFormat_RSA_X509_PEM, rsaSelfSigned(t))},
		GatewayConfig: &iotpb.GatewayConfig{GatewayType: iotpb.GatewayType_GATEWAY, GatewayAuthMethod: iotpb.GatewayAuthMethod_ASSOCIATION_ONLY},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if gw.GetNumId() == 0 || gw.GetName() != regName+"/devices/"+strconv.FormatUint(gw.GetNumId(), 10) {
		t.Fatalf("gateway name %q, numId %d: the name must end in the numId", gw.GetName(), gw.GetNumId())
	}
	if gw.GetConfig().GetVersion() != 1 || len(gw.GetCredentials()) != 1 {
		t.Fatalf("gateway config %v, credentials %d", gw.GetConfig(), len(gw.GetCredentials()))
	}
	dev, err := c.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: regName, Device: &iotpb.Device{
		Id:    "demo-device",
		NumId: 42, // output only: ignored
	}})
	if err != nil {
		t.Fatal(err)
	}
	if dev.GetGatewayConfig().GetGatewayType() != iotpb.GatewayType_NON_GATEWAY {
		t.Errorf("device gateway type = %v, want NON_GATEWAY", dev.GetGatewayConfig().GetGatewayType())
	}

	// Get by id and by numId; a field mask keeps only the named fields.
	byNum, err := c.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()})
	if err != nil || byNum.GetId() != "demo-device" {
		t.Fatalf("get by numId: %v, %v", byNum, err)
	}
	masked, err := c.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: regName + "/devices/demo-gateway", FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"gatewayConfig"}}})
	if err != nil {
		t.Fatal(err)
	}
	if masked.GetGatewayConfig().GetGatewayType() != iotpb.GatewayType_GATEWAY || masked.GetId() != "" || masked.GetConfig() != nil {
		t.Fatalf("masked get = %v", masked)
	}

	// ListDevices with field mask config,gatewayConfig.
	it := c.ListDevices(ctx, &iotpb.ListDevicesRequest{Parent: regName, FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"config", "gatewayConfig"}}})
	var listed []*iotpb.Device
	for {
		d, err := it.Next()
		if err != nil {
			if err != iterator.Done {
				t.Fatal(err)
			}
			break
		}
		listed = append(listed, d)
	}
	if got := ids(listed); !slices.Equal(got, []string{"demo-device", "demo-gateway"}) {
		t.Fatalf("listed %v", got)
	}
	for _, d := range listed {
		if d.GetNumId() == 0 || d.GetConfig() == nil || d.GetGatewayConfig() == nil || d.GetName() != "" || d.GetCredentials() != nil {
			t.Fatalf("listed device with mask config,gatewayConfig = %v", d)
		}
	}

	// Bind, then list by association, with ids and with numIds.
	if _, err := c.BindDeviceToGateway(ctx, &iotpb.BindDeviceToGatewayRequest{Parent: regName, GatewayId: "demo-gateway", DeviceId: "demo-device"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.BindDeviceToGateway(ctx, &iotpb.BindDeviceToGatewayRequest{Parent: regName, GatewayId: "demo-gateway", DeviceId: "demo-device"}); err != nil {
		t.Fatalf("binding twice: %v", err)
	}
	gwNum, devNum := strconv.FormatUint(gw.GetNumId(), 10), strconv.FormatUint(dev.GetNumId(), 10)
	for _, g := range []string{"demo-gateway", gwNum} {
		got := env.list(t, &iotpb.ListDevicesRequest{Parent: regName, GatewayListOptions: &iotpb.GatewayListOptions{Filter: &iotpb.GatewayListOptions_AssociationsGatewayId{AssociationsGatewayId: g}}})
		if !slices.Equal(ids(got), []string{"demo-device"}) {
			t.Errorf("devices of gateway %s: %v", g, ids(got))
		}
	}
	for _, d := range []string{"demo-device", devNum} {
		got := env.list(t, &iotpb.ListDevicesRequest{Parent: regName, GatewayListOptions: &iotpb.GatewayListOptions{Filter: &iotpb.GatewayListOptions_AssociationsDeviceId{AssociationsDeviceId: d}}})
		if !slices.Equal(ids(got), []string{"demo-gateway"}) {
			t.Errorf("gateways of device %s: %v", d, ids(got))
		}
	}
	got := env.list(t, &iotpb.ListDevicesRequest{Parent: regName, GatewayListOptions: &iotpb.GatewayListOptions{Filter: &iotpb.GatewayListOptions_GatewayType{GatewayType: iotpb.GatewayType_GATEWAY}}})
	if !slices.Equal(ids(got), []string{"demo-gateway"}) {
		t.Errorf("gateways: %v", ids(got))
	}

	// Config versions and states.
	cfg, err := c.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{Name: regName + "/devices/demo-device", VersionToUpdate: 1, BinaryData: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GetVersion() != 2 || string(cfg.GetBinaryData()) != "hello" || cfg.GetCloudUpdateTime() == nil {
		t.Fatalf("modified config = %v", cfg)
	}
	versions, err := c.ListDeviceConfigVersions(ctx, &iotpb.ListDeviceConfigVersionsRequest{Name: dev.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(versions.GetDeviceConfigs()); n != 2 || versions.GetDeviceConfigs()[0].GetVersion() != 2 {
		t.Fatalf("config versions = %v", versions.GetDeviceConfigs())
	}
	if err := env.store.AddState(ctx, store.DeviceRef{Registry: store.RegistryKey{Project: "p1", Location: "us-central1", ID: "demo-registry"}, ID: "demo-device"},
		store.DeviceState{UpdateTime: time.Now(), Data: []byte("on")}); err != nil {
		t.Fatal(err)
	}
	states, err := c.ListDeviceStates(ctx, &iotpb.ListDeviceStatesRequest{Name: dev.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if len(states.GetDeviceStates()) != 1 || string(states.GetDeviceStates()[0].GetBinaryData()) != "on" {
		t.Fatalf("states = %v", states.GetDeviceStates())
	}
	full, err := c.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: dev.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if string(full.GetState().GetBinaryData()) != "on" || full.GetConfig().GetVersion() != 2 || full.GetLastStateTime() == nil {
		t.Fatalf("device after state: %v", full)
	}

	// Update a mutable field, with a camelCase path as REST clients send.
	upd, err := c.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{
		Device:     &iotpb.Device{Name: regName + "/devices/demo-gateway", GatewayConfig: &iotpb.GatewayConfig{GatewayAuthMethod: iotpb.GatewayAuthMethod_ASSOCIATION_AND_DEVICE_AUTH_TOKEN}, Blocked: true},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"gatewayConfig.gatewayAuthMethod"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if upd.GetGatewayConfig().GetGatewayAuthMethod() != iotpb.GatewayAuthMethod_ASSOCIATION_AND_DEVICE_AUTH_TOKEN || upd.GetBlocked() || len(upd.GetCredentials()) != 1 {
		t.Fatalf("updated gateway = %v", upd)
	}

	// Unbind and clean up.
	if _, err := c.UnbindDeviceFromGateway(ctx, &iotpb.UnbindDeviceFromGatewayRequest{Parent: regName, GatewayId: gwNum, DeviceId: "demo-device"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{dev.GetName(), regName + "/devices/demo-gateway"} {
		if err := c.DeleteDevice(ctx, &iotpb.DeleteDeviceRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteDeviceRegistry(ctx, &iotpb.DeleteDeviceRegistryRequest{Name: regName}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: regName})
	mustCode(t, err, codes.NotFound)
}

// TestErrors checks the code of every error case of compat-spec 1-5.
func TestErrors(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	raw := env.raw
	ca := newTestCA(t)
	regName := testLocation + "/registries/reg"
	caRegName := testLocation + "/registries/careg"
	topic := []*iotpb.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/telemetry"}}

	mustOK := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustOK(raw.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{Parent: testLocation, DeviceRegistry: &iotpb.DeviceRegistry{Id: "reg", EventNotificationConfigs: topic}}))
	caReg, err := raw.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{Parent: testLocation, DeviceRegistry: &iotpb.DeviceRegistry{Id: "careg",
		Credentials: []*iotpb.RegistryCredential{{Credential: &iotpb.RegistryCredential_PublicKeyCertificate{PublicKeyCertificate: &iotpb.PublicKeyCertificate{Format: iotpb.PublicKeyCertificateFormat_X509_CERTIFICATE_PEM, Certificate: ca.pem}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if d := caReg.GetCredentials()[0].GetPublicKeyCertificate().GetX509Details(); d.GetSubject() == "" || d.GetExpiryTime() == nil {
		t.Errorf("registry credential x509Details = %v", d)
	}
	mustOK(raw.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: caRegName, Device: &iotpb.Device{Id: "signed", Credentials: []*iotpb.DeviceCredential{cred(iotpb.PublicKeyFormat_ES256_X509_PEM, deviceCert(t, ca))}}}))
	gateway := &iotpb.GatewayConfig{GatewayType: iotpb.GatewayType_GATEWAY, GatewayAuthMethod: iotpb.GatewayAuthMethod_ASSOCIATION_ONLY}
	for _, id := range []string{"gw1", "gw2"} {
		mustOK(raw.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: regName, Device: &iotpb.Device{Id: id, GatewayConfig: gateway}}))
	}
	for _, id := range []string{"dev1", "dev2", "cfgdev"} {
		mustOK(raw.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: regName, Device: &iotpb.Device{Id: id}}))
	}
	mustOK(raw.BindDeviceToGateway(ctx, &iotpb.BindDeviceToGatewayRequest{Parent: regName, GatewayId: "gw1", DeviceId: "dev1"}))

	newDevice := func(d *iotpb.Device) error {
		_, err := raw.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: regName, Device: d})
		return err
	}
	newRegistry := func(r *iotpb.DeviceRegistry) error {
		_, err := raw.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{Parent: testLocation, DeviceRegistry: r})
		return err
	}
	es := es256Key(t)
	fourCreds := []*iotpb.DeviceCredential{cred(2, es), cred(2, es), cred(2, es), cred(2, es)}
	manyPairs := map[string]string{}
	for i := range 501 {
		manyPairs[fmt.Sprintf("k%d", i)] = "v"
	}
	bigTotal := map[string]string{}
	for i := range 9 {
		bigTotal[fmt.Sprintf("k%d", i)] = strings.Repeat("x", 30*1024)
	}
	tooManyConfigs := slices.Repeat([]*iotpb.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/telemetry", SubfolderMatches: "a"}}, 11)
	bind := func(gw, dev string) error {
		_, err := raw.BindDeviceToGateway(ctx, &iotpb.BindDeviceToGatewayRequest{Parent: regName, GatewayId: gw, DeviceId: dev})
		return err
	}
	updateDevice := func(paths ...string) error {
		_, err := raw.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{Device: &iotpb.Device{Name: regName + "/devices/dev2"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
		return err
	}
	modify := func(v int64, data []byte) error {
		_, err := raw.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{Name: regName + "/devices/cfgdev", VersionToUpdate: v, BinaryData: data})
		return err
	}
	list := func(req *iotpb.ListDevicesRequest) error {
		req.Parent = regName
		_, err := raw.ListDevices(ctx, req)
		return err
	}
	// A real token for a query with no filter, to reuse with another one.
	page, err := raw.ListDevices(ctx, &iotpb.ListDevicesRequest{Parent: regName, PageSize: 1})
	if err != nil || page.GetNextPageToken() == "" {
		t.Fatalf("first page: %v %v", page, err)
	}
	token := page.GetNextPageToken()
	tampered := []byte(token)
	tampered[5] ^= 1
	if tampered[5] == '-' || tampered[5] == '_' || tampered[5] > 'z' {
		tampered[5] = 'A'
	}

	cases := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"registry id goog", func() error { return newRegistry(&iotpb.DeviceRegistry{Id: "google-reg"}) }, codes.InvalidArgument, "'device_registry.id'"},
		{"registry id short", func() error { return newRegistry(&iotpb.DeviceRegistry{Id: "ab"}) }, codes.InvalidArgument, "'device_registry.id'"},
		{"registry id long", func() error { return newRegistry(&iotpb.DeviceRegistry{Id: "r" + strings.Repeat("x", 255)}) }, codes.InvalidArgument, "'device_registry.id'"},
		{"registry bad parent", func() error {
			_, err := raw.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{Parent: "projects/p1", DeviceRegistry: &iotpb.DeviceRegistry{Id: "abc"}})
			return err
		}, codes.InvalidArgument, "'parent'"},
		{"registry duplicate", func() error { return newRegistry(&iotpb.DeviceRegistry{Id: "reg"}) }, codes.AlreadyExists, ""},
		{"registry 11 event configs", func() error {
			return newRegistry(&iotpb.DeviceRegistry{Id: "r11", EventNotificationConfigs: tooManyConfigs})
		}, codes.InvalidArgument, "at most 10"},
		{"registry catch-all not last", func() error {
			return newRegistry(&iotpb.DeviceRegistry{Id: "rxx", EventNotificationConfigs: []*iotpb.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/telemetry"}, {PubsubTopicName: "projects/p1/topics/telemetry", SubfolderMatches: "a"}}})
		}, codes.InvalidArgument, "last"},
		{"registry bad subfolder", func() error {
			return newRegistry(&iotpb.DeviceRegistry{Id: "rxx", EventNotificationConfigs: []*iotpb.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/telemetry", SubfolderMatches: "a b"}}})
		}, codes.InvalidArgument, "subfolder_matches"},
		{"registry bad topic", func() error {
			return newRegistry(&iotpb.DeviceRegistry{Id: "rxx", EventNotificationConfigs: []*iotpb.EventNotificationConfig{{PubsubTopicName: "topics/t"}}})
		}, codes.InvalidArgument, "projects/{project}/topics/{topic}"},
		{"registry bad state topic", func() error {
			return newRegistry(&iotpb.DeviceRegistry{Id: "rxx", StateNotificationConfig: &iotpb.StateNotificationConfig{PubsubTopicName: "projects/p1/subscriptions/s"}})
		}, codes.InvalidArgument, "state_notification_config"},
		{"registry bad enum", func() error {
			return newRegistry(&iotpb.DeviceRegistry{Id: "rxx", MqttConfig: &iotpb.MqttConfig{MqttEnabledState: 7}})
		}, codes.InvalidArgument, "mqtt_enabled_state"},
		{"registry bad CA", func() error {
			return newRegistry(&iotpb.DeviceRegistry{Id: "rxx", Credentials: []*iotpb.RegistryCredential{{Credential: &iotpb.RegistryCredential_PublicKeyCertificate{PublicKeyCertificate: &iotpb.PublicKeyCertificate{Format: 1, Certificate: "junk"}}}}})
		}, codes.InvalidArgument, "credentials[0]"},
		{"registry get missing", func() error {
			_, err := raw.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: testLocation + "/registries/nope"})
			return err
		}, codes.NotFound, ""},
		{"registry get bad name", func() error {
			_, err := raw.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: testLocation + "/regs/reg"})
			return err
		}, codes.InvalidArgument, "'name'"},
		{"registry update no mask", func() error {
			_, err := raw.UpdateDeviceRegistry(ctx, &iotpb.UpdateDeviceRegistryRequest{DeviceRegistry: &iotpb.DeviceRegistry{Name: regName}})
			return err
		}, codes.InvalidArgument, "'update_mask' is required"},
		{"registry update unknown path", func() error {
			_, err := raw.UpdateDeviceRegistry(ctx, &iotpb.UpdateDeviceRegistryRequest{DeviceRegistry: &iotpb.DeviceRegistry{Name: regName}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"logLevel", "id"}}})
			return err
		}, codes.InvalidArgument, `"id"`},
		{"registry delete non-empty", func() error {
			_, err := raw.DeleteDeviceRegistry(ctx, &iotpb.DeleteDeviceRegistryRequest{Name: regName})
			return err
		}, codes.FailedPrecondition, ""},
		{"registry list page size", func() error {
			_, err := raw.ListDeviceRegistries(ctx, &iotpb.ListDeviceRegistriesRequest{Parent: testLocation, PageSize: 10001})
			return err
		}, codes.InvalidArgument, "page_size"},

		{"device id goog", func() error { return newDevice(&iotpb.Device{Id: "goog-dev"}) }, codes.InvalidArgument, "The format of 'device.id' is invalid"},
		{"device id short", func() error { return newDevice(&iotpb.Device{Id: "d1"}) }, codes.InvalidArgument, "The format of 'device.id' is invalid"},
		{"device id long", func() error { return newDevice(&iotpb.Device{Id: "d" + strings.Repeat("x", 255)}) }, codes.InvalidArgument, "The format of 'device.id' is invalid"},
		{"device id digit", func() error { return newDevice(&iotpb.Device{Id: "1dev"}) }, codes.InvalidArgument, "The format of 'device.id' is invalid"},
		{"device id missing", func() error { return newDevice(&iotpb.Device{}) }, codes.InvalidArgument, "'device.id'"},
		{"device name mismatch", func() error { return newDevice(&iotpb.Device{Id: "dev9", Name: regName + "/devices/other"}) }, codes.InvalidArgument, "'device.name'"},
		{"device duplicate", func() error { return newDevice(&iotpb.Device{Id: "dev1"}) }, codes.AlreadyExists, ""},
		{"device missing registry", func() error {
			_, err := raw.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: testLocation + "/registries/nope", Device: &iotpb.Device{Id: "dev9"}})
			return err
		}, codes.NotFound, ""},
		{"device list missing registry", func() error {
			_, err := raw.ListDevices(ctx, &iotpb.ListDevicesRequest{Parent: testLocation + "/registries/nope"})
			return err
		}, codes.NotFound, "nope"},
		{"device 4 credentials", func() error { return newDevice(&iotpb.Device{Id: "dev9", Credentials: fourCreds}) }, codes.InvalidArgument, "at most 3"},
		{"device malformed key", func() error {
			return newDevice(&iotpb.Device{Id: "dev9", Credentials: []*iotpb.DeviceCredential{cred(iotpb.PublicKeyFormat_RSA_PEM, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")}})
		}, codes.InvalidArgument, "credentials[0]"},
		{"device format 0", func() error {
			return newDevice(&iotpb.Device{Id: "dev9", Credentials: []*iotpb.DeviceCredential{cred(0, es)}})
		}, codes.InvalidArgument, "credentials[0]"},
		{"device not CA-signed", func() error {
			_, err := raw.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: caRegName, Device: &iotpb.Device{Id: "unsigned", Credentials: []*iotpb.DeviceCredential{cred(iotpb.PublicKeyFormat_ES256_X509_PEM, deviceCert(t, nil))}}})
			return err
		}, codes.InvalidArgument, "credentials[0]"},
		{"device bare key with CA", func() error {
			_, err := raw.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: caRegName, Device: &iotpb.Device{Id: "bare", Credentials: []*iotpb.DeviceCredential{cred(iotpb.PublicKeyFormat_ES256_PEM, es)}}})
			return err
		}, codes.InvalidArgument, "credentials[0]"},
		{"metadata 501 pairs", func() error { return newDevice(&iotpb.Device{Id: "dev9", Metadata: manyPairs}) }, codes.InvalidArgument, "at most 500"},
		{"metadata bad key", func() error { return newDevice(&iotpb.Device{Id: "dev9", Metadata: map[string]string{"1key": "v"}}) }, codes.InvalidArgument, "metadata key"},
		{"metadata long key", func() error {
			return newDevice(&iotpb.Device{Id: "dev9", Metadata: map[string]string{"k" + strings.Repeat("x", 127): "v"}})
		}, codes.InvalidArgument, "metadata key"},
		{"metadata big value", func() error {
			return newDevice(&iotpb.Device{Id: "dev9", Metadata: map[string]string{"k": strings.Repeat("x", 32*1024+1)}})
		}, codes.InvalidArgument, "metadata key \"k\""},
		{"metadata total", func() error { return newDevice(&iotpb.Device{Id: "dev9", Metadata: bigTotal}) }, codes.InvalidArgument, "totals"},
		{"device config version", func() error { return newDevice(&iotpb.Device{Id: "dev9", Config: &iotpb.DeviceConfig{Version: 1}}) }, codes.InvalidArgument, "'device.config.version'"},
		{"device config too big", func() error {
			return newDevice(&iotpb.Device{Id: "dev9", Config: &iotpb.DeviceConfig{BinaryData: make([]byte, 64*1024+1)}})
		}, codes.InvalidArgument, "'device.config.binary_data'"},
		{"device gateway type", func() error {
			return newDevice(&iotpb.Device{Id: "dev9", GatewayConfig: &iotpb.GatewayConfig{GatewayType: 9}})
		}, codes.InvalidArgument, "gateway_type"},
		{"device get bad shape", func() error {
			_, err := raw.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: regName + "/things/dev1"})
			return err
		}, codes.InvalidArgument, "'name'"},
		{"device get bad id", func() error {
			_, err := raw.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: regName + "/devices/goog"})
			return err
		}, codes.InvalidArgument, "'name'"},
		{"device get missing numId", func() error {
			_, err := raw.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: regName + "/devices/987654321"})
			return err
		}, codes.NotFound, ""},
		{"device get unknown mask", func() error {
			_, err := raw.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: regName + "/devices/dev1", FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"colour"}}})
			return err
		}, codes.InvalidArgument, "colour"},
		{"device update no mask", func() error { return updateDevice() }, codes.InvalidArgument,
			"'update_mask' is required: name the fields to update (credentials, blocked, metadata, log_level, gateway_config.gateway_auth_method)"},
		{"device update immutable", func() error { return updateDevice("gatewayConfig.gatewayType") }, codes.InvalidArgument, "gateway_config.gateway_type"},
		{"device update id", func() error { return updateDevice("blocked", "id") }, codes.InvalidArgument, `"id"`},
		{"device update no name", func() error {
			_, err := raw.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{Device: &iotpb.Device{Id: "dev2"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"blocked"}}})
			return err
		}, codes.InvalidArgument, "'device.name'"},
		{"device update missing", func() error {
			_, err := raw.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{Device: &iotpb.Device{Name: regName + "/devices/nope"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"blocked"}}})
			return err
		}, codes.NotFound, ""},
		{"device delete gateway with bindings", func() error {
			_, err := raw.DeleteDevice(ctx, &iotpb.DeleteDeviceRequest{Name: regName + "/devices/gw1"})
			return err
		}, codes.FailedPrecondition, ""},
		{"device delete missing", func() error {
			_, err := raw.DeleteDevice(ctx, &iotpb.DeleteDeviceRequest{Name: regName + "/devices/nope"})
			return err
		}, codes.NotFound, ""},

		{"bind gateway to gateway", func() error { return bind("gw1", "gw2") }, codes.InvalidArgument, ""},
		{"bind to non-gateway", func() error { return bind("dev1", "dev2") }, codes.InvalidArgument, ""},
		{"bind unknown device", func() error { return bind("gw1", "nope") }, codes.NotFound, ""},
		{"bind bad gateway id", func() error { return bind("goog", "dev1") }, codes.InvalidArgument, "'gateway_id'"},
		{"bind bad device id", func() error { return bind("gw1", "") }, codes.InvalidArgument, "'device_id'"},
		{"unbind not bound", func() error {
			_, err := raw.UnbindDeviceFromGateway(ctx, &iotpb.UnbindDeviceFromGatewayRequest{Parent: regName, GatewayId: "gw2", DeviceId: "dev2"})
			return err
		}, codes.NotFound, ""},

		{"config 64 KB + 1", func() error { return modify(0, make([]byte, 64*1024+1)) }, codes.InvalidArgument, "'binary_data'"},
		{"config negative version", func() error { return modify(-1, nil) }, codes.InvalidArgument, "'version_to_update'"},
		{"config version mismatch", func() error { return modify(7, nil) }, codes.FailedPrecondition, ""},
		{"config missing device", func() error {
			_, err := raw.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{Name: regName + "/devices/nope"})
			return err
		}, codes.NotFound, ""},
		{"config versions negative", func() error {
			_, err := raw.ListDeviceConfigVersions(ctx, &iotpb.ListDeviceConfigVersionsRequest{Name: regName + "/devices/dev1", NumVersions: -1})
			return err
		}, codes.InvalidArgument, "'num_versions'"},
		{"states negative", func() error {
			_, err := raw.ListDeviceStates(ctx, &iotpb.ListDeviceStatesRequest{Name: regName + "/devices/dev1", NumStates: -1})
			return err
		}, codes.InvalidArgument, "'num_states'"},
		{"states missing device", func() error {
			_, err := raw.ListDeviceStates(ctx, &iotpb.ListDeviceStatesRequest{Name: regName + "/devices/nope"})
			return err
		}, codes.NotFound, ""},

		{"list page size too big", func() error { return list(&iotpb.ListDevicesRequest{PageSize: 10001}) }, codes.InvalidArgument, "'page_size'"},
		{"list page token tampered", func() error { return list(&iotpb.ListDevicesRequest{PageToken: string(tampered)}) }, codes.InvalidArgument, "'page_token' is invalid"},
		{"list page token garbage", func() error { return list(&iotpb.ListDevicesRequest{PageToken: "not a token"}) }, codes.InvalidArgument, "'page_token' is invalid"},
		{"list page token other filter", func() error { return list(&iotpb.ListDevicesRequest{PageToken: token, DeviceIds: []string{"dev1"}}) }, codes.InvalidArgument, "different query"},
		{"list too many ids", func() error { return list(&iotpb.ListDevicesRequest{DeviceNumIds: make([]uint64, 10001)}) }, codes.InvalidArgument, "'device_num_ids'"},
		{"list unknown mask", func() error {
			return list(&iotpb.ListDevicesRequest{FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"colour"}}})
		}, codes.InvalidArgument, "colour"},
		{"list bad association id", func() error {
			return list(&iotpb.ListDevicesRequest{GatewayListOptions: &iotpb.GatewayListOptions{Filter: &iotpb.GatewayListOptions_AssociationsGatewayId{AssociationsGatewayId: "x"}}})
		}, codes.InvalidArgument, "associations_gateway_id"},

		{"command not connected", func() error {
			_, err := raw.SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{Name: regName + "/devices/dev1", BinaryData: []byte("x"), Subfolder: "a/b"})
			return err
		}, codes.FailedPrecondition, "Device 'dev1' is not connected"},
		{"command missing device", func() error {
			_, err := raw.SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{Name: regName + "/devices/nope"})
			return err
		}, codes.NotFound, ""},
		{"command bad subfolder", func() error {
			_, err := raw.SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{Name: regName + "/devices/dev1", Subfolder: "a/#"})
			return err
		}, codes.InvalidArgument, "'subfolder'"},
		{"command dot-dot subfolder", func() error {
			_, err := raw.SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{Name: regName + "/devices/dev1", Subfolder: "../x"})
			return err
		}, codes.InvalidArgument, `'subfolder' is invalid: a subfolder level may not be "." or ".."`},
		{"command subfolder too long", func() error {
			_, err := raw.SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{Name: regName + "/devices/dev1", Subfolder: strings.Repeat("a", 257)})
			return err
		}, codes.InvalidArgument, "'subfolder'"},
		{"command too big", func() error {
			_, err := raw.SendCommandToDevice(ctx, &iotpb.SendCommandToDeviceRequest{Name: regName + "/devices/dev1", BinaryData: make([]byte, 256*1024+1)})
			return err
		}, codes.InvalidArgument, "'binary_data'"},

		{"set IAM policy", func() error {
			_, err := raw.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: regName})
			return err
		}, codes.Unimplemented, "tokens file"},
		{"get IAM policy", func() error {
			_, err := raw.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: regName})
			return err
		}, codes.Unimplemented, "viewer"},
		{"test IAM permissions on a bad resource", func() error {
			_, err := raw.TestIamPermissions(ctx, &iampb.TestIamPermissionsRequest{Resource: regName + "/devices/dev1"})
			return err
		}, codes.InvalidArgument, "'resource' must have the form"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			mustCode(t, err, tc.code)
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q does not contain %q", msg, tc.msg)
			}
		})
	}

	// Nothing was half-written by the failed calls.
	got := env.list(t, &iotpb.ListDevicesRequest{Parent: regName})
	if !slices.Equal(ids(got), []string{"cfgdev", "dev1", "dev2", "gw1", "gw2"}) {
		t.Errorf("devices after the error cases: %v", ids(got))
	}

	// The config rate limit: the second update within a second is refused,
	// the next second it passes.
	if err := modify(0, []byte("a")); err != nil {
		t.Fatal(err)
	}
	mustCode(t, modify(0, []byte("b")), codes.ResourceExhausted)
	env.offset.Add(int64(1100 * time.Millisecond))
	if err := modify(2, []byte("c")); err != nil {
		t.Fatalf("update after a second: %v", err)
	}
}

// TestUpdates covers the update paths that succeed.
func TestUpdates(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	raw := env.raw
	regName := testLocation + "/registries/upd"
	if _, err := raw.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{Parent: testLocation, DeviceRegistry: &iotpb.DeviceRegistry{Id: "upd"}}); err != nil {
		t.Fatal(err)
	}
	reg, err := raw.UpdateDeviceRegistry(ctx, &iotpb.UpdateDeviceRegistryRequest{
		DeviceRegistry: &iotpb.DeviceRegistry{Name: regName, LogLevel: iotpb.LogLevel_DEBUG, HttpConfig: &iotpb.HttpConfig{HttpEnabledState: iotpb.HttpState_HTTP_DISABLED},
			EventNotificationConfigs: []*iotpb.EventNotificationConfig{{PubsubTopicName: "projects/p1/topics/events-a", SubfolderMatches: "x/y"}, {PubsubTopicName: "projects/p1/topics/events-b"}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"logLevel", "http_config", "eventNotificationConfigs"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if reg.GetLogLevel() != iotpb.LogLevel_DEBUG || reg.GetHttpConfig().GetHttpEnabledState() != iotpb.HttpState_HTTP_DISABLED || len(reg.GetEventNotificationConfigs()) != 2 {
		t.Fatalf("updated registry = %v", reg)
	}
	for _, id := range []string{"upd2", "upd3"} {
		if _, err := raw.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{Parent: testLocation, DeviceRegistry: &iotpb.DeviceRegistry{Id: id}}); err != nil {
			t.Fatal(err)
		}
	}
	var regIDs []string
	lreq := &iotpb.ListDeviceRegistriesRequest{Parent: testLocation, PageSize: 2}
	for pages := 1; ; pages++ {
		resp, err := raw.ListDeviceRegistries(ctx, lreq)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetDeviceRegistries() {
			regIDs = append(regIDs, r.GetId())
		}
		if resp.GetNextPageToken() == "" {
			if pages != 2 {
				t.Errorf("%d registry pages, want 2", pages)
			}
			break
		}
		lreq.PageToken = resp.GetNextPageToken()
	}
	if !slices.Equal(regIDs, []string{"upd", "upd2", "upd3"}) {
		t.Errorf("listed registries %v", regIDs)
	}
	exp := timestamppb.New(time.Now().Add(48 * time.Hour).Truncate(time.Second))
	es := es256Key(t)
	if _, err := raw.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: regName, Device: &iotpb.Device{Id: "dev1", Config: &iotpb.DeviceConfig{BinaryData: []byte("first")}}}); err != nil {
		t.Fatal(err)
	}
	c := cred(iotpb.PublicKeyFormat_ES256_PEM, es)
	c.ExpirationTime = exp
	d, err := raw.UpdateDevice(ctx, &iotpb.UpdateDeviceRequest{
		Device:     &iotpb.Device{Name: regName + "/devices/dev1", Credentials: []*iotpb.DeviceCredential{c}, Blocked: true, Metadata: map[string]string{"room": "42"}, LogLevel: iotpb.LogLevel_INFO},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"credentials", "blocked", "metadata", "log_level"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !d.GetBlocked() || d.GetMetadata()["room"] != "42" || d.GetLogLevel() != iotpb.LogLevel_INFO || len(d.GetCredentials()) != 1 ||
		!d.GetCredentials()[0].GetExpirationTime().AsTime().Equal(exp.AsTime()) || string(d.GetConfig().GetBinaryData()) != "first" {
		t.Fatalf("updated device = %v", d)
	}
}

// TestListPagingUnderInserts lists 2,500 devices in pages of 1,000 while
// other devices are being created: every device that existed before the
// listing started is seen exactly once.
func TestListPagingUnderInserts(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	key := store.RegistryKey{Project: "p1", Location: "us-central1", ID: "paging"}
	if err := env.store.CreateRegistry(ctx, &store.Registry{Key: key}); err != nil {
		t.Fatal(err)
	}
	before := map[string]bool{}
	for i := range 2500 {
		id := fmt.Sprintf("dev-%04d", i)
		if _, err := env.store.CreateDevice(ctx, &store.Device{Registry: key, ID: id}, time.Now()); err != nil {
			t.Fatal(err)
		}
		before[id] = true
	}
	stop := make(chan struct{})
	var inserted atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := env.store.CreateDevice(ctx, &store.Device{Registry: key, ID: fmt.Sprintf("late-%04d", i)}, time.Now()); err != nil {
				t.Error(err)
				return
			}
			inserted.Add(1)
		}
	})
	seen := map[string]int{}
	req := &iotpb.ListDevicesRequest{Parent: registryName(key)}
	pages := 0
	for {
		resp, err := env.raw.ListDevices(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.GetDevices()) > 1000 {
			t.Fatalf("page of %d devices", len(resp.GetDevices()))
		}
		for _, d := range resp.GetDevices() {
			seen[d.GetId()]++
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	close(stop)
	wg.Wait()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", id, n)
		}
	}
	for id := range before {
		if seen[id] != 1 {
			t.Errorf("%s seen %d times, want 1", id, seen[id])
		}
	}
	if pages < 3 {
		t.Errorf("%d pages for %d devices", pages, len(seen))
	}
	t.Logf("%d pages, %d devices seen, %d inserted while listing", pages, len(seen), inserted.Load())
}
