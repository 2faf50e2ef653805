package hub

import (
	"strings"

	"golang.org/x/oauth2"
	"google.golang.org/api/option"

	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/api/googleapi"
)

// Provisioner creates and binds devices for the hub; the manager's REST API
// through ManagerProvisioner in production, a fake in tests.
type Provisioner interface {
	// CreateGateway creates a gateway device in registry (a resource name)
	// with one public key credential.
	CreateGateway(ctx context.Context, registry, gatewayID, authMethod, keyFormat, publicKeyPEM string) error
	// EnsureDevice creates device id in registry, without credentials,
	// unless it exists; created says whether it did.
	EnsureDevice(ctx context.Context, registry, id string) (created bool, err error)
	// EnsureBound binds device id to gateway gatewayID unless it is bound;
	// bound says whether it did.
	EnsureBound(ctx context.Context, registry, gatewayID, id string) (bound bool, err error)
	// DeviceConfig returns a device's current config version and data.
	DeviceConfig(ctx context.Context, deviceName string) (version int64, data []byte, err error)
}

// ErrProvisioning wraps the admin API's refusals; the gRPC service maps
// its HTTP status.
var ErrProvisioning = errors.New("the admin API refused")

// ProvisionError is an admin API error with its HTTP status.
type ProvisionError struct {
	HTTPStatus int
	Message    string
}

func (e *ProvisionError) Error() string { return "admin API: " + e.Message }

// Unwrap makes errors.Is(err, ErrProvisioning) true.
func (e *ProvisionError) Unwrap() error { return ErrProvisioning }

func apiError(err error) error {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		msg := ge.Message
		if msg == "" {
			msg = http.StatusText(ge.Code)
		}
		return &ProvisionError{HTTPStatus: ge.Code, Message: msg}
	}
	return err
}

// ManagerProvisioner provisions through a Cloud IoT Core REST API (the
// manager's, or any compatible one) with the discovery client the Cloud
// IoT gateway samples use.
type ManagerProvisioner struct {
	svc *cloudiot.Service
}

// NewManagerProvisioner returns a provisioner over svc.
func NewManagerProvisioner(svc *cloudiot.Service) *ManagerProvisioner {
	return &ManagerProvisioner{svc: svc}
}

// DialManager returns a provisioner for the admin REST API at managerURL
// (http://host:port), sending token as a bearer token (none when empty).
func DialManager(ctx context.Context, managerURL, token string) (*ManagerProvisioner, error) {
	opts := []option.ClientOption{option.WithEndpoint(strings.TrimSuffix(managerURL, "/") + "/")}
	if token != "" {
		opts = append(opts, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token, TokenType: "Bearer"})))
	} else {
		opts = append(opts, option.WithoutAuthentication())
	}
	svc, err := cloudiot.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("admin API client for %s: %w", managerURL, err)
	}
	return NewManagerProvisioner(svc), nil
}

// CreateGateway implements Provisioner.
func (m *ManagerProvisioner) CreateGateway(ctx context.Context, registry, gatewayID, authMethod, keyFormat, publicKeyPEM string) error {
	_, err := m.svc.Projects.Locations.Registries.Devices.Create(registry, &cloudiot.Device{
		Id: gatewayID,
		Credentials: []*cloudiot.DeviceCredential{{
			PublicKey: &cloudiot.PublicKeyCredential{Format: keyFormat, Key: publicKeyPEM},
		}},
		GatewayConfig: &cloudiot.GatewayConfig{GatewayType: "GATEWAY", GatewayAuthMethod: authMethod},
	}).Context(ctx).Do()
	return apiError(err)
}

// EnsureDevice implements Provisioner.
func (m *ManagerProvisioner) EnsureDevice(ctx context.Context, registry, id string) (bool, error) {
	_, err := m.svc.Projects.Locations.Registries.Devices.Create(registry, &cloudiot.Device{
		Id:            id,
		GatewayConfig: &cloudiot.GatewayConfig{GatewayType: "NON_GATEWAY", GatewayAuthMethod: "ASSOCIATION_ONLY"},
	}).Context(ctx).Do()
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code == http.StatusConflict {
		return false, nil
	}
	if err != nil {
		return false, apiError(err)
	}
	return true, nil
}

// EnsureBound implements Provisioner.
func (m *ManagerProvisioner) EnsureBound(ctx context.Context, registry, gatewayID, id string) (bool, error) {
	resp, err := m.svc.Projects.Locations.Registries.Devices.List(registry).
		GatewayListOptionsAssociationsDeviceId(id).Context(ctx).Do()
	if err != nil {
		return false, apiError(err)
	}
	for _, d := range resp.Devices {
		if d.Id == gatewayID {
			return false, nil
		}
	}
	_, err = m.svc.Projects.Locations.Registries.BindDeviceToGateway(registry, &cloudiot.BindDeviceToGatewayRequest{
		DeviceId: id, GatewayId: gatewayID,
	}).Context(ctx).Do()
	if err != nil {
		return false, apiError(err)
	}
	return true, nil
}

// DeviceConfig implements Provisioner.
func (m *ManagerProvisioner) DeviceConfig(ctx context.Context, deviceName string) (int64, []byte, error) {
	d, err := m.svc.Projects.Locations.Registries.Devices.Get(deviceName).FieldMask("config").Context(ctx).Do()
	if err != nil {
		return 0, nil, apiError(err)
	}
	if d.Config == nil {
		return 0, nil, fmt.Errorf("device %s has no config", deviceName)
	}
	data, err := decodeB64(d.Config.BinaryData)
	return d.Config.Version, data, err
}
