package manager

import (
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// Request sizes, derived from the API's own limits (validate.go) so that
// every legitimate request fits and nothing much larger is read: a request
// body is read only up to its method's limit, and a gRPC message only up
// to the largest request the API can carry.
const (
	// maxIDBytes is the longest registry or device id (compat-spec 1).
	maxIDBytes = 255
	// maxCredentialBytes is the room given to one PEM key or certificate:
	// an X.509 certificate of the largest RSA key accepted (8192 bits) is
	// under 3 KiB.
	maxCredentialBytes = 16 << 10
	// maxTopicNameBytes is the room given to a Pub/Sub topic name
	// (projects/{30}/topics/{255}).
	maxTopicNameBytes = 512
	// jsonEscape is how many bytes one byte of a string can take in JSON
	// (\u00XX; Go's encoder writes < > & that way too).
	jsonEscape = 6
	// requestSlack covers what a request holds besides its large fields:
	// names, enums, timestamps, JSON punctuation.
	requestSlack = 16 << 10

	// deviceJSONBytes: CreateDevice and UpdateDevice carry metadata, up to
	// 3 credentials and (on create) a config, base64'd (twice, for
	// encoders that write "/" as "\/").
	deviceJSONBytes = jsonEscape*(maxMetadataTotalBytes+maxMetadataPairs*8+store.MaxDeviceCredentials*maxCredentialBytes) +
		2*base64Config + requestSlack
	// registryJSONBytes: up to 10 CA certificates and 10 notification
	// configs, and the state notification topic.
	registryJSONBytes = jsonEscape*(maxRegistryCredentials*maxCredentialBytes+
		(maxEventNotificationConfigs+1)*(maxTopicNameBytes+maxSubfolderBytes)) + requestSlack
	configJSONBytes  = 2*base64Config + requestSlack
	commandJSONBytes = 2*base64Command + jsonEscape*maxSubfolderBytes + requestSlack
	bindJSONBytes    = jsonEscape*2*maxIDBytes + requestSlack
	// iamJSONBytes: the IAM methods answer UNIMPLEMENTED; a policy is "a
	// few 10s of KB" in Google's words.
	iamJSONBytes = 4 * requestSlack
	// noBodyBytes is the limit of methods whose request has no body (GET,
	// DELETE): a client may still send "{}".
	noBodyBytes = requestSlack

	base64Config  = (maxConfigBytes + 2) / 3 * 4
	base64Command = (maxCommandBytes + 2) / 3 * 4

	// maxGRPCRequestBytes is the largest DeviceManager request in the
	// protobuf encoding: ListDevices with 10,000 device ids and 10,000
	// numIds outweighs a device with full metadata, credentials and config.
	maxGRPCRequestBytes = max(
		maxListFilterIDs*(maxIDBytes+3)+maxListFilterIDs*10+requestSlack,
		maxMetadataTotalBytes+maxMetadataPairs*8+store.MaxDeviceCredentials*maxCredentialBytes+maxConfigBytes+requestSlack,
		maxRegistryCredentials*maxCredentialBytes+(maxEventNotificationConfigs+1)*(maxTopicNameBytes+maxSubfolderBytes)+requestSlack,
		maxCommandBytes+maxSubfolderBytes+requestSlack,
	)

	// defaultMaxBodyBytesInFlight bounds the request bodies the REST front
	// end holds at once, across every request (WithMaxBodyBytesInFlight).
	defaultMaxBodyBytesInFlight = 64 << 20
)

// restBodyLimits returns the most bytes a request body of each
// DeviceManager method may have (keyed by full method name). The same
// limits apply to Connect and gRPC-Web bodies, whose binary encoding is
// smaller than JSON.
func restBodyLimits() map[string]int64 {
	table := map[int64][]string{
		deviceJSONBytes:   {"CreateDevice", "UpdateDevice"},
		registryJSONBytes: {"CreateDeviceRegistry", "UpdateDeviceRegistry"},
		configJSONBytes:   {"ModifyCloudToDeviceConfig"},
		commandJSONBytes:  {"SendCommandToDevice"},
		bindJSONBytes:     {"BindDeviceToGateway", "UnbindDeviceFromGateway"},
		iamJSONBytes:      {"SetIamPolicy", "GetIamPolicy", "TestIamPermissions"},
		noBodyBytes: {"GetDeviceRegistry", "ListDeviceRegistries", "DeleteDeviceRegistry",
			"GetDevice", "ListDevices", "DeleteDevice", "ListDeviceConfigVersions", "ListDeviceStates"},
	}
	m := make(map[string]int64)
	for limit, methods := range table {
		for _, name := range methods {
			m[deviceManagerPrefix+name] = limit
		}
	}
	return m
}
