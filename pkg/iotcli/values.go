package iotcli

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// keyValues parses K=V,K2=V2 (gcloud's dict syntax) for --flag.
func keyValues(flag, s string) ([][2]string, error) {
	var out [][2]string
	if s == "" {
		return nil, nil
	}
	for _, p := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usagef(flag, "bad syntax for dict arg: [%s]; expected KEY=VALUE[,KEY=VALUE...]", p)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

var keyTypes = map[string]iotpb.PublicKeyFormat{
	"rsa-pem":        iotpb.PublicKeyFormat_RSA_PEM,
	"rsa-x509-pem":   iotpb.PublicKeyFormat_RSA_X509_PEM,
	"es256-pem":      iotpb.PublicKeyFormat_ES256_PEM,
	"es256-x509-pem": iotpb.PublicKeyFormat_ES256_X509_PEM,
	"rs256":          iotpb.PublicKeyFormat_RSA_X509_PEM,
	"es256":          iotpb.PublicKeyFormat_ES256_PEM,
}

const keyTypeChoices = "es256, es256-pem, es256-x509-pem, rs256, rsa-pem, rsa-x509-pem"

// keyType parses a --type / type= value: gcloud lower-cases it and turns
// _ into -.
func keyType(flag, s string) (iotpb.PublicKeyFormat, error) {
	f, ok := keyTypes[strings.ReplaceAll(strings.ToLower(s), "_", "-")]
	if !ok {
		return 0, usagef(flag, "Invalid choice: '%s'. Valid choices are [%s].", s, keyTypeChoices)
	}
	return f, nil
}

// timestamp parses a gcloud datetime (RFC 3339, or a date).
func timestamp(flag, s string) (*timestamppb.Timestamp, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return timestamppb.New(t), nil
		}
	}
	return nil, usagef(flag, "Failed to parse date/time: [%s]; expected an ISO 8601 time such as 2020-12-30T10:50:22Z", s)
}

// publicKey parses --public-key path=P,type=T[,expiration-time=TS].
func publicKey(s string) (*iotpb.DeviceCredential, error) {
	kv, err := keyValues("public-key", s)
	if err != nil {
		return nil, err
	}
	var path, typ, exp string
	for _, p := range kv {
		switch p[0] {
		case "path":
			path = p[1]
		case "type":
			typ = p[1]
		case "expiration-time":
			exp = p[1]
		default:
			return nil, usagef("public-key", "valid keys are [expiration-time, path, type]; received: %s", p[0])
		}
	}
	if path == "" || typ == "" {
		return nil, usagef("public-key", "Key [path] and [type] are required in [%s]; expected path=PATH,type=TYPE[,expiration-time=TIME]", s)
	}
	return credential("public-key", path, typ, exp)
}

func credential(flag, path, typ, exp string) (*iotpb.DeviceCredential, error) {
	f, err := keyType(flag, typ)
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("Could not read key file [%s]: %v", path, err)
	}
	c := &iotpb.DeviceCredential{Credential: &iotpb.DeviceCredential_PublicKey{PublicKey: &iotpb.PublicKeyCredential{Format: f, Key: string(key)}}}
	if exp != "" {
		if c.ExpirationTime, err = timestamp(flag, exp); err != nil {
			return nil, err
		}
	}
	return c, nil
}

var metadataKey = regexp.MustCompile(`^[a-zA-Z0-9-_]{1,127}$`)

// metadata merges --metadata and --metadata-from-file with gcloud's
// client-side checks.
func metadata(inline, fromFile string) (map[string]string, error) {
	kv, err := keyValues("metadata", inline)
	if err != nil {
		return nil, err
	}
	files, err := keyValues("metadata-from-file", fromFile)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, p := range kv {
		m[p[0]] = p[1]
	}
	for _, p := range files {
		if _, dup := m[p[0]]; dup {
			return nil, fmt.Errorf("Cannot specify the same key in both --metadata and --metadata-from-file.")
		}
		raw, err := os.ReadFile(p[1])
		if err != nil {
			return nil, fmt.Errorf("Could not read metadata file [%s]: %v", p[1], err)
		}
		m[p[0]] = string(raw)
	}
	total := 0
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		if !metadataKey.MatchString(k) {
			return nil, fmt.Errorf("Invalid metadata key [%s]: keys must be 1 to 127 characters of [a-zA-Z0-9-_].", k)
		}
		if v == "" {
			return nil, fmt.Errorf("Metadata value for key [%s] is empty.", k)
		}
		if len(v) > 32*1024 {
			return nil, fmt.Errorf("Metadata value for key [%s] is over 32 KB.", k)
		}
		total += len(k) + len(v)
	}
	if total > 256*1024 {
		return nil, fmt.Errorf("Metadata is over 256 KB in total.")
	}
	if len(m) > 500 {
		return nil, fmt.Errorf("Too many metadata pairs: [%d] given, at most [500] allowed.", len(m))
	}
	return m, nil
}

var logLevels = map[string]iotpb.LogLevel{
	"none": iotpb.LogLevel_NONE, "info": iotpb.LogLevel_INFO, "error": iotpb.LogLevel_ERROR, "debug": iotpb.LogLevel_DEBUG,
}

func logLevel(s string) (iotpb.LogLevel, error) {
	l, ok := logLevels[strings.ToLower(s)]
	if !ok {
		return 0, usagef("log-level", "Invalid choice: '%s'. Valid choices are [debug, error, info, none].", s)
	}
	return l, nil
}

func deviceType(s string) (iotpb.GatewayType, error) {
	switch strings.ToLower(s) {
	case "gateway":
		return iotpb.GatewayType_GATEWAY, nil
	case "non-gateway":
		return iotpb.GatewayType_NON_GATEWAY, nil
	}
	return 0, usagef("device-type", "Invalid choice: '%s'. Valid choices are [gateway, non-gateway].", s)
}

func authMethod(s string) (iotpb.GatewayAuthMethod, error) {
	switch strings.ToLower(s) {
	case "association-only":
		return iotpb.GatewayAuthMethod_ASSOCIATION_ONLY, nil
	case "device-auth-token-only":
		return iotpb.GatewayAuthMethod_DEVICE_AUTH_TOKEN_ONLY, nil
	case "association-and-device-auth-token":
		return iotpb.GatewayAuthMethod_ASSOCIATION_AND_DEVICE_AUTH_TOKEN, nil
	}
	return 0, usagef("auth-method", "Invalid choice: '%s'. Valid choices are [association-and-device-auth-token, association-only, device-auth-token-only].", s)
}

// topicName expands a short topic id to projects/P/topics/T.
func topicName(project, t string) string {
	if strings.HasPrefix(t, "projects/") {
		return t
	}
	return "projects/" + project + "/topics/" + t
}

// eventConfigs parses the repeated --event-notification-config
// topic=T[,subfolder=S].
func eventConfigs(project string, values []string) ([]*iotpb.EventNotificationConfig, error) {
	var out []*iotpb.EventNotificationConfig
	for _, v := range values {
		kv, err := keyValues("event-notification-config", v)
		if err != nil {
			return nil, err
		}
		c := &iotpb.EventNotificationConfig{}
		for _, p := range kv {
			switch p[0] {
			case "topic":
				c.PubsubTopicName = topicName(project, p[1])
			case "subfolder":
				c.SubfolderMatches = p[1]
			default:
				return nil, usagef("event-notification-config", "valid keys are [subfolder, topic]; received: %s", p[0])
			}
		}
		if c.PubsubTopicName == "" {
			return nil, usagef("event-notification-config", "Key [topic] required in [%s]; expected topic=TOPIC[,subfolder=SUBFOLDER]", v)
		}
		out = append(out, c)
	}
	return out, nil
}
