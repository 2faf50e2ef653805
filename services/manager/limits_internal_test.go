package manager

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// worstJSON renders m as a client might at its most verbose: every byte
// of a string escaped (the metadata and keys below are control characters
// already), and "/" written as "\/".
func worstJSON(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte("/"), []byte(`\/`))
}

// The largest legitimate requests fit under the limits they are read with.
func TestLimitsHoldLargestLegitimateRequests(t *testing.T) {
	id := "d" + strings.Repeat("x", maxIDBytes-1)
	regName := "projects/" + strings.Repeat("p", 30) + "/locations/us-central1/registries/" + id
	// Metadata: the most pairs, totalling just under the limit, in bytes
	// that JSON escapes as \u00XX.
	md := make(map[string]string, maxMetadataPairs)
	per := (maxMetadataTotalBytes - 1) / maxMetadataPairs
	for i := range maxMetadataPairs {
		k := fmt.Sprintf("k%05d", i)
		md[k] = strings.Repeat("\x01", per-len(k))
	}
	if err := checkMetadata(md); err != nil {
		t.Fatalf("the test's metadata is not legitimate: %v", err)
	}
	var creds []*iotpb.DeviceCredential
	for range store.MaxDeviceCredentials {
		creds = append(creds, &iotpb.DeviceCredential{Credential: &iotpb.DeviceCredential_PublicKey{PublicKey: &iotpb.PublicKeyCredential{
			Format: iotpb.PublicKeyFormat_RSA_X509_PEM, Key: strings.Repeat("\x01", maxCredentialBytes),
		}}})
	}
	dev := &iotpb.Device{
		Id: id, Metadata: md, Credentials: creds, Blocked: true, LogLevel: iotpb.LogLevel_DEBUG,
		Config:        &iotpb.DeviceConfig{BinaryData: bytes.Repeat([]byte{0xff}, maxConfigBytes)},
		GatewayConfig: &iotpb.GatewayConfig{GatewayType: iotpb.GatewayType_GATEWAY, GatewayAuthMethod: iotpb.GatewayAuthMethod_ASSOCIATION_AND_DEVICE_AUTH_TOKEN},
	}
	var regCreds []*iotpb.RegistryCredential
	for range maxRegistryCredentials {
		regCreds = append(regCreds, &iotpb.RegistryCredential{Credential: &iotpb.RegistryCredential_PublicKeyCertificate{
			PublicKeyCertificate: &iotpb.PublicKeyCertificate{Format: iotpb.PublicKeyCertificateFormat_X509_CERTIFICATE_PEM, Certificate: strings.Repeat("\x01", maxCredentialBytes)},
		}})
	}
	topic := "projects/" + strings.Repeat("p", 30) + "/topics/" + strings.Repeat("\x01", 255)
	var notifs []*iotpb.EventNotificationConfig
	for range maxEventNotificationConfigs {
		notifs = append(notifs, &iotpb.EventNotificationConfig{PubsubTopicName: topic, SubfolderMatches: strings.Repeat("\x01", maxSubfolderBytes)})
	}
	reg := &iotpb.DeviceRegistry{
		Id: id, Name: regName, Credentials: regCreds, EventNotificationConfigs: notifs,
		StateNotificationConfig: &iotpb.StateNotificationConfig{PubsubTopicName: topic},
		MqttConfig:              &iotpb.MqttConfig{MqttEnabledState: iotpb.MqttState_MQTT_ENABLED},
		HttpConfig:              &iotpb.HttpConfig{HttpEnabledState: iotpb.HttpState_HTTP_ENABLED},
		LogLevel:                iotpb.LogLevel_DEBUG,
	}
	ids := make([]string, maxListFilterIDs)
	numIDs := make([]uint64, maxListFilterIDs)
	for i := range ids {
		ids[i], numIDs[i] = id, math.MaxUint64
	}

	limits := restBodyLimits()
	for _, tc := range []struct {
		method string
		body   proto.Message // the JSON body
		req    proto.Message // the whole request, for gRPC
	}{
		{"CreateDevice", dev, &iotpb.CreateDeviceRequest{Parent: regName, Device: dev}},
		{"UpdateDevice", dev, &iotpb.UpdateDeviceRequest{Device: dev}},
		{"CreateDeviceRegistry", reg, &iotpb.CreateDeviceRegistryRequest{Parent: regName, DeviceRegistry: reg}},
		{"ModifyCloudToDeviceConfig", &iotpb.ModifyCloudToDeviceConfigRequest{VersionToUpdate: math.MaxInt64, BinaryData: bytes.Repeat([]byte{0xff}, maxConfigBytes)}, nil},
		{"SendCommandToDevice", &iotpb.SendCommandToDeviceRequest{BinaryData: bytes.Repeat([]byte{0xff}, maxCommandBytes), Subfolder: strings.Repeat("\x01", maxSubfolderBytes)},
			&iotpb.SendCommandToDeviceRequest{Name: regName + "/devices/" + id, BinaryData: bytes.Repeat([]byte{0xff}, maxCommandBytes), Subfolder: strings.Repeat("s", maxSubfolderBytes)}},
		{"BindDeviceToGateway", &iotpb.BindDeviceToGatewayRequest{GatewayId: strings.Repeat("\x01", maxIDBytes), DeviceId: strings.Repeat("\x01", maxIDBytes)}, nil},
		{"ListDevices", nil, &iotpb.ListDevicesRequest{Parent: regName, DeviceIds: ids, DeviceNumIds: numIDs, PageToken: strings.Repeat("t", 512)}},
	} {
		if tc.body != nil {
			limit := limits[deviceManagerPrefix+tc.method]
			if n := len(worstJSON(t, tc.body)); int64(n) > limit {
				t.Errorf("%s: the largest legitimate JSON body has %d bytes, over its limit %d", tc.method, n, limit)
			}
		}
		if tc.req != nil {
			if n := proto.Size(tc.req); n > maxGRPCRequestBytes {
				t.Errorf("%s: the largest legitimate request has %d bytes, over the gRPC limit %d", tc.method, n, maxGRPCRequestBytes)
			}
		}
	}
}

func TestBodyLimitsCoverDeviceManager(t *testing.T) {
	limits := restBodyLimits()
	methods := iotpb.File_google_cloud_iot_v1_device_manager_proto.Services().ByName("DeviceManager").Methods()
	if methods.Len() != len(limits) {
		t.Errorf("DeviceManager has %d methods, the body limits table %d", methods.Len(), len(limits))
	}
	for i := range methods.Len() {
		if _, ok := limits[deviceManagerPrefix+string(methods.Get(i).Name())]; !ok {
			t.Errorf("%s has no body limit", methods.Get(i).Name())
		}
	}
}

// The route table finds the method of a request as the transcoder routes
// it: REST paths by the google.api.http rules, Connect and gRPC-Web paths
// by name.
func TestRouteTable(t *testing.T) {
	rt, err := deviceManagerRoutes()
	if err != nil {
		t.Fatal(err)
	}
	reg := "/v1/projects/p/locations/l/registries/r"
	for _, tc := range []struct {
		method, path, want string
	}{
		{"POST", "/v1/projects/p/locations/l/registries", "CreateDeviceRegistry"},
		{"GET", "/v1/projects/p/locations/l/registries", "ListDeviceRegistries"},
		{"GET", reg, "GetDeviceRegistry"},
		{"HEAD", reg, "GetDeviceRegistry"},
		{"PATCH", reg, "UpdateDeviceRegistry"},
		{"DELETE", reg, "DeleteDeviceRegistry"},
		{"POST", reg + ":bindDeviceToGateway", "BindDeviceToGateway"},
		{"POST", reg + ":unbindDeviceFromGateway", "UnbindDeviceFromGateway"},
		{"POST", reg + ":getIamPolicy", "GetIamPolicy"},
		{"POST", reg + "/devices", "CreateDevice"},
		{"GET", reg + "/devices", "ListDevices"},
		{"GET", reg + "/groups/g/devices", "ListDevices"},
		{"GET", reg + "/devices/d%25x", "GetDevice"},
		{"PATCH", reg + "/devices/d", "UpdateDevice"},
		{"POST", reg + "/devices/d:modifyCloudToDeviceConfig", "ModifyCloudToDeviceConfig"},
		{"POST", reg + "/devices/d:sendCommandToDevice", "SendCommandToDevice"},
		{"GET", reg + "/devices/d/configVersions", "ListDeviceConfigVersions"},
		{"GET", reg + "/devices/d/states", "ListDeviceStates"},
		{"POST", "/google.cloud.iot.v1.DeviceManager/CreateDevice", "CreateDevice"},
		{"POST", "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Check"},
		{"GET", "/v1/projects/p/locations/l", ""},
		{"POST", reg + "/devices/d:noSuchVerb", ""},
		{"PUT", reg, ""},
		{"GET", reg + "/devices/", ""},
		{"GET", "/v2/nothing", ""},
	} {
		want := tc.want
		if want != "" && !strings.HasPrefix(want, "/") {
			want = deviceManagerPrefix + want
		}
		if got := rt.methodFor(tc.method, tc.path); got != want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.path, got, want)
		}
	}
}

// BenchmarkMethodFor: what finding a request's method costs the REST front
// end, per request.
func BenchmarkMethodFor(b *testing.B) {
	rt, err := deviceManagerRoutes()
	if err != nil {
		b.Fatal(err)
	}
	dev := "/v1/projects/p/locations/l/registries/r/devices/d"
	for _, tc := range []struct{ name, method, path string }{
		{"GetDevice", "GET", dev},
		{"ListDeviceStates", "GET", dev + "/states"},
		{"SendCommandToDevice", "POST", dev + ":sendCommandToDevice"},
		{"Connect", "POST", "/google.cloud.iot.v1.DeviceManager/GetDevice"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rt.methodFor(tc.method, tc.path)
			}
		})
	}
}
