// Package migrate copies registries, devices (credentials, metadata,
// gateway configuration, blocked state, log level), gateway bindings and
// configs from a Cloud IoT-compatible admin API, or from a JSON export,
// into a Cloud IoT-compatible target (Passerelle). A run converges: what
// the target already has is skipped, what differs is updated, so a second
// run after an interruption goes on where the first stopped.
package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	iot "cloud.google.com/go/iot/apiv1"
	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// Binding is a device bound to a gateway, both by id, in one registry.
type Binding struct{ Gateway, Device string }

// Source is where a migration reads from.
type Source interface {
	// Registries lists the registries to copy.
	Registries(ctx context.Context) ([]*iotpb.DeviceRegistry, error)
	// Devices lists a registry's devices with every field.
	Devices(ctx context.Context, registry string) ([]*iotpb.Device, error)
	// Bindings lists the bindings of the given gateways of a registry.
	Bindings(ctx context.Context, registry string, gateways []*iotpb.Device) ([]Binding, error)
	// ConfigVersions lists a device's kept config versions, newest
	// first; nil when the source keeps none beyond the device's config.
	ConfigVersions(ctx context.Context, device string) ([]*iotpb.DeviceConfig, error)
}

// FullDeviceMask names every field of a device, for ListDevices.
func FullDeviceMask() *fieldmaskpb.FieldMask {
	m := &fieldmaskpb.FieldMask{}
	fields := (&iotpb.Device{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		m.Paths = append(m.Paths, string(fields.Get(i).Name()))
	}
	return m
}

// API reads from a Cloud IoT-compatible admin API.
type API struct {
	Client *iot.DeviceManagerClient
	// Locations are the projects/P/locations/L whose registries are
	// copied.
	Locations []string
	// Only, when not empty, limits the copy to these registry ids.
	Only []string
	// CallOptions are added to every call (retries).
	CallOptions []gax.CallOption
}

// Registries implements Source.
func (s *API) Registries(ctx context.Context) ([]*iotpb.DeviceRegistry, error) {
	var out []*iotpb.DeviceRegistry
	for _, loc := range s.Locations {
		it := s.Client.ListDeviceRegistries(ctx, &iotpb.ListDeviceRegistriesRequest{Parent: loc}, s.CallOptions...)
		for {
			r, err := it.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("list the registries of %s: %w", loc, err)
			}
			if len(s.Only) == 0 || contains(s.Only, r.Id) {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// Devices implements Source.
func (s *API) Devices(ctx context.Context, registry string) ([]*iotpb.Device, error) {
	return listAll(ctx, s.Client, &iotpb.ListDevicesRequest{Parent: registry, FieldMask: FullDeviceMask(), PageSize: 10000}, s.CallOptions)
}

func listAll(ctx context.Context, c *iot.DeviceManagerClient, req *iotpb.ListDevicesRequest, opts []gax.CallOption) ([]*iotpb.Device, error) {
	it := c.ListDevices(ctx, req, opts...)
	var out []*iotpb.Device
	for {
		d, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list the devices of %s: %w", req.Parent, err)
		}
		out = append(out, d)
	}
}

// Bindings implements Source.
func (s *API) Bindings(ctx context.Context, registry string, gateways []*iotpb.Device) ([]Binding, error) {
	var out []Binding
	for _, gw := range gateways {
		bound, err := listAll(ctx, s.Client, &iotpb.ListDevicesRequest{Parent: registry, PageSize: 10000, GatewayListOptions: &iotpb.GatewayListOptions{
			Filter: &iotpb.GatewayListOptions_AssociationsGatewayId{AssociationsGatewayId: gw.Id},
		}}, s.CallOptions)
		if err != nil {
			return nil, err
		}
		for _, d := range bound {
			out = append(out, Binding{Gateway: gw.Id, Device: d.Id})
		}
	}
	return out, nil
}

// ConfigVersions implements Source.
func (s *API) ConfigVersions(ctx context.Context, device string) ([]*iotpb.DeviceConfig, error) {
	r, err := s.Client.ListDeviceConfigVersions(ctx, &iotpb.ListDeviceConfigVersionsRequest{Name: device}, s.CallOptions...)
	if err != nil {
		return nil, err
	}
	return r.DeviceConfigs, nil
}

// Export reads a JSON export: the array `gcloud iot devices list
// --format=json` prints, a ListDevicesResponse ({"devices": [...]}), or
// {"registries": [...], "devices": [...], "bindings": [{"gateway": ID,
// "device": ID, "registry": NAME}]}. Devices' names say their registry
// (projects/P/locations/L/registries/R/devices/N); a registry that the
// export does not describe is created with Cloud IoT's defaults.
type Export struct {
	registries []*iotpb.DeviceRegistry
	devices    map[string][]*iotpb.Device // by registry name
	bindings   map[string][]Binding
}

// ReadExport parses an export. registry is the registry name for devices
// whose name holds none (may be empty).
func ReadExport(r io.Reader, registry string) (*Export, error) {
	var raw json.RawMessage
	if err := json.NewDecoder(r).Decode(&raw); err != nil {
		return nil, fmt.Errorf("read the export: %w", err)
	}
	var doc struct {
		Registries []json.RawMessage `json:"registries"`
		Devices    []json.RawMessage `json:"devices"`
		Bindings   []struct {
			Registry, Gateway, Device string
		} `json:"bindings"`
	}
	if strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
		if err := json.Unmarshal(raw, &doc.Devices); err != nil {
			return nil, fmt.Errorf("read the export: %w", err)
		}
	} else if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("read the export: %w", err)
	}
	e := &Export{devices: map[string][]*iotpb.Device{}, bindings: map[string][]Binding{}}
	opts := protojson.UnmarshalOptions{DiscardUnknown: true}
	known := map[string]bool{}
	for i, r := range doc.Registries {
		reg := &iotpb.DeviceRegistry{}
		if err := opts.Unmarshal(r, reg); err != nil {
			return nil, fmt.Errorf("export: registry %d: %w", i, err)
		}
		if reg.Name == "" {
			return nil, fmt.Errorf("export: registry %d has no name", i)
		}
		if reg.Id == "" {
			reg.Id = lastSegment(reg.Name)
		}
		known[reg.Name] = true
		e.registries = append(e.registries, reg)
	}
	for i, r := range doc.Devices {
		d := &iotpb.Device{}
		if err := opts.Unmarshal(r, d); err != nil {
			return nil, fmt.Errorf("export: device %d: %w", i, err)
		}
		reg := registry
		if j := strings.Index(d.Name, "/devices/"); j > 0 {
			reg = d.Name[:j]
		}
		if reg == "" {
			return nil, fmt.Errorf("export: device %d (%s) has no registry in its name; give the registry", i, d.Id)
		}
		if d.Id == "" {
			return nil, fmt.Errorf("export: device %d has no id", i)
		}
		if !known[reg] {
			known[reg] = true
			e.registries = append(e.registries, &iotpb.DeviceRegistry{Name: reg, Id: lastSegment(reg)})
		}
		e.devices[reg] = append(e.devices[reg], d)
	}
	for _, b := range doc.Bindings {
		reg := b.Registry
		if reg == "" {
			reg = registry
		}
		e.bindings[reg] = append(e.bindings[reg], Binding{Gateway: b.Gateway, Device: b.Device})
	}
	return e, nil
}

func lastSegment(name string) string { return name[strings.LastIndexByte(name, '/')+1:] }

// Registries implements Source.
func (e *Export) Registries(context.Context) ([]*iotpb.DeviceRegistry, error) {
	return e.registries, nil
}

// Devices implements Source.
func (e *Export) Devices(_ context.Context, registry string) ([]*iotpb.Device, error) {
	return e.devices[registry], nil
}

// Bindings implements Source.
func (e *Export) Bindings(_ context.Context, registry string, _ []*iotpb.Device) ([]Binding, error) {
	return e.bindings[registry], nil
}

// ConfigVersions implements Source: an export holds only the latest.
func (e *Export) ConfigVersions(context.Context, string) ([]*iotpb.DeviceConfig, error) {
	return nil, nil
}
