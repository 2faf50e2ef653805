package manager

import (
	"crypto/x509"
	"encoding/pem"
	"strconv"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
	"github.com/passerelle-iot/passerelle/pkg/resource"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// timestamp converts a store time; zero means "never" and gives nil.
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func registryName(k store.RegistryKey) string {
	return resource.Registry{Project: k.Project, Location: k.Location, Registry: k.ID}.Name()
}

// registryProto converts a stored registry to its API form.
func registryProto(r *store.Registry) *iotpb.DeviceRegistry {
	out := &iotpb.DeviceRegistry{
		Id:         r.Key.ID,
		Name:       registryName(r.Key),
		MqttConfig: &iotpb.MqttConfig{MqttEnabledState: iotpb.MqttState(r.MQTTEnabledState)},
		HttpConfig: &iotpb.HttpConfig{HttpEnabledState: iotpb.HttpState(r.HTTPEnabledState)},
		LogLevel:   iotpb.LogLevel(r.LogLevel),
	}
	for _, c := range r.EventNotificationConfigs {
		out.EventNotificationConfigs = append(out.EventNotificationConfigs, &iotpb.EventNotificationConfig{
			PubsubTopicName:  c.PubsubTopicName,
			SubfolderMatches: c.SubfolderMatches,
		})
	}
	if r.StateNotificationTopic != "" {
		out.StateNotificationConfig = &iotpb.StateNotificationConfig{PubsubTopicName: r.StateNotificationTopic}
	}
	for _, c := range r.CACertificates {
		out.Credentials = append(out.Credentials, &iotpb.RegistryCredential{
			Credential: &iotpb.RegistryCredential_PublicKeyCertificate{PublicKeyCertificate: &iotpb.PublicKeyCertificate{
				Format:      iotpb.PublicKeyCertificateFormat_X509_CERTIFICATE_PEM,
				Certificate: c,
				X509Details: certificateDetails(c),
			}},
		})
	}
	return out
}

// certificateDetails describes a stored certificate; it was checked when
// stored, so a parse failure only leaves the details out.
func certificateDetails(pemText string) *iotpb.X509CertificateDetails {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	d := deviceauth.Details(c)
	return &iotpb.X509CertificateDetails{
		Issuer:             d.Issuer,
		Subject:            d.Subject,
		StartTime:          timestamp(d.StartTime),
		ExpiryTime:         timestamp(d.ExpiryTime),
		SignatureAlgorithm: d.SignatureAlgorithm,
		PublicKeyType:      d.PublicKeyType,
	}
}

// deviceProto converts a stored device to its full API form. The name ends
// in the numId, as Cloud IoT's did.
func deviceProto(d *store.Device) *iotpb.Device {
	gwType := d.GatewayType
	if gwType == store.GatewayTypeUnspecified {
		gwType = store.GatewayTypeNonGateway
	}
	out := &iotpb.Device{
		Id:                 d.ID,
		Name:               registryName(d.Registry) + "/devices/" + strconv.FormatUint(d.NumID, 10),
		NumId:              d.NumID,
		LastHeartbeatTime:  timestamp(d.LastHeartbeatTime),
		LastEventTime:      timestamp(d.LastEventTime),
		LastStateTime:      timestamp(d.LastStateTime),
		LastConfigAckTime:  timestamp(d.LastConfigAckTime),
		LastConfigSendTime: timestamp(d.LastConfigSendTime),
		Blocked:            d.Blocked,
		LastErrorTime:      timestamp(d.LastErrorTime),
		Config:             configProto(d.Config),
		LogLevel:           iotpb.LogLevel(d.LogLevel),
		GatewayConfig: &iotpb.GatewayConfig{
			GatewayType:             iotpb.GatewayType(gwType),
			GatewayAuthMethod:       iotpb.GatewayAuthMethod(d.GatewayAuthMethod),
			LastAccessedGatewayId:   d.LastAccessedGatewayID,
			LastAccessedGatewayTime: timestamp(d.LastAccessedGatewayTime),
		},
	}
	for _, c := range d.Credentials {
		out.Credentials = append(out.Credentials, &iotpb.DeviceCredential{
			Credential: &iotpb.DeviceCredential_PublicKey{PublicKey: &iotpb.PublicKeyCredential{
				Format: iotpb.PublicKeyFormat(c.Format),
				Key:    c.Key,
			}},
			ExpirationTime: timestamp(c.ExpirationTime),
		})
	}
	if d.LastErrorStatus != nil {
		out.LastErrorStatus = &status.Status{Code: d.LastErrorStatus.Code, Message: d.LastErrorStatus.Message}
	}
	if d.State != nil {
		out.State = stateProto(*d.State)
	}
	if len(d.Metadata) > 0 {
		out.Metadata = make(map[string]string, len(d.Metadata))
		for k, v := range d.Metadata {
			out.Metadata[k] = v
		}
	}
	return out
}

func configProto(c store.DeviceConfig) *iotpb.DeviceConfig {
	return &iotpb.DeviceConfig{
		Version:         c.Version,
		CloudUpdateTime: timestamp(c.CloudUpdateTime),
		DeviceAckTime:   timestamp(c.DeviceAckTime),
		BinaryData:      c.Data,
	}
}

func stateProto(s store.DeviceState) *iotpb.DeviceState {
	return &iotpb.DeviceState{UpdateTime: timestamp(s.UpdateTime), BinaryData: s.Data}
}
