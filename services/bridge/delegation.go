package bridge

import (
	"context"
	"errors"
	"fmt"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// Gateway auth methods, numerically iotpb.GatewayAuthMethod.
const (
	authAssociationOnly  = 1
	authDeviceTokenOnly  = 2
	authAssociationToken = 3
)

// errBindingUnread marks a delegation refused because the store could not
// be read (a front end answers "unavailable", not "refused").
var errBindingUnread = errors.New("the binding could not be read")

// checkDelegation is compat-spec section 7's rule for a gateway acting for
// a device, shared by MQTT attach and the HTTP bridge's gatewayInfo: dev
// must be an unblocked non-gateway, and the gateway's auth method decides
// whether the binding (gateway to dev) and the device's own token are
// checked. It returns nil when the gateway may act for dev, else why not
// (for the device or the gateway to read): an error that wraps
// errBindingUnread when the binding could not be read, and
// deviceauth.ErrInvalidJWT when the device's token was refused.
func (b *Bridge) checkDelegation(ctx context.Context, gw store.DeviceRef, method int32, dev *store.Device, token string) error {
	switch {
	case dev.Blocked:
		return errors.New("the device is blocked")
	case dev.GatewayType == store.GatewayTypeGateway:
		return errors.New("a gateway cannot be attached to a gateway")
	}
	checkBinding := method == authAssociationOnly || method == authAssociationToken
	checkToken := method == authDeviceTokenOnly || method == authAssociationToken
	if !checkBinding && !checkToken {
		return errors.New("the gateway's gatewayAuthMethod is unspecified: no device may use it")
	}
	if checkBinding {
		bound, err := b.st.ListDevices(ctx, store.DeviceQuery{
			Registry: gw.Registry, NumIDs: []uint64{dev.NumID}, BoundToGateway: &gw, Limit: 1,
		})
		if err != nil {
			return errBindingUnread
		}
		if len(bound) == 0 {
			return errors.New("the device is not bound to the gateway")
		}
	}
	if checkToken {
		now := b.opts.now()
		keys, _ := b.activeKeys(dev, now)
		if _, err := b.jwt.Verify(token, keys, gw.Registry.Project, now); err != nil {
			return fmt.Errorf("the device's token was refused: %w", err)
		}
	}
	return nil
}
