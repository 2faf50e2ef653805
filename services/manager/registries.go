package manager

import (
	"context"
	"fmt"
	"strings"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
	"github.com/passerelle-iot/passerelle/pkg/resource"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// registryUpdatePaths are the mutable registry fields (compat-spec 2).
var registryUpdatePaths = []string{"event_notification_configs", "state_notification_config", "mqtt_config", "http_config", "log_level", "credentials"}

// CreateDeviceRegistry creates a registry under projects/{p}/locations/{l}.
func (m *deviceManager) CreateDeviceRegistry(ctx context.Context, req *iotpb.CreateDeviceRegistryRequest) (*iotpb.DeviceRegistry, error) {
	project, location, err := resource.ParseLocation("parent", req.GetParent())
	if err != nil {
		return nil, err
	}
	in := req.GetDeviceRegistry()
	if in == nil {
		return nil, invalidf("'device_registry' is required")
	}
	if err := resource.CheckID("device_registry.id", in.GetId()); err != nil {
		return nil, err
	}
	r := &store.Registry{Key: store.RegistryKey{Project: project, Location: location, ID: in.GetId()}}
	for _, p := range registryUpdatePaths {
		if err := applyRegistryField(r, in, p); err != nil {
			return nil, err
		}
	}
	if err := m.store.CreateRegistry(ctx, r); err != nil {
		return nil, err
	}
	return registryProto(r), nil
}

// GetDeviceRegistry returns a registry.
func (m *deviceManager) GetDeviceRegistry(ctx context.Context, req *iotpb.GetDeviceRegistryRequest) (*iotpb.DeviceRegistry, error) {
	key, err := parseRegistryName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	r, err := m.store.GetRegistry(ctx, key)
	if err != nil {
		return nil, err
	}
	return registryProto(r), nil
}

// UpdateDeviceRegistry changes the fields named in update_mask.
func (m *deviceManager) UpdateDeviceRegistry(ctx context.Context, req *iotpb.UpdateDeviceRegistryRequest) (*iotpb.DeviceRegistry, error) {
	in := req.GetDeviceRegistry()
	if in == nil {
		return nil, invalidf("'device_registry' is required")
	}
	key, err := parseRegistryName("device_registry.name", in.GetName())
	if err != nil {
		return nil, err
	}
	paths := maskPaths(req.GetUpdateMask())
	if len(paths) == 0 {
		return nil, invalidf("'update_mask' is required: name the fields to update (%s)", strings.Join(registryUpdatePaths, ", "))
	}
	// Validate every field into a scratch registry first, so that nothing
	// is written unless the whole request is good.
	var scratch store.Registry
	for _, p := range paths {
		if err := applyRegistryField(&scratch, in, p); err != nil {
			return nil, err
		}
	}
	r, err := m.store.UpdateRegistry(ctx, key, func(r *store.Registry) error {
		for _, p := range paths {
			copyRegistryField(r, &scratch, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.announceRegistry(ctx, bus.RegistryChanged, key)
	return registryProto(r), nil
}

// DeleteDeviceRegistry deletes an empty registry.
func (m *deviceManager) DeleteDeviceRegistry(ctx context.Context, req *iotpb.DeleteDeviceRegistryRequest) (*emptypb.Empty, error) {
	key, err := parseRegistryName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	if err := m.store.DeleteRegistry(ctx, key); err != nil {
		return nil, err
	}
	m.announceRegistry(ctx, bus.RegistryDeleted, key)
	return &emptypb.Empty{}, nil
}

// ListDeviceRegistries lists the registries of a location by id.
func (m *deviceManager) ListDeviceRegistries(ctx context.Context, req *iotpb.ListDeviceRegistriesRequest) (*iotpb.ListDeviceRegistriesResponse, error) {
	project, location, err := resource.ParseLocation("parent", req.GetParent())
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	query := "registries\x00" + project + "\x00" + location
	pos, err := m.decodePageToken(query, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	rs, err := m.store.ListRegistries(ctx, project, location, string(pos), size+1)
	if err != nil {
		return nil, err
	}
	resp := &iotpb.ListDeviceRegistriesResponse{}
	if len(rs) > size {
		rs = rs[:size]
		resp.NextPageToken = m.encodePageToken(query, []byte(rs[size-1].Key.ID))
	}
	for _, r := range rs {
		resp.DeviceRegistries = append(resp.DeviceRegistries, registryProto(r))
	}
	return resp, nil
}

// applyRegistryField validates the field at path of in and sets it on r.
func applyRegistryField(r *store.Registry, in *iotpb.DeviceRegistry, path string) error {
	switch path {
	case "event_notification_configs":
		cfgs, err := eventNotificationConfigs(in.GetEventNotificationConfigs())
		if err != nil {
			return err
		}
		r.EventNotificationConfigs = cfgs
	case "state_notification_config":
		topic := in.GetStateNotificationConfig().GetPubsubTopicName()
		if topic != "" {
			if err := checkTopic("device_registry.state_notification_config.pubsub_topic_name", topic); err != nil {
				return err
			}
		}
		r.StateNotificationTopic = topic
	case "mqtt_config", "mqtt_config.mqtt_enabled_state":
		s := int32(in.GetMqttConfig().GetMqttEnabledState())
		if err := checkEnum("device_registry.mqtt_config.mqtt_enabled_state", s, int32(iotpb.MqttState_MQTT_DISABLED)); err != nil {
			return err
		}
		if s == int32(iotpb.MqttState_MQTT_STATE_UNSPECIFIED) {
			s = int32(iotpb.MqttState_MQTT_ENABLED) // unspecified counts as enabled
		}
		r.MQTTEnabledState = s
	case "http_config", "http_config.http_enabled_state":
		s := int32(in.GetHttpConfig().GetHttpEnabledState())
		if err := checkEnum("device_registry.http_config.http_enabled_state", s, int32(iotpb.HttpState_HTTP_DISABLED)); err != nil {
			return err
		}
		if s == int32(iotpb.HttpState_HTTP_STATE_UNSPECIFIED) {
			s = int32(iotpb.HttpState_HTTP_ENABLED)
		}
		r.HTTPEnabledState = s
	case "log_level":
		if err := checkLogLevel("device_registry.log_level", in.GetLogLevel()); err != nil {
			return err
		}
		r.LogLevel = int32(in.GetLogLevel())
	case "credentials":
		certs, err := registryCertificates(in.GetCredentials())
		if err != nil {
			return err
		}
		r.CACertificates = certs
	default:
		return invalidf("'update_mask' names %q, which cannot be updated: the mutable registry fields are %s", path, strings.Join(registryUpdatePaths, ", "))
	}
	return nil
}

// copyRegistryField copies the field at path from a validated src to dst.
func copyRegistryField(dst, src *store.Registry, path string) {
	switch path {
	case "event_notification_configs":
		dst.EventNotificationConfigs = src.EventNotificationConfigs
	case "state_notification_config":
		dst.StateNotificationTopic = src.StateNotificationTopic
	case "mqtt_config", "mqtt_config.mqtt_enabled_state":
		dst.MQTTEnabledState = src.MQTTEnabledState
	case "http_config", "http_config.http_enabled_state":
		dst.HTTPEnabledState = src.HTTPEnabledState
	case "log_level":
		dst.LogLevel = src.LogLevel
	case "credentials":
		dst.CACertificates = src.CACertificates
	}
}

func eventNotificationConfigs(in []*iotpb.EventNotificationConfig) ([]store.EventNotificationConfig, error) {
	if len(in) > maxEventNotificationConfigs {
		return nil, invalidf("'device_registry.event_notification_configs' has %d entries, at most %d are allowed", len(in), maxEventNotificationConfigs)
	}
	var out []store.EventNotificationConfig
	for i, c := range in {
		field := fmt.Sprintf("device_registry.event_notification_configs[%d]", i)
		if err := checkTopic(field+".pubsub_topic_name", c.GetPubsubTopicName()); err != nil {
			return nil, err
		}
		if c.GetSubfolderMatches() == "" {
			// The catch-all config must be the last one, else the configs
			// after it could never match.
			if i != len(in)-1 {
				return nil, invalidf("'%s.subfolder_matches' is empty: only the last event notification config may match every subfolder", field)
			}
		} else if err := checkSubfolderMatches(field+".subfolder_matches", c.GetSubfolderMatches()); err != nil {
			return nil, err
		}
		out = append(out, store.EventNotificationConfig{PubsubTopicName: c.GetPubsubTopicName(), SubfolderMatches: c.GetSubfolderMatches()})
	}
	return out, nil
}

func registryCertificates(in []*iotpb.RegistryCredential) ([]string, error) {
	if len(in) > maxRegistryCredentials {
		return nil, invalidf("'device_registry.credentials' has %d entries, at most %d are allowed", len(in), maxRegistryCredentials)
	}
	var out []string
	for i, c := range in {
		field := fmt.Sprintf("device_registry.credentials[%d]", i)
		pk := c.GetPublicKeyCertificate()
		if pk == nil {
			return nil, invalidf("'%s.public_key_certificate' is required", field)
		}
		if pk.GetFormat() != iotpb.PublicKeyCertificateFormat_X509_CERTIFICATE_PEM {
			return nil, invalidf("'%s.public_key_certificate.format' must be X509_CERTIFICATE_PEM", field)
		}
		if _, err := deviceauth.ParseCACertificate(pk.GetCertificate()); err != nil {
			return nil, invalidf("'%s.public_key_certificate.certificate' is invalid: %v", field, err)
		}
		out = append(out, pk.GetCertificate())
	}
	return out, nil
}
