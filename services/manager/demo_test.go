package manager_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// TestGatewayDemoAdmin runs the admin half of Cloud IoT Core's gateway demo
// (hub_demo.py) with Google's Go client, in gRPC and in REST mode, on every
// back end.
func TestGatewayDemoAdmin(t *testing.T) {
	forEachBackend(t, func(t *testing.T, env *apiEnv) {
		for _, mode := range []struct {
			name   string
			client *iot.DeviceManagerClient
		}{{"grpc", env.grpc}, {"rest", env.rest}} {
			t.Run(mode.name, func(t *testing.T) { runGatewayDemo(t, mode.client, "demo-"+mode.name) })
		}
	})
}

func runGatewayDemo(t *testing.T, c *iot.DeviceManagerClient, registryID string) {
	ctx := context.Background()
	parent := "projects/p1/locations/us-central1"

	// Creating registry with a Pub/Sub topic.
	reg, err := c.CreateDeviceRegistry(ctx, &iotpb.CreateDeviceRegistryRequest{
		Parent: parent,
		DeviceRegistry: &iotpb.DeviceRegistry{
			Id: registryID,
			EventNotificationConfigs: []*iotpb.EventNotificationConfig{
				{PubsubTopicName: "projects/p1/topics/gateway-demo"},
			},
		},
	})
	if err != nil {
		t.Fatalf("CreateDeviceRegistry: %v", err)
	}
	if want := parent + "/registries/" + registryID; reg.GetName() != want {
		t.Fatalf("registry name = %q, want %q", reg.GetName(), want)
	}

	// A gateway with an RS256 X.509 credential.
	gw, err := c.CreateDevice(ctx, &iotpb.CreateDeviceRequest{
		Parent: reg.GetName(),
		Device: &iotpb.Device{
			Id: "test-gateway",
			Credentials: []*iotpb.DeviceCredential{{
				Credential: &iotpb.DeviceCredential_PublicKey{PublicKey: &iotpb.PublicKeyCredential{
					Format: iotpb.PublicKeyFormat_RSA_X509_PEM, Key: selfSignedRSA(t),
				}},
			}},
			GatewayConfig: &iotpb.GatewayConfig{
				GatewayType:       iotpb.GatewayType_GATEWAY,
				GatewayAuthMethod: iotpb.GatewayAuthMethod_ASSOCIATION_ONLY,
			},
		},
	})
	if err != nil {
		t.Fatalf("CreateDevice(gateway): %v", err)
	}
	if gw.GetNumId() == 0 || gw.GetConfig().GetVersion() != 1 {
		t.Fatalf("gateway: numId %d, config version %d; want a numId and version 1", gw.GetNumId(), gw.GetConfig().GetVersion())
	}

	// A device without credentials.
	dev, err := c.CreateDevice(ctx, &iotpb.CreateDeviceRequest{
		Parent: reg.GetName(),
		Device: &iotpb.Device{
			Id: "test-device-noauthbind",
			GatewayConfig: &iotpb.GatewayConfig{
				GatewayType:       iotpb.GatewayType_NON_GATEWAY,
				GatewayAuthMethod: iotpb.GatewayAuthMethod_ASSOCIATION_ONLY,
			},
		},
	})
	if err != nil {
		t.Fatalf("CreateDevice(device): %v", err)
	}

	// List with a field mask, as the sample does.
	listed := listDevices(t, c, &iotpb.ListDevicesRequest{
		Parent:    reg.GetName(),
		FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"config", "gateway_config"}},
	})
	if len(listed) != 2 {
		t.Fatalf("ListDevices: %d devices, want 2", len(listed))
	}
	for _, d := range listed {
		if d.GetId() == "" || d.GetNumId() == 0 || d.GetConfig().GetVersion() != 1 || d.GetGatewayConfig() == nil {
			t.Fatalf("listed device %v: want id, numId, config and gatewayConfig", d)
		}
		if len(d.GetCredentials()) != 0 {
			t.Fatalf("listed device %s has credentials outside the field mask", d.GetId())
		}
	}

	// Bind, then list both ways, by id and by numId.
	if _, err := c.BindDeviceToGateway(ctx, &iotpb.BindDeviceToGatewayRequest{
		Parent: reg.GetName(), GatewayId: "test-gateway", DeviceId: "test-device-noauthbind",
	}); err != nil {
		t.Fatalf("BindDeviceToGateway: %v", err)
	}
	for _, gwRef := range []string{"test-gateway", formatUint(gw.GetNumId())} {
		got := listDevices(t, c, &iotpb.ListDevicesRequest{
			Parent: reg.GetName(),
			GatewayListOptions: &iotpb.GatewayListOptions{Filter: &iotpb.GatewayListOptions_AssociationsGatewayId{
				AssociationsGatewayId: gwRef,
			}},
		})
		if ids := deviceIDs(got); !slices.Equal(ids, []string{"test-device-noauthbind"}) {
			t.Fatalf("devices bound to %s = %v", gwRef, ids)
		}
	}
	for _, devRef := range []string{"test-device-noauthbind", formatUint(dev.GetNumId())} {
		got := listDevices(t, c, &iotpb.ListDevicesRequest{
			Parent: reg.GetName(),
			GatewayListOptions: &iotpb.GatewayListOptions{Filter: &iotpb.GatewayListOptions_AssociationsDeviceId{
				AssociationsDeviceId: devRef,
			}},
		})
		if ids := deviceIDs(got); !slices.Equal(ids, []string{"test-gateway"}) {
			t.Fatalf("gateways of %s = %v", devRef, ids)
		}
	}

	// Modify the config; version 2 follows the version 1 made at creation.
	cfg, err := c.ModifyCloudToDeviceConfig(ctx, &iotpb.ModifyCloudToDeviceConfigRequest{
		Name: dev.GetName(), BinaryData: []byte("device-config"),
	})
	if err != nil {
		t.Fatalf("ModifyCloudToDeviceConfig: %v", err)
	}
	if cfg.GetVersion() != 2 || string(cfg.GetBinaryData()) != "device-config" {
		t.Fatalf("config = version %d %q, want version 2 \"device-config\"", cfg.GetVersion(), cfg.GetBinaryData())
	}
	versions, err := c.ListDeviceConfigVersions(ctx, &iotpb.ListDeviceConfigVersionsRequest{Name: dev.GetName()})
	if err != nil {
		t.Fatalf("ListDeviceConfigVersions: %v", err)
	}
	if got := versions.GetDeviceConfigs(); len(got) != 2 || got[0].GetVersion() != 2 || got[1].GetVersion() != 1 {
		t.Fatalf("config versions = %v, want 2 then 1", got)
	}
	states, err := c.ListDeviceStates(ctx, &iotpb.ListDeviceStatesRequest{Name: dev.GetName()})
	if err != nil {
		t.Fatalf("ListDeviceStates: %v", err)
	}
	if len(states.GetDeviceStates()) != 0 {
		t.Fatalf("states of a device that never reported: %v", states.GetDeviceStates())
	}
	got, err := c.GetDevice(ctx, &iotpb.GetDeviceRequest{Name: reg.GetName() + "/devices/test-device-noauthbind"})
	if err != nil {
		t.Fatalf("GetDevice by id: %v", err)
	}
	if got.GetName() != dev.GetName() || got.GetConfig().GetVersion() != 2 {
		t.Fatalf("GetDevice: name %q version %d; want %q version 2", got.GetName(), got.GetConfig().GetVersion(), dev.GetName())
	}

	// The gateway cannot go while the device is bound to it.
	err = c.DeleteDevice(ctx, &iotpb.DeleteDeviceRequest{Name: gw.GetName()})
	wantCode(t, err, codes.FailedPrecondition, "still has bound devices")

	// Unbind and clean up.
	if _, err := c.UnbindDeviceFromGateway(ctx, &iotpb.UnbindDeviceFromGatewayRequest{
		Parent: reg.GetName(), GatewayId: "test-gateway", DeviceId: "test-device-noauthbind",
	}); err != nil {
		t.Fatalf("UnbindDeviceFromGateway: %v", err)
	}
	for _, name := range []string{dev.GetName(), gw.GetName()} {
		if err := c.DeleteDevice(ctx, &iotpb.DeleteDeviceRequest{Name: name}); err != nil {
			t.Fatalf("DeleteDevice(%s): %v", name, err)
		}
	}
	if err := c.DeleteDeviceRegistry(ctx, &iotpb.DeleteDeviceRegistryRequest{Name: reg.GetName()}); err != nil {
		t.Fatalf("DeleteDeviceRegistry: %v", err)
	}
	_, err = c.GetDeviceRegistry(ctx, &iotpb.GetDeviceRegistryRequest{Name: reg.GetName()})
	wantCode(t, err, codes.NotFound, "")
}

func listDevices(t *testing.T, c *iot.DeviceManagerClient, req *iotpb.ListDevicesRequest) []*iotpb.Device {
	t.Helper()
	var out []*iotpb.Device
	it := c.ListDevices(context.Background(), req)
	for {
		d, err := it.Next()
		if err == iterator.Done {
			return out
		}
		if err != nil {
			t.Fatalf("ListDevices: %v", err)
		}
		out = append(out, d)
	}
}

func deviceIDs(ds []*iotpb.Device) []string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.GetId()
	}
	slices.Sort(ids)
	return ids
}

func formatUint(n uint64) string { return strconv.FormatUint(n, 10) }

// selfSignedRSA returns a PEM self-signed certificate with an RSA-2048 key,
// like the rsa_cert.pem of the Cloud IoT samples.
func selfSignedRSA(t testing.TB) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return selfSigned(t, key, &key.PublicKey)
}

// selfSignedES256 returns a PEM self-signed certificate with a P-256 key.
func selfSignedES256(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return selfSigned(t, key, &key.PublicKey)
}

func selfSigned(t testing.TB, priv, pub any) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "unused"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// wantCode checks that err carries code and, when msg is not empty, that its
// message contains msg. Google's gapic REST client derives the code from the
// HTTP status alone (FAILED_PRECONDITION and INVALID_ARGUMENT are both 400),
// so over REST the check is on the HTTP status and the JSON error's status
// field.
func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", code)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q does not say %q", err, msg)
	}
	var ae *apierror.APIError
	if errors.As(err, &ae) && ae.HTTPCode() > 0 {
		var herr *googleapi.Error
		if !errors.As(err, &herr) {
			t.Fatalf("REST error %v is not a googleapi.Error", err)
		}
		var body struct {
			Error struct {
				Code   int    `json:"code"`
				Status string `json:"status"`
			} `json:"error"`
		}
		if jerr := json.Unmarshal([]byte(herr.Body), &body); jerr != nil {
			t.Fatalf("REST error body %q: %v", herr.Body, jerr)
		}
		if want := snakeCode(code); body.Error.Status != want {
			t.Fatalf("REST error status %q (HTTP %d), want %s", body.Error.Status, body.Error.Code, want)
		}
		return
	}
	if got := status.Code(err); got != code {
		t.Fatalf("error %v has code %v, want %v", err, got, code)
	}
}

// snakeCode is a code's name as Google's JSON errors spell it (NOT_FOUND).
func snakeCode(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
