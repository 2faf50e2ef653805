package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// resolve finds a device's numId and gateway type without locking it.
func (s *Store) resolve(x q, ref store.DeviceRef) (int64, int32, error) {
	var num int64
	var gwType int32
	err := x.row(`SELECT d.num_id, d.gateway_type`+deviceFrom+refCond(ref), refArgs(ref)...).Scan(&num, &gwType)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, deviceNotFound(ref)
	}
	return num, gwType, err
}

// lockPair locks two device rows in numId order, so that transactions
// locking overlapping pairs never deadlock; false when one is gone.
func (s *Store) lockPair(x q, a, b int64) (bool, error) {
	if s.dialect.lockUpdate == "" {
		return true, nil
	}
	if a > b {
		a, b = b, a
	}
	n := 0
	for _, num := range []int64{a, b} {
		var got int64
		err := x.row(`SELECT d.num_id FROM devices d WHERE d.num_id = ?`+s.lockUpdate("d"), num).Scan(&got)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return false, err
		}
		n++
	}
	return n == 2, nil
}

// BindDevice binds a device to a gateway of the same registry.
func (s *Store) BindDevice(ctx context.Context, gateway, device store.DeviceRef) error {
	if gateway.Registry != device.Registry {
		return store.Errorf(store.ErrInvalidArgument, "Gateway '%s' and device '%s' are in different registries",
			refName(gateway), refName(device))
	}
	err := s.write(ctx, func(x q) error {
		gNum, gType, err := s.resolve(x, gateway)
		if err != nil {
			return err
		}
		dNum, dType, err := s.resolve(x, device)
		if err != nil {
			return err
		}
		if gType != store.GatewayTypeGateway {
			return store.Errorf(store.ErrInvalidArgument, "Device '%s' is not a gateway", refName(gateway))
		}
		if dType == store.GatewayTypeGateway {
			return store.Errorf(store.ErrInvalidArgument, "Device '%s' is a gateway; gateways cannot be bound to gateways", refName(device))
		}
		// Both rows stay locked until commit: binders of the same device or
		// the same gateway count one after the other.
		ok, err := s.lockPair(x, gNum, dNum)
		if err != nil {
			return err
		}
		if !ok {
			return store.Errorf(store.ErrNotFound, "Gateway '%s' or device '%s' was deleted", refName(gateway), refName(device))
		}
		var one int
		err = x.row(`SELECT 1 FROM bindings WHERE gateway_num = ? AND device_num = ?`, gNum, dNum).Scan(&one)
		if err == nil {
			return nil // already bound
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var n int
		if err := x.row(`SELECT COUNT(*) FROM bindings WHERE device_num = ?`, dNum).Scan(&n); err != nil {
			return err
		}
		if n >= store.MaxGatewaysPerDevice {
			return store.Errorf(store.ErrResourceExhausted, "Device '%s' is bound to %d gateways, the maximum", refName(device), n)
		}
		if err := x.row(`SELECT bound_devices FROM devices WHERE num_id = ?`, gNum).Scan(&n); err != nil {
			return err
		}
		if n >= store.MaxDevicesPerGateway {
			return store.Errorf(store.ErrResourceExhausted, "Gateway '%s' has %d bound devices, the maximum", refName(gateway), n)
		}
		if _, err = x.exec(`INSERT INTO bindings (gateway_num, device_num) VALUES (?, ?)`, gNum, dNum); err != nil {
			return err
		}
		_, err = x.exec(`UPDATE devices SET bound_devices = bound_devices + 1 WHERE num_id = ?`, gNum)
		return err
	})
	if isUnique(err) {
		return nil // bound concurrently: binding twice is not an error
	}
	return s.fail(ctx, err)
}

// UnbindDevice removes a binding.
func (s *Store) UnbindDevice(ctx context.Context, gateway, device store.DeviceRef) error {
	err := s.write(ctx, func(x q) error {
		gNum, _, err := s.resolve(x, gateway)
		if err != nil {
			return err
		}
		dNum, _, err := s.resolve(x, device)
		if err != nil {
			return err
		}
		res, err := x.exec(`DELETE FROM bindings WHERE gateway_num = ? AND device_num = ?`, gNum, dNum)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.Errorf(store.ErrNotFound, "Device '%s' is not bound to gateway '%s'", refName(device), refName(gateway))
		}
		_, err = x.exec(`UPDATE devices SET bound_devices = bound_devices - 1 WHERE num_id = ?`, gNum)
		return err
	})
	return s.fail(ctx, err)
}
