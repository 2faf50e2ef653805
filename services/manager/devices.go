package manager

import (
	"github.com/passerelle-iot/passerelle/pkg/bus"

	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/passerelle-iot/passerelle/pkg/deviceauth"
	"github.com/passerelle-iot/passerelle/pkg/resource"
	"github.com/passerelle-iot/passerelle/pkg/store"
)

// deviceUpdatePaths are the mutable device fields (compat-spec 3).
var deviceUpdatePaths = []string{"credentials", "blocked", "metadata", "log_level", "gateway_config.gateway_auth_method"}

// CreateDevice creates a device or gateway in a registry. Output-only
// fields given by the caller are ignored.
func (m *deviceManager) CreateDevice(ctx context.Context, req *iotpb.CreateDeviceRequest) (*iotpb.Device, error) {
	key, err := parseRegistryName("parent", req.GetParent())
	if err != nil {
		return nil, err
	}
	in := req.GetDevice()
	if in == nil {
		return nil, invalidf("'device' is required")
	}
	if err := resource.CheckID("device.id", in.GetId()); err != nil {
		return nil, err
	}
	if name := in.GetName(); name != "" && name != req.GetParent()+"/devices/"+in.GetId() {
		return nil, invalidf("'device.name' must be empty or %q, got %q", req.GetParent()+"/devices/"+in.GetId(), name)
	}
	gc := in.GetGatewayConfig()
	if err := checkEnum("device.gateway_config.gateway_type", int32(gc.GetGatewayType()), int32(iotpb.GatewayType_NON_GATEWAY)); err != nil {
		return nil, err
	}
	if err := checkEnum("device.gateway_config.gateway_auth_method", int32(gc.GetGatewayAuthMethod()), int32(iotpb.GatewayAuthMethod_ASSOCIATION_AND_DEVICE_AUTH_TOKEN)); err != nil {
		return nil, err
	}
	if err := checkLogLevel("device.log_level", in.GetLogLevel()); err != nil {
		return nil, err
	}
	if err := checkMetadata(in.GetMetadata()); err != nil {
		return nil, err
	}
	var data []byte
	if c := in.GetConfig(); c != nil {
		if c.GetVersion() != 0 {
			return nil, invalidf("'device.config.version' must be 0 at creation (the first version is 1), got %d", c.GetVersion())
		}
		if len(c.GetBinaryData()) > maxConfigBytes {
			return nil, invalidf("'device.config.binary_data' is %d bytes, at most %d are allowed", len(c.GetBinaryData()), maxConfigBytes)
		}
		data = c.GetBinaryData()
	}
	// The registry's CA certificates decide which credentials are accepted;
	// reading it also answers NOT_FOUND for a missing registry before any
	// credential error.
	reg, err := m.store.GetRegistry(ctx, key)
	if err != nil {
		return nil, err
	}
	creds, err := m.deviceCredentials(reg, in.GetCredentials())
	if err != nil {
		return nil, err
	}
	d, err := m.store.CreateDevice(ctx, &store.Device{
		Registry:          key,
		ID:                in.GetId(),
		Credentials:       creds,
		Blocked:           in.GetBlocked(),
		Metadata:          in.GetMetadata(),
		LogLevel:          int32(in.GetLogLevel()),
		GatewayType:       int32(gc.GetGatewayType()),
		GatewayAuthMethod: int32(gc.GetGatewayAuthMethod()),
		Config:            store.DeviceConfig{Data: data},
	}, m.now())
	if err != nil {
		return nil, err
	}
	return deviceProto(d), nil
}

// deviceCredentials parses and checks a device's credentials against its
// registry.
func (m *deviceManager) deviceCredentials(reg *store.Registry, in []*iotpb.DeviceCredential) ([]store.Credential, error) {
	if len(in) > store.MaxDeviceCredentials {
		return nil, invalidf("'device.credentials' has %d entries, at most %d are allowed", len(in), store.MaxDeviceCredentials)
	}
	var cas []*x509.Certificate
	for i, c := range reg.CACertificates {
		ca, err := deviceauth.ParseCACertificate(c)
		if err != nil {
			// Stored certificates were checked on the way in.
			return nil, fmt.Errorf("registry %s: CA certificate %d: %w", registryName(reg.Key), i, err)
		}
		cas = append(cas, ca)
	}
	now := m.now()
	var out []store.Credential
	for i, c := range in {
		field := fmt.Sprintf("device.credentials[%d]", i)
		pk := c.GetPublicKey()
		if pk == nil {
			return nil, invalidf("'%s.public_key' is required", field)
		}
		k, err := deviceauth.ParseCredential(int32(pk.GetFormat()), pk.GetKey())
		if err != nil {
			return nil, invalidf("'%s.public_key' is invalid: %v", field, err)
		}
		if len(cas) > 0 {
			if err := deviceauth.CheckSignedByRegistry(k, cas, now); err != nil {
				return nil, invalidf("'%s.public_key' is not accepted: %v", field, err)
			}
		}
		cred := store.Credential{Format: int32(pk.GetFormat()), Key: pk.GetKey()}
		if t := c.GetExpirationTime(); t != nil {
			if err := t.CheckValid(); err != nil {
				return nil, invalidf("'%s.expiration_time' is invalid: %v", field, err)
			}
			cred.ExpirationTime = t.AsTime()
		}
		out = append(out, cred)
	}
	return out, nil
}

// GetDevice returns a device; a non-empty field_mask returns only the
// fields it names.
func (m *deviceManager) GetDevice(ctx context.Context, req *iotpb.GetDeviceRequest) (*iotpb.Device, error) {
	ref, err := parseDeviceName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	fds, err := deviceMaskFields("field_mask", req.GetFieldMask())
	if err != nil {
		return nil, err
	}
	d, gen := m.cachedDevice(ctx, ref)
	if d == nil {
		if d, err = m.store.GetDevice(ctx, ref); err != nil {
			return nil, err
		}
		m.cache.put(gen, d)
	}
	full := deviceProto(d)
	if len(fds) == 0 {
		return full, nil
	}
	return maskDevice(full, fds), nil
}

// UpdateDevice changes the fields named in update_mask of the device
// named by device.name.
func (m *deviceManager) UpdateDevice(ctx context.Context, req *iotpb.UpdateDeviceRequest) (*iotpb.Device, error) {
	in := req.GetDevice()
	if in == nil {
		return nil, invalidf("'device' is required")
	}
	ref, err := parseDeviceName("device.name", in.GetName())
	if err != nil {
		return nil, err
	}
	paths := maskPaths(req.GetUpdateMask())
	if len(paths) == 0 {
		return nil, invalidf("'update_mask' is required: name the fields to update (%s)", strings.Join(deviceUpdatePaths, ", "))
	}
	set := map[string]bool{}
	for _, p := range paths {
		if !slices.Contains(deviceUpdatePaths, p) {
			return nil, invalidf("'update_mask' names %q, which cannot be updated: the mutable device fields are %s", p, strings.Join(deviceUpdatePaths, ", "))
		}
		set[p] = true
	}
	var creds []store.Credential
	if set["credentials"] {
		reg, err := m.store.GetRegistry(ctx, ref.Registry)
		if err != nil {
			return nil, err
		}
		if creds, err = m.deviceCredentials(reg, in.GetCredentials()); err != nil {
			return nil, err
		}
	}
	if set["metadata"] {
		if err := checkMetadata(in.GetMetadata()); err != nil {
			return nil, err
		}
	}
	if set["log_level"] {
		if err := checkLogLevel("device.log_level", in.GetLogLevel()); err != nil {
			return nil, err
		}
	}
	authMethod := int32(in.GetGatewayConfig().GetGatewayAuthMethod())
	if set["gateway_config.gateway_auth_method"] {
		if err := checkEnum("device.gateway_config.gateway_auth_method", authMethod, int32(iotpb.GatewayAuthMethod_ASSOCIATION_AND_DEVICE_AUTH_TOKEN)); err != nil {
			return nil, err
		}
	}
	defer m.cache.invalidateRef(ref)
	d, err := m.store.UpdateDevice(ctx, ref, func(d *store.Device) error {
		if set["credentials"] {
			d.Credentials = creds
		}
		if set["blocked"] {
			d.Blocked = in.GetBlocked()
		}
		if set["metadata"] {
			d.Metadata = in.GetMetadata()
		}
		if set["log_level"] {
			d.LogLevel = int32(in.GetLogLevel())
		}
		if set["gateway_config.gateway_auth_method"] {
			d.GatewayAuthMethod = authMethod
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.announce(ctx, bus.DeviceChanged, d.Ref(), nil)
	return deviceProto(d), nil
}

// DeleteDevice deletes a device with its configs, states and bindings.
func (m *deviceManager) DeleteDevice(ctx context.Context, req *iotpb.DeleteDeviceRequest) (*emptypb.Empty, error) {
	ref, err := parseDeviceName("name", req.GetName())
	if err != nil {
		return nil, err
	}
	var gone *store.Device
	if m.bus != nil {
		// Read first: after the delete nothing tells the numId that the
		// bridges know the device by.
		if gone, err = m.store.GetDevice(ctx, ref); err != nil {
			return nil, err
		}
	}
	defer m.cache.invalidateRef(ref)
	if err := m.store.DeleteDevice(ctx, ref); err != nil {
		return nil, err
	}
	if gone != nil {
		m.announce(ctx, bus.DeviceDeleted, gone.Ref(), nil)
	}
	return &emptypb.Empty{}, nil
}

// listFields are the fields ListDevices always returns.
var listFields = []string{"id", "num_id"}

// ListDevices lists a registry's devices by numId, with filters.
func (m *deviceManager) ListDevices(ctx context.Context, req *iotpb.ListDevicesRequest) (*iotpb.ListDevicesResponse, error) {
	key, err := parseRegistryName("parent", req.GetParent())
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	mask := &fieldmaskpb.FieldMask{Paths: append(slices.Clone(listFields), maskPaths(req.GetFieldMask())...)}
	fds, err := deviceMaskFields("field_mask", mask)
	if err != nil {
		return nil, err
	}
	q := store.DeviceQuery{Registry: key, NumIDs: req.GetDeviceNumIds(), Limit: size + 1}
	if n := len(req.GetDeviceNumIds()); n > maxListFilterIDs {
		return nil, invalidf("'device_num_ids' has %d entries, at most %d are allowed", n, maxListFilterIDs)
	}
	if n := len(req.GetDeviceIds()); n > maxListFilterIDs {
		return nil, invalidf("'device_ids' has %d entries, at most %d are allowed", n, maxListFilterIDs)
	}
	for i, id := range req.GetDeviceIds() {
		if err := resource.CheckID(fmt.Sprintf("device_ids[%d]", i), id); err != nil {
			return nil, err
		}
	}
	q.IDs = req.GetDeviceIds()
	// The query text binds page tokens to these filters.
	var qb strings.Builder
	fmt.Fprintf(&qb, "devices\x00%s\x00ids:%s\x00nums:", registryName(key), strings.Join(q.IDs, ","))
	for _, n := range q.NumIDs {
		qb.WriteString(strconv.FormatUint(n, 10) + ",")
	}
	switch f := req.GetGatewayListOptions().GetFilter().(type) {
	case nil:
	case *iotpb.GatewayListOptions_GatewayType:
		if err := checkEnum("gateway_list_options.gateway_type", int32(f.GatewayType), int32(iotpb.GatewayType_NON_GATEWAY)); err != nil {
			return nil, err
		}
		q.GatewayType = int32(f.GatewayType)
		fmt.Fprintf(&qb, "\x00type:%d", q.GatewayType)
	case *iotpb.GatewayListOptions_AssociationsGatewayId:
		ref, err := parseDeviceIDOrNum(key, "gateway_list_options.associations_gateway_id", f.AssociationsGatewayId)
		if err != nil {
			return nil, err
		}
		q.BoundToGateway = &ref
		fmt.Fprintf(&qb, "\x00gw:%s", f.AssociationsGatewayId)
	case *iotpb.GatewayListOptions_AssociationsDeviceId:
		ref, err := parseDeviceIDOrNum(key, "gateway_list_options.associations_device_id", f.AssociationsDeviceId)
		if err != nil {
			return nil, err
		}
		q.GatewaysOfDevice = &ref
		fmt.Fprintf(&qb, "\x00dev:%s", f.AssociationsDeviceId)
	}
	pos, err := m.decodePageToken(qb.String(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if q.AfterNumID, err = positionNumID(pos); err != nil {
		return nil, err
	}
	ds, err := m.store.ListDevices(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		// Nothing listed: as Cloud IoT, say so when the registry itself
		// does not exist, rather than list it as empty.
		if _, err := m.store.GetRegistry(ctx, key); err != nil {
			return nil, err
		}
	}
	resp := &iotpb.ListDevicesResponse{}
	if len(ds) > size {
		ds = ds[:size]
		resp.NextPageToken = m.encodePageToken(qb.String(), numIDPosition(ds[size-1].NumID))
	}
	for _, d := range ds {
		resp.Devices = append(resp.Devices, maskDevice(deviceProto(d), fds))
	}
	return resp, nil
}
