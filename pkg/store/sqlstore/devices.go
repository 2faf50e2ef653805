package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// deviceColumns are read in scanDevice's order.
const deviceColumns = `num_id, id, credentials, blocked, metadata, log_level, gateway_type, gateway_auth_method,
	last_accessed_gateway_id, last_accessed_gateway_time, last_heartbeat_time, last_event_time,
	last_state_time, last_config_ack_time, last_config_send_time, last_error_time, last_error_status,
	config_version, config_update_time, config_ack_time, config_data, has_state, state_time, state_data`

// deviceCols are deviceColumns of the table aliased d.
var deviceCols = "d." + strings.Join(strings.Split(strings.ReplaceAll(deviceColumns, "\n\t", " "), ", "), ", d.")

// byID and byNum find one device of a registry; the arguments are those
// of refArgs.
const (
	deviceFrom = ` FROM devices d JOIN registries r ON r.reg_id = d.reg_id
	WHERE r.project = ? AND r.location = ? AND r.id = ? AND `
	byID  = `d.id = ?`
	byNum = `d.num_id = ?`
)

func refCond(ref store.DeviceRef) string {
	if ref.ID != "" {
		return byID
	}
	return byNum
}

func refArgs(ref store.DeviceRef) []any {
	if ref.ID != "" {
		return []any{ref.Registry.Project, ref.Registry.Location, ref.Registry.ID, ref.ID}
	}
	return []any{ref.Registry.Project, ref.Registry.Location, ref.Registry.ID, numArg(ref.NumID)}
}

// numArg converts a numId for SQL; one past int64 matches no device.
func numArg(n uint64) int64 {
	if n > math.MaxInt64 {
		return -1
	}
	return int64(n)
}

func deviceNotFound(ref store.DeviceRef) error {
	if ref.ID != "" {
		return store.Errorf(store.ErrNotFound, "Device '%s' not found in registry '%s'", ref.ID, registryName(ref.Registry))
	}
	return store.Errorf(store.ErrNotFound, "Device with numId %d not found in registry '%s'", ref.NumID, registryName(ref.Registry))
}

// refName names a device in messages.
func refName(ref store.DeviceRef) string {
	if ref.ID != "" {
		return ref.ID
	}
	return "numId " + itoa(ref.NumID)
}

func scanDevice(sc interface{ Scan(...any) error }, reg store.RegistryKey) (*store.Device, error) {
	var (
		d                                             store.Device
		num                                           int64
		creds, meta, lastErr                          string
		blocked, hasState                             int64
		gwTime, hbTime, evTime, stTime, ackTime       int64
		sendTime, errTime, cfgTime, cfgAck, stateTime int64
		stateData                                     []byte
	)
	if err := sc.Scan(&num, &d.ID, &creds, &blocked, &meta, &d.LogLevel, &d.GatewayType, &d.GatewayAuthMethod,
		&d.LastAccessedGatewayID, &gwTime, &hbTime, &evTime, &stTime, &ackTime, &sendTime, &errTime, &lastErr,
		&d.Config.Version, &cfgTime, &cfgAck, &d.Config.Data, &hasState, &stateTime, &stateData); err != nil {
		return nil, err
	}
	d.Registry = reg
	d.NumID = uint64(num)
	d.Blocked = blocked != 0
	if err := unmarshal(creds, &d.Credentials); err != nil {
		return nil, err
	}
	if err := unmarshal(meta, &d.Metadata); err != nil {
		return nil, err
	}
	if err := unmarshal(lastErr, &d.LastErrorStatus); err != nil {
		return nil, err
	}
	d.LastAccessedGatewayTime = tm(gwTime)
	d.LastHeartbeatTime = tm(hbTime)
	d.LastEventTime = tm(evTime)
	d.LastStateTime = tm(stTime)
	d.LastConfigAckTime = tm(ackTime)
	d.LastConfigSendTime = tm(sendTime)
	d.LastErrorTime = tm(errTime)
	d.Config.CloudUpdateTime = tm(cfgTime)
	d.Config.DeviceAckTime = tm(cfgAck)
	if hasState != 0 {
		d.State = &store.DeviceState{UpdateTime: tm(stateTime), Data: stateData}
	}
	return &d, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func checkCredentials(d *store.Device) error {
	if len(d.Credentials) > store.MaxDeviceCredentials {
		return store.Errorf(store.ErrInvalidArgument, "Device '%s' has %d credentials; at most %d are allowed",
			d.ID, len(d.Credentials), store.MaxDeviceCredentials)
	}
	return nil
}

// CreateDevice stores a new device with config version 1.
func (s *Store) CreateDevice(ctx context.Context, d *store.Device, now time.Time) (*store.Device, error) {
	if err := checkCredentials(d); err != nil {
		return nil, err
	}
	var out *store.Device
	err := s.write(ctx, func(x q) error {
		// The key share lock keeps a concurrent DeleteRegistry waiting until
		// this device is committed (and then refusing).
		var regID int64
		err := x.row(`SELECT r.reg_id FROM registries r WHERE r.project = ? AND r.location = ? AND r.id = ?`+
			s.lockShare("r"), d.Registry.Project, d.Registry.Location, d.Registry.ID).Scan(&regID)
		if errors.Is(err, sql.ErrNoRows) {
			return registryNotFound(d.Registry)
		}
		if err != nil {
			return err
		}
		out, err = scanDevice(x.row(`INSERT INTO devices (reg_id, id, credentials, blocked, metadata, log_level,
			gateway_type, gateway_auth_method, last_accessed_gateway_id, last_accessed_gateway_time,
			last_heartbeat_time, last_event_time, last_state_time, last_config_ack_time, last_config_send_time,
			last_error_time, last_error_status, config_version, config_update_time, config_ack_time, config_data,
			last_modify_time, has_state, state_time, state_data)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, 0, ?, 0, 0, 0, NULL)
			RETURNING `+deviceColumns,
			regID, d.ID, marshal(d.Credentials), boolInt(d.Blocked), marshal(d.Metadata), d.LogLevel,
			d.GatewayType, d.GatewayAuthMethod, d.LastAccessedGatewayID, ns(d.LastAccessedGatewayTime),
			ns(d.LastHeartbeatTime), ns(d.LastEventTime), ns(d.LastStateTime), ns(d.LastConfigAckTime),
			ns(d.LastConfigSendTime), ns(d.LastErrorTime), marshal(d.LastErrorStatus), ns(now), d.Config.Data), d.Registry)
		if err != nil {
			return err
		}
		_, err = x.exec(`INSERT INTO configs (device_num, version, cloud_update_time, device_ack_time, data)
			VALUES (?, 1, ?, 0, ?)`, int64(out.NumID), ns(now), d.Config.Data)
		return err
	})
	if isUnique(err) {
		return nil, store.Errorf(store.ErrAlreadyExists, "Device '%s' already exists in registry '%s'", d.ID, registryName(d.Registry))
	}
	if isForeignKey(err) {
		return nil, registryNotFound(d.Registry)
	}
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}

// GetDevice returns a device.
func (s *Store) GetDevice(ctx context.Context, ref store.DeviceRef) (*store.Device, error) {
	d, err := scanDevice(s.reader(ctx).row(`SELECT `+deviceCols+deviceFrom+refCond(ref), refArgs(ref)...), ref.Registry)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, deviceNotFound(ref)
	}
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return d, nil
}

// UpdateDevice reads, changes and writes back a device in one transaction.
func (s *Store) UpdateDevice(ctx context.Context, ref store.DeviceRef, update func(*store.Device) error) (*store.Device, error) {
	var out *store.Device
	var userErr error
	err := s.write(ctx, func(x q) error {
		userErr = nil
		d, err := scanDevice(x.row(`SELECT `+deviceCols+deviceFrom+refCond(ref)+s.lockUpdate("d"), refArgs(ref)...), ref.Registry)
		if errors.Is(err, sql.ErrNoRows) {
			return deviceNotFound(ref)
		}
		if err != nil {
			return err
		}
		keep := *d
		if err := update(d); err != nil {
			userErr = err
			return err
		}
		// What the contract does not let an update change stays.
		d.Registry, d.ID, d.NumID, d.GatewayType = keep.Registry, keep.ID, keep.NumID, keep.GatewayType
		d.Config, d.State = keep.Config, keep.State
		if err := checkCredentials(d); err != nil {
			return err
		}
		if _, err := x.exec(`UPDATE devices SET credentials = ?, blocked = ?, metadata = ?, log_level = ?,
			gateway_auth_method = ?, last_accessed_gateway_id = ?, last_accessed_gateway_time = ?,
			last_heartbeat_time = ?, last_event_time = ?, last_state_time = ?, last_config_ack_time = ?,
			last_config_send_time = ?, last_error_time = ?, last_error_status = ? WHERE num_id = ?`,
			marshal(d.Credentials), boolInt(d.Blocked), marshal(d.Metadata), d.LogLevel, d.GatewayAuthMethod,
			d.LastAccessedGatewayID, ns(d.LastAccessedGatewayTime), ns(d.LastHeartbeatTime), ns(d.LastEventTime),
			ns(d.LastStateTime), ns(d.LastConfigAckTime), ns(d.LastConfigSendTime), ns(d.LastErrorTime),
			marshal(d.LastErrorStatus), int64(d.NumID)); err != nil {
			return err
		}
		// Return what a read would: times at the stored precision.
		out, err = scanDevice(x.row(`SELECT `+deviceCols+` FROM devices d WHERE d.num_id = ?`, int64(d.NumID)), ref.Registry)
		return err
	})
	if userErr != nil {
		return nil, userErr
	}
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}

// DeleteDevice deletes a device with its configs, states and bindings.
func (s *Store) DeleteDevice(ctx context.Context, ref store.DeviceRef) error {
	err := s.write(ctx, func(x q) error {
		var num int64
		var gwType int32
		err := x.row(`SELECT d.num_id, d.gateway_type`+deviceFrom+refCond(ref)+s.lockDelete("d"), refArgs(ref)...).Scan(&num, &gwType)
		if errors.Is(err, sql.ErrNoRows) {
			return deviceNotFound(ref)
		}
		if err != nil {
			return err
		}
		if gwType == store.GatewayTypeGateway {
			var one int
			err := x.row(`SELECT 1 FROM bindings WHERE gateway_num = ? LIMIT 1`, num).Scan(&one)
			if err == nil {
				return store.Errorf(store.ErrFailedPrecondition, "Gateway '%s' still has bound devices; unbind them first", refName(ref))
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		// The bindings go with the device; its gateways count one fewer.
		if _, err := x.exec(`UPDATE devices SET bound_devices = bound_devices - 1
			WHERE num_id IN (SELECT gateway_num FROM bindings WHERE device_num = ?)`, num); err != nil {
			return err
		}
		_, err = x.exec(`DELETE FROM devices WHERE num_id = ?`, num)
		return err
	})
	if isForeignKey(err) {
		return store.Errorf(store.ErrFailedPrecondition, "Gateway '%s' still has bound devices; unbind them first", refName(ref))
	}
	return s.fail(ctx, err)
}

// ListDevices returns the devices matching q, by numId.
func (s *Store) ListDevices(ctx context.Context, dq store.DeviceQuery) ([]*store.Device, error) {
	if dq.Limit <= 0 || dq.AfterNumID >= math.MaxInt64 {
		return nil, nil
	}
	var b strings.Builder
	args := make([]any, 0, 8)
	// With an id list, the "+" keeps SQLite from walking the registry in
	// numId order (its index on num_id) and filtering every device: it
	// looks each id up in the (reg_id, id) index and sorts what it found.
	numID := "d.num_id"
	if len(dq.IDs) > 0 {
		numID = "+d.num_id"
	}
	b.WriteString(`SELECT ` + deviceCols + ` FROM devices d
		WHERE d.reg_id = (SELECT reg_id FROM registries WHERE project = ? AND location = ? AND id = ?)
		AND ` + numID + ` > ?`)
	args = append(args, dq.Registry.Project, dq.Registry.Location, dq.Registry.ID, int64(dq.AfterNumID))
	// Id lists travel as one parameter, so that the statement's text does
	// not depend on their length and it is prepared once.
	if len(dq.IDs) > 0 {
		b.WriteString(` AND ` + s.inList("d.id"))
		args = append(args, s.listArg(dq.IDs))
	}
	if len(dq.NumIDs) > 0 {
		nums := make([]int64, len(dq.NumIDs))
		for i, n := range dq.NumIDs {
			nums[i] = numArg(n)
		}
		b.WriteString(` AND ` + s.inList("d.num_id"))
		args = append(args, s.listArg(nums))
	}
	switch dq.GatewayType {
	case store.GatewayTypeGateway:
		b.WriteString(` AND d.gateway_type = 1`)
	case store.GatewayTypeNonGateway:
		b.WriteString(` AND d.gateway_type <> 1`)
	}
	if g := dq.BoundToGateway; g != nil {
		b.WriteString(` AND d.num_id IN (SELECT b.device_num FROM bindings b JOIN devices g ON g.num_id = b.gateway_num
			WHERE g.reg_id = d.reg_id AND `)
		if g.ID != "" {
			b.WriteString(`g.id = ?)`)
			args = append(args, g.ID)
		} else {
			b.WriteString(`g.num_id = ?)`)
			args = append(args, numArg(g.NumID))
		}
	}
	if dev := dq.GatewaysOfDevice; dev != nil {
		b.WriteString(` AND d.num_id IN (SELECT b.gateway_num FROM bindings b JOIN devices x ON x.num_id = b.device_num
			WHERE x.reg_id = d.reg_id AND `)
		if dev.ID != "" {
			b.WriteString(`x.id = ?)`)
			args = append(args, dev.ID)
		} else {
			b.WriteString(`x.num_id = ?)`)
			args = append(args, numArg(dev.NumID))
		}
	}
	b.WriteString(` ORDER BY ` + numID + ` LIMIT ?`)
	args = append(args, dq.Limit)

	// Few shapes (filters present or not): each is prepared once.
	rows, err := s.reader(ctx).rows(b.String(), args...)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	defer rows.Close()
	out := make([]*store.Device, 0, min(dq.Limit, 1024))
	for rows.Next() {
		d, err := scanDevice(rows, dq.Registry)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}

// unmarshal decodes a JSON column, skipping the decoder for the empty
// values most rows hold (listing 100,000 devices decodes 300,000 columns).
func unmarshal(text string, v any) error {
	switch text {
	case "null", "[]", "{}", "":
		return nil
	}
	return json.Unmarshal([]byte(text), v)
}
