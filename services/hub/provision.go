package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"golang.org/x/oauth2"
	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
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
	// DeviceConfigs returns the current config of devices ids of registry
	// (a resource name), by id; a device that does not exist is left out.
	DeviceConfigs(ctx context.Context, registry string, ids []string) (map[string]DeviceConfig, error)
}

// DeviceConfig is a device's config as the admin API holds it.
type DeviceConfig struct {
	Version int64
	Data    []byte
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

// managerConns bounds the connections to the admin API.
const managerConns = 32

// DialManager returns a provisioner for the admin REST API at managerURL
// (http://host:port), sending token as a bearer token (none when empty).
func DialManager(ctx context.Context, managerURL, token string) (*ManagerProvisioner, error) {
	// Go's default transport keeps two idle connections per host: a new
	// config reaching many streams at once makes as many version lookups,
	// which would open and close hundreds of connections. Keep a pool the
	// size of such a burst, bounded so the manager is not flooded.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = managerConns
	tr.MaxIdleConnsPerHost = managerConns
	var rt http.RoundTripper = tr
	if token != "" {
		rt = &oauth2.Transport{Base: rt, Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token, TokenType: "Bearer"})}
	}
	svc, err := cloudiot.NewService(ctx,
		option.WithEndpoint(strings.TrimSuffix(managerURL, "/")+"/"),
		option.WithHTTPClient(&http.Client{Transport: otelhttp.NewTransport(rt)}))
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

// GatewayExists implements GatewayChecker: name is a gateway unless the
// admin API answers that no such device exists, or that it is not a
// gateway.
func (m *ManagerProvisioner) GatewayExists(ctx context.Context, name string) (bool, error) {
	// The mask in camelCase: a query parameter carries a FieldMask in its
	// JSON form.
	d, err := m.svc.Projects.Locations.Registries.Devices.Get(name).FieldMask("gatewayConfig").Context(ctx).Do()
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, apiError(err)
	}
	return d.GatewayConfig != nil && d.GatewayConfig.GatewayType == "GATEWAY", nil
}

// DeviceConfigs implements Provisioner with ListDevices calls filtered by
// device id, asking for the config field only. An all-digit id is a
// numeric id (user ids start with a letter) and is answered under it.
func (m *ManagerProvisioner) DeviceConfigs(ctx context.Context, registry string, ids []string) (map[string]DeviceConfig, error) {
	var byID []string
	var byNum []uint64
	for _, id := range ids {
		if n, err := strconv.ParseUint(id, 10, 64); err == nil {
			byNum = append(byNum, n)
		} else {
			byID = append(byID, id)
		}
	}
	got := make(map[string]DeviceConfig, len(ids))
	list := func(call *cloudiot.ProjectsLocationsRegistriesDevicesListCall, key func(*cloudiot.Device) string) error {
		return call.FieldMask("config").Pages(ctx, func(resp *cloudiot.ListDevicesResponse) error {
			for _, d := range resp.Devices {
				if d.Config == nil {
					return fmt.Errorf("the admin API listed device %s without its config", d.Id)
				}
				data, err := decodeB64(d.Config.BinaryData)
				if err != nil {
					return fmt.Errorf("config of device %s: %w", d.Id, err)
				}
				got[key(d)] = DeviceConfig{Version: d.Config.Version, Data: data}
			}
			return nil
		})
	}
	devices := m.svc.Projects.Locations.Registries.Devices
	if len(byID) > 0 {
		if err := list(devices.List(registry).DeviceIds(byID...).PageSize(int64(len(byID))),
			func(d *cloudiot.Device) string { return d.Id }); err != nil {
			return nil, apiError(err)
		}
	}
	if len(byNum) > 0 {
		if err := list(devices.List(registry).DeviceNumIds(byNum...).PageSize(int64(len(byNum))),
			func(d *cloudiot.Device) string { return strconv.FormatUint(d.NumId, 10) }); err != nil {
			return nil, apiError(err)
		}
	}
	return got, nil
}
