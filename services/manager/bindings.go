package manager

import (
	"context"

	"cloud.google.com/go/iot/apiv1/iotpb"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// bindingRefs validates the parent, gateway_id and device_id of a
// (un)bind request.
func bindingRefs(parent, gatewayID, deviceID string) (gw, dev store.DeviceRef, err error) {
	key, err := parseRegistryName("parent", parent)
	if err != nil {
		return gw, dev, err
	}
	if gw, err = parseDeviceIDOrNum(key, "gateway_id", gatewayID); err != nil {
		return gw, dev, err
	}
	dev, err = parseDeviceIDOrNum(key, "device_id", deviceID)
	return gw, dev, err
}

// BindDeviceToGateway binds a device to a gateway; binding twice is not an
// error.
func (m *deviceManager) BindDeviceToGateway(ctx context.Context, req *iotpb.BindDeviceToGatewayRequest) (*iotpb.BindDeviceToGatewayResponse, error) {
	gw, dev, err := bindingRefs(req.GetParent(), req.GetGatewayId(), req.GetDeviceId())
	if err != nil {
		return nil, err
	}
	if err := m.store.BindDevice(ctx, gw, dev); err != nil {
		return nil, err
	}
	return &iotpb.BindDeviceToGatewayResponse{}, nil
}

// UnbindDeviceFromGateway removes a binding; NOT_FOUND when there is none.
func (m *deviceManager) UnbindDeviceFromGateway(ctx context.Context, req *iotpb.UnbindDeviceFromGatewayRequest) (*iotpb.UnbindDeviceFromGatewayResponse, error) {
	gw, dev, err := bindingRefs(req.GetParent(), req.GetGatewayId(), req.GetDeviceId())
	if err != nil {
		return nil, err
	}
	if err := m.store.UnbindDevice(ctx, gw, dev); err != nil {
		return nil, err
	}
	return &iotpb.UnbindDeviceFromGatewayResponse{}, nil
}
