// Package store defines Passerelle's registry data: registries, devices,
// credentials, gateway bindings, config versions and states, and the Store
// interface every back end (SQLite, PostgreSQL) implements.
//
// The interface keeps the invariants that span rows (credential and binding
// limits, delete checks, config version increments) inside the back end's
// transactions, so they hold under concurrent callers and across processes.
// Validation of single fields (id formats, key parsing, metadata sizes) is the
// caller's job; the store trusts what it is given.
//
// Every method returns errors that match one of the sentinel errors below
// with errors.Is; the message of such an error is written for the API caller.
package store

import (
	"context"
	"time"
)

// Limits kept by every back end.
const (
	// MaxDeviceCredentials is the most credentials one device may hold.
	MaxDeviceCredentials = 3
	// MaxGatewaysPerDevice is the most gateways one device may be bound to.
	MaxGatewaysPerDevice = 10
	// MaxDevicesPerGateway is the most devices bound to one gateway.
	MaxDevicesPerGateway = 10000
	// KeptConfigVersions is how many config versions are kept per device.
	KeptConfigVersions = 10
	// KeptStates is how many states are kept per device.
	KeptStates = 10
)

// Enumerations use the numeric values of google.cloud.iot.v1 so that the
// manager converts without tables.
const (
	GatewayTypeUnspecified int32 = 0
	GatewayTypeGateway     int32 = 1
	GatewayTypeNonGateway  int32 = 2
)

// RegistryKey names a registry: projects/{Project}/locations/{Location}/registries/{ID}.
type RegistryKey struct {
	Project  string
	Location string
	ID       string
}

// EventNotificationConfig routes telemetry to a topic. An empty
// SubfolderMatches matches every event.
type EventNotificationConfig struct {
	PubsubTopicName  string `json:"pubsubTopicName"`
	SubfolderMatches string `json:"subfolderMatches,omitempty"`
}

// Registry is a device registry.
type Registry struct {
	Key                      RegistryKey
	EventNotificationConfigs []EventNotificationConfig
	// StateNotificationTopic is stateNotificationConfig.pubsubTopicName; empty
	// when the registry has no state notification config.
	StateNotificationTopic string
	MQTTEnabledState       int32 // iotpb.MqttState
	HTTPEnabledState       int32 // iotpb.HttpState
	LogLevel               int32 // iotpb.LogLevel
	// CACertificates are the registry's X.509 CA certificates, PEM encoded.
	CACertificates []string
}

// Credential is one public key a device authenticates with.
type Credential struct {
	Format int32  `json:"format"` // iotpb.PublicKeyFormat
	Key    string `json:"key"`    // PEM
	// ExpirationTime is zero when the key never expires.
	ExpirationTime time.Time `json:"expirationTime,omitzero"`
}

// Status is a google.rpc.Status without details.
type Status struct {
	Code    int32
	Message string
}

// DeviceConfig is one config version of a device.
type DeviceConfig struct {
	Version         int64
	CloudUpdateTime time.Time
	DeviceAckTime   time.Time // zero until the device acknowledges it
	Data            []byte
}

// ConfigChange is what ModifyConfig wrote: the new config, and the device
// named by both its id and its numId (whichever the caller used).
type ConfigChange struct {
	DeviceConfig
	Device DeviceRef
}

// DeviceState is one state report of a device.
type DeviceState struct {
	UpdateTime time.Time
	Data       []byte
}

// Device is a device or a gateway. Zero times mean "never".
type Device struct {
	Registry RegistryKey
	ID       string
	NumID    uint64 // assigned by the store, unique across the installation

	Credentials       []Credential
	Blocked           bool
	Metadata          map[string]string
	LogLevel          int32 // iotpb.LogLevel
	GatewayType       int32 // GatewayType*
	GatewayAuthMethod int32 // iotpb.GatewayAuthMethod

	LastAccessedGatewayID   string
	LastAccessedGatewayTime time.Time
	LastHeartbeatTime       time.Time
	LastEventTime           time.Time
	LastStateTime           time.Time
	LastConfigAckTime       time.Time
	LastConfigSendTime      time.Time
	LastErrorTime           time.Time
	LastErrorStatus         *Status

	// Config is the latest config version; every device has one (version 1
	// is made at creation, empty unless the creator gave data).
	Config DeviceConfig
	// State is the latest state report, nil when there is none.
	State *DeviceState
}

// Ref returns the device's reference, by both id and numId.
func (d *Device) Ref() DeviceRef { return DeviceRef{Registry: d.Registry, ID: d.ID, NumID: d.NumID} }

// Activity is what a bridge saw of one device since it last wrote: times
// that only move forward (a zero time is no news; an older time than the
// stored one is ignored), the error status and gateway that go with
// ErrorTime and GatewayTime, and a config acknowledgement (AckVersion 0:
// none), recorded as AckConfig does.
type Activity struct {
	NumID       uint64
	Heartbeat   time.Time
	Event       time.Time
	State       time.Time
	ConfigSend  time.Time
	ErrorTime   time.Time
	ErrorStatus *Status
	GatewayID   string
	GatewayTime time.Time
	AckVersion  int64
	AckTime     time.Time
}

// DeviceRef names one device of a registry by its id or, when ID is empty,
// by its numeric id.
type DeviceRef struct {
	Registry RegistryKey
	ID       string
	NumID    uint64
}

// DeviceQuery selects devices of one registry for ListDevices. Results are
// ordered by NumID ascending and start after AfterNumID. Filters combine
// with AND; a nil or empty slice filter is no filter.
type DeviceQuery struct {
	Registry RegistryKey
	IDs      []string
	NumIDs   []uint64
	// GatewayType, when not GatewayTypeUnspecified, keeps only gateways
	// (GatewayTypeGateway) or only non-gateways (GatewayTypeNonGateway;
	// devices created with an unspecified type count as non-gateways).
	GatewayType int32
	// BoundToGateway, when set (ID or NumID), keeps the devices bound to that
	// gateway. An unknown gateway gives an empty result.
	BoundToGateway *DeviceRef
	// GatewaysOfDevice, when set, keeps the gateways that device is bound to.
	// An unknown device gives an empty result.
	GatewaysOfDevice *DeviceRef
	AfterNumID       uint64
	Limit            int // at most this many; must be > 0
}

// ConfigUpdate is a request to write a device's next config version.
type ConfigUpdate struct {
	// VersionToUpdate, when non-zero, must equal the current version, else
	// ErrFailedPrecondition.
	VersionToUpdate int64
	Data            []byte
	Now             time.Time
	// MinInterval is the least time between two updates of the same device
	// (the creation of version 1 does not count); a faster update fails with
	// ErrResourceExhausted.
	MinInterval time.Duration
}

// Store is the registry data. Implementations are safe for concurrent use.
type Store interface {
	// CreateRegistry stores a new registry; ErrAlreadyExists if the key is taken.
	CreateRegistry(ctx context.Context, r *Registry) error
	// GetRegistry returns a registry or ErrNotFound.
	GetRegistry(ctx context.Context, key RegistryKey) (*Registry, error)
	// UpdateRegistry reads the registry, lets update change it and writes it
	// back, in one transaction. An error from update aborts the change and
	// is returned as is. The key cannot change.
	UpdateRegistry(ctx context.Context, key RegistryKey, update func(*Registry) error) (*Registry, error)
	// DeleteRegistry deletes an empty registry; ErrFailedPrecondition while it
	// holds devices, ErrNotFound if there is none.
	DeleteRegistry(ctx context.Context, key RegistryKey) error
	// ListRegistries lists the registries of a project and location by id,
	// starting after afterID, at most limit of them.
	ListRegistries(ctx context.Context, project, location, afterID string, limit int) ([]*Registry, error)

	// CreateDevice stores a new device with config version 1 (d.Config.Data,
	// CloudUpdateTime = now) and returns it with its NumID. ErrNotFound when
	// the registry does not exist, ErrAlreadyExists when the id is taken.
	CreateDevice(ctx context.Context, d *Device, now time.Time) (*Device, error)
	// GetDevice returns a device or ErrNotFound.
	GetDevice(ctx context.Context, ref DeviceRef) (*Device, error)
	// UpdateDevice reads the device, lets update change it and writes it
	// back, in one transaction that excludes concurrent updates of the same
	// device. Only Credentials, Blocked, Metadata, LogLevel,
	// GatewayAuthMethod and the Last* fields are written.
	UpdateDevice(ctx context.Context, ref DeviceRef, update func(*Device) error) (*Device, error)
	// RecordActivity writes the server-set fields of many devices in one
	// transaction, without reading them first (the bridges' batched
	// lastHeartbeatTime, lastEventTime... updates). Unknown devices are
	// skipped: they were deleted meanwhile.
	RecordActivity(ctx context.Context, acts []Activity) error
	// DeleteDevice deletes a device with its configs, states and bindings.
	// A gateway that still has bound devices gives ErrFailedPrecondition.
	DeleteDevice(ctx context.Context, ref DeviceRef) error
	// ListDevices returns the devices matching q.
	ListDevices(ctx context.Context, q DeviceQuery) ([]*Device, error)

	// BindDevice binds a device to a gateway of the same registry (the
	// registries of the refs must be equal). Binding twice is not an
	// error. ErrNotFound for an unknown gateway or device,
	// ErrInvalidArgument when gateway is not a gateway or device is one,
	// ErrResourceExhausted past MaxGatewaysPerDevice or MaxDevicesPerGateway.
	BindDevice(ctx context.Context, gateway, device DeviceRef) error
	// UnbindDevice removes a binding; ErrNotFound when there is none.
	UnbindDevice(ctx context.Context, gateway, device DeviceRef) error

	// ModifyConfig writes the next config version, keeps the newest
	// KeptConfigVersions, and returns the new version with the device's
	// full reference.
	ModifyConfig(ctx context.Context, ref DeviceRef, u ConfigUpdate) (*ConfigChange, error)
	// AckConfig records that the device acknowledged config version at
	// time at: that version's DeviceAckTime (in the history, and on the
	// device when it is the latest) and the device's LastConfigAckTime. A
	// version no longer kept only sets LastConfigAckTime. Like every
	// server-set time, these only move forward: an ack older than the
	// stored time changes nothing (several bridges report out of order).
	AckConfig(ctx context.Context, ref DeviceRef, version int64, at time.Time) error
	// ListConfigs returns up to limit config versions, newest first; limit 0
	// means all that are kept.
	ListConfigs(ctx context.Context, ref DeviceRef, limit int) ([]DeviceConfig, error)
	// AddState stores a state report, keeping the newest KeptStates by
	// UpdateTime. It becomes the device's State unless a later one is
	// stored already (a report that reached the store late, through
	// another bridge); LastStateTime only moves forward.
	AddState(ctx context.Context, ref DeviceRef, s DeviceState) error
	// ListStates returns up to limit states, newest (by UpdateTime) first;
	// limit 0 means all that are kept.
	ListStates(ctx context.Context, ref DeviceRef, limit int) ([]DeviceState, error)

	// Secret returns the installation-wide secret called name, made of
	// size random bytes by the first caller: every process sharing the
	// store gets the same one, across restarts.
	Secret(ctx context.Context, name string, size int) ([]byte, error)

	// Ping checks that the back end answers, for readiness checks: nil, or
	// an error matching ErrUnavailable that says why not.
	Ping(ctx context.Context) error

	// Close releases the store's connections.
	Close() error
}
