package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// ModifyConfig writes a device's next config version.
func (s *Store) ModifyConfig(ctx context.Context, ref store.DeviceRef, u store.ConfigUpdate) (*store.ConfigChange, error) {
	var out *store.ConfigChange
	err := s.write(ctx, func(x q) error {
		var num, version, lastModify int64
		var id string
		err := x.row(`SELECT d.num_id, d.id, d.config_version, d.last_modify_time`+deviceFrom+refCond(ref)+s.lockUpdate("d"),
			refArgs(ref)...).Scan(&num, &id, &version, &lastModify)
		if errors.Is(err, sql.ErrNoRows) {
			return deviceNotFound(ref)
		}
		if err != nil {
			return err
		}
		if u.VersionToUpdate != 0 && u.VersionToUpdate != version {
			return store.Errorf(store.ErrFailedPrecondition, "Config version mismatch: the current version is %d, the request expected %d",
				version, u.VersionToUpdate)
		}
		now := ns(u.Now)
		if u.MinInterval > 0 && lastModify != 0 && now-lastModify < int64(u.MinInterval) {
			return store.Errorf(store.ErrResourceExhausted, "Config of device '%s' updated too often: at most one update every %s",
				refName(ref), u.MinInterval)
		}
		version++
		if _, err := x.exec(`UPDATE devices SET config_version = ?, config_update_time = ?, config_ack_time = 0,
			config_data = ?, last_modify_time = ? WHERE num_id = ?`, version, now, u.Data, now, num); err != nil {
			return err
		}
		if _, err := x.exec(`INSERT INTO configs (device_num, version, cloud_update_time, device_ack_time, data)
			VALUES (?, ?, ?, 0, ?)`, num, version, now, u.Data); err != nil {
			return err
		}
		if _, err := x.exec(`DELETE FROM configs WHERE device_num = ? AND version <= ?`,
			num, version-store.KeptConfigVersions); err != nil {
			return err
		}
		out = &store.ConfigChange{
			DeviceConfig: store.DeviceConfig{Version: version, CloudUpdateTime: tm(now), Data: u.Data},
			Device:       store.DeviceRef{Registry: ref.Registry, ID: id, NumID: uint64(num)},
		}
		return nil
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}

// AckConfig records a device's acknowledgement of a config version.
func (s *Store) AckConfig(ctx context.Context, ref store.DeviceRef, version int64, at time.Time) error {
	err := s.write(ctx, func(x q) error {
		var num int64
		err := x.row(`SELECT d.num_id`+deviceFrom+refCond(ref)+s.lockUpdate("d"), refArgs(ref)...).Scan(&num)
		if errors.Is(err, sql.ErrNoRows) {
			return deviceNotFound(ref)
		}
		if err != nil {
			return err
		}
		return ackConfig(x, num, version, ns(at))
	})
	return s.fail(ctx, err)
}

// ackConfig records an acknowledgement of config version by device num at
// t (Unix nanoseconds). The times only move forward: bridges with their
// own clocks and delays may report acks out of order.
func ackConfig(x q, num, version, t int64) error {
	if _, err := x.exec(`UPDATE devices SET
		last_config_ack_time = CASE WHEN ? > last_config_ack_time THEN ? ELSE last_config_ack_time END,
		config_ack_time = CASE WHEN config_version = ? AND ? > config_ack_time THEN ? ELSE config_ack_time END
		WHERE num_id = ?`, t, t, version, t, t, num); err != nil {
		return err
	}
	_, err := x.exec(`UPDATE configs SET device_ack_time = ? WHERE device_num = ? AND version = ? AND device_ack_time < ?`,
		t, num, version, t)
	return err
}

// ListConfigs returns config versions, newest first.
func (s *Store) ListConfigs(ctx context.Context, ref store.DeviceRef, limit int) ([]store.DeviceConfig, error) {
	if limit <= 0 {
		limit = store.KeptConfigVersions
	}
	var out []store.DeviceConfig
	err := s.read(ctx, func(x q) error {
		num, _, err := s.resolve(x, ref)
		if err != nil {
			return err
		}
		rows, err := x.rows(`SELECT version, cloud_update_time, device_ack_time, data FROM configs
			WHERE device_num = ? ORDER BY version DESC LIMIT ?`, num, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c store.DeviceConfig
			var upd, ack int64
			if err := rows.Scan(&c.Version, &upd, &ack, &c.Data); err != nil {
				return err
			}
			c.CloudUpdateTime, c.DeviceAckTime = tm(upd), tm(ack)
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}

// AddState stores a state report as the device's latest.
func (s *Store) AddState(ctx context.Context, ref store.DeviceRef, st store.DeviceState) error {
	err := s.write(ctx, func(x q) error {
		var num int64
		err := x.row(`SELECT d.num_id`+deviceFrom+refCond(ref)+s.lockUpdate("d"), refArgs(ref)...).Scan(&num)
		if errors.Is(err, sql.ErrNoRows) {
			return deviceNotFound(ref)
		}
		if err != nil {
			return err
		}
		// A report that reached the store after a later one (through
		// another bridge) goes into the history in its place, and is not
		// the device's latest state.
		t := ns(st.UpdateTime)
		// (SET expressions read the row as it was.)
		if _, err := x.exec(`UPDATE devices SET has_state = 1,
			state_data = CASE WHEN has_state = 0 OR state_time <= ? THEN ? ELSE state_data END,
			state_time = CASE WHEN has_state = 0 OR state_time <= ? THEN ? ELSE state_time END,
			last_state_time = CASE WHEN ? > last_state_time THEN ? ELSE last_state_time END
			WHERE num_id = ?`, t, st.Data, t, t, t, t, num); err != nil {
			return err
		}
		if _, err := x.exec(`INSERT INTO states (device_num, update_time, data) VALUES (?, ?, ?)`, num, t, st.Data); err != nil {
			return err
		}
		_, err = x.exec(`DELETE FROM states WHERE device_num = ? AND seq NOT IN (SELECT seq FROM states
			WHERE device_num = ? ORDER BY update_time DESC, seq DESC LIMIT ?)`, num, num, store.KeptStates)
		return err
	})
	return s.fail(ctx, err)
}

// ListStates returns states, newest first.
func (s *Store) ListStates(ctx context.Context, ref store.DeviceRef, limit int) ([]store.DeviceState, error) {
	if limit <= 0 {
		limit = store.KeptStates
	}
	var out []store.DeviceState
	err := s.read(ctx, func(x q) error {
		num, _, err := s.resolve(x, ref)
		if err != nil {
			return err
		}
		rows, err := x.rows(`SELECT update_time, data FROM states WHERE device_num = ? ORDER BY update_time DESC, seq DESC LIMIT ?`, num, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var st store.DeviceState
			var t int64
			if err := rows.Scan(&t, &st.Data); err != nil {
				return err
			}
			st.UpdateTime = tm(t)
			out = append(out, st)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}
