package manager

import (
	"github.com/passerelle-iot/passerelle/pkg/bus"

	"context"
	"time"

	"cloud.google.com/go/iot/apiv1/iotpb"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// minConfigInterval is Cloud IoT's limit of one config update per second
// per device.
const minConfigInterval = time.Second

// ModifyCloudToDeviceConfig writes a device's next config version.
func (m *deviceManager) ModifyCloudToDeviceConfig(ctx context.Context, req *iotpb.ModifyCloudToDeviceConfigRequest) (*iotpb.DeviceConfig, error) {
	ref, err := parseDeviceName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	if n := len(req.GetBinaryData()); n > maxConfigBytes {
		return nil, invalidf("'binary_data' is %d bytes, at most %d are allowed", n, maxConfigBytes)
	}
	if v := req.GetVersionToUpdate(); v < 0 {
		return nil, invalidf("'version_to_update' must not be negative, got %d", v)
	}
	defer m.cache.invalidateRef(ref)
	c, err := m.store.ModifyConfig(ctx, ref, store.ConfigUpdate{
		VersionToUpdate: req.GetVersionToUpdate(),
		Data:            req.GetBinaryData(),
		Now:             m.now(),
		MinInterval:     minConfigInterval,
	})
	if err != nil {
		return nil, err
	}
	var announced *bus.AnnouncedConfig
	if len(c.Data) <= maxAnnouncedConfigBytes {
		announced = &bus.AnnouncedConfig{Version: c.Version, Data: c.Data}
	}
	m.announce(ctx, bus.ConfigChanged, c.Device, announced)
	return configProto(c.DeviceConfig), nil
}

// ListDeviceConfigVersions lists a device's kept config versions, newest
// first.
func (m *deviceManager) ListDeviceConfigVersions(ctx context.Context, req *iotpb.ListDeviceConfigVersionsRequest) (*iotpb.ListDeviceConfigVersionsResponse, error) {
	ref, err := parseDeviceName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	if n := req.GetNumVersions(); n < 0 {
		return nil, invalidf("'num_versions' must not be negative, got %d", n)
	}
	cs, err := m.store.ListConfigs(ctx, ref, int(req.GetNumVersions()))
	if err != nil {
		return nil, err
	}
	resp := &iotpb.ListDeviceConfigVersionsResponse{}
	for _, c := range cs {
		resp.DeviceConfigs = append(resp.DeviceConfigs, configProto(c))
	}
	return resp, nil
}

// ListDeviceStates lists a device's kept states, newest first.
func (m *deviceManager) ListDeviceStates(ctx context.Context, req *iotpb.ListDeviceStatesRequest) (*iotpb.ListDeviceStatesResponse, error) {
	ref, err := parseDeviceName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	if n := req.GetNumStates(); n < 0 {
		return nil, invalidf("'num_states' must not be negative, got %d", n)
	}
	ss, err := m.store.ListStates(ctx, ref, int(req.GetNumStates()))
	if err != nil {
		return nil, err
	}
	resp := &iotpb.ListDeviceStatesResponse{}
	for _, s := range ss {
		resp.DeviceStates = append(resp.DeviceStates, stateProto(s))
	}
	return resp, nil
}

// SendCommandToDevice hands a command to the bridge holding the device's
// connection. Commands are not stored: with no router, or no connection,
// the answer is FAILED_PRECONDITION.
func (m *deviceManager) SendCommandToDevice(ctx context.Context, req *iotpb.SendCommandToDeviceRequest) (*iotpb.SendCommandToDeviceResponse, error) {
	ref, err := parseDeviceName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	if n := len(req.GetBinaryData()); n > maxCommandBytes {
		return nil, invalidf("'binary_data' is %d bytes, at most %d are allowed", n, maxCommandBytes)
	}
	if err := checkCommandSubfolder(req.GetSubfolder()); err != nil {
		return nil, err
	}
	d, err := m.store.GetDevice(ctx, ref)
	if err != nil {
		return nil, err
	}
	if m.commands == nil {
		return nil, preconditionf("Device '%s' is not connected", d.ID)
	}
	if err := m.commands.SendCommand(ctx, d, req.GetBinaryData(), req.GetSubfolder()); err != nil {
		return nil, err
	}
	return &iotpb.SendCommandToDeviceResponse{}, nil
}
