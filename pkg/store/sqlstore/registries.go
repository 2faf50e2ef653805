package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"maps"
	"slices"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

const registryCols = `r.reg_id, r.project, r.location, r.id, r.event_configs, r.state_topic,
	r.mqtt_state, r.http_state, r.log_level, r.ca_certs`

func scanRegistry(sc interface{ Scan(...any) error }) (int64, *store.Registry, error) {
	var (
		regID           int64
		r               store.Registry
		events, caCerts string
	)
	if err := sc.Scan(&regID, &r.Key.Project, &r.Key.Location, &r.Key.ID, &events, &r.StateNotificationTopic,
		&r.MQTTEnabledState, &r.HTTPEnabledState, &r.LogLevel, &caCerts); err != nil {
		return 0, nil, err
	}
	if err := json.Unmarshal([]byte(events), &r.EventNotificationConfigs); err != nil {
		return 0, nil, err
	}
	if err := json.Unmarshal([]byte(caCerts), &r.CACertificates); err != nil {
		return 0, nil, err
	}
	return regID, &r, nil
}

func marshal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs, slices and maps of strings are marshalled.
		panic("sqlstore: marshal: " + err.Error())
	}
	return string(b)
}

func registryNotFound(k store.RegistryKey) error {
	return store.Errorf(store.ErrNotFound, "Registry '%s' not found", registryName(k))
}

// CreateRegistry stores a new registry.
func (s *Store) CreateRegistry(ctx context.Context, r *store.Registry) error {
	err := s.write(ctx, func(x q) error {
		_, err := x.exec(`INSERT INTO registries (project, location, id, event_configs, state_topic,
			mqtt_state, http_state, log_level, ca_certs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Key.Project, r.Key.Location, r.Key.ID, marshal(r.EventNotificationConfigs), r.StateNotificationTopic,
			r.MQTTEnabledState, r.HTTPEnabledState, r.LogLevel, marshal(r.CACertificates))
		return err
	})
	if isUnique(err) {
		return store.Errorf(store.ErrAlreadyExists, "Registry '%s' already exists", registryName(r.Key))
	}
	return s.fail(ctx, err)
}

// GetRegistry returns a registry.
func (s *Store) GetRegistry(ctx context.Context, key store.RegistryKey) (*store.Registry, error) {
	_, r, err := scanRegistry(s.reader(ctx).row(`SELECT `+registryCols+` FROM registries r
		WHERE r.project = ? AND r.location = ? AND r.id = ?`, key.Project, key.Location, key.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, registryNotFound(key)
	}
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return r, nil
}

// UpdateRegistry reads, changes and writes back a registry in one transaction.
func (s *Store) UpdateRegistry(ctx context.Context, key store.RegistryKey, update func(*store.Registry) error) (*store.Registry, error) {
	var out *store.Registry
	var userErr error
	err := s.write(ctx, func(x q) error {
		userErr = nil
		regID, r, err := scanRegistry(x.row(`SELECT `+registryCols+` FROM registries r
			WHERE r.project = ? AND r.location = ? AND r.id = ?`+s.lockUpdate("r"), key.Project, key.Location, key.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return registryNotFound(key)
		}
		if err != nil {
			return err
		}
		if err := update(r); err != nil {
			userErr = err
			return err
		}
		r.Key = key
		if _, err := x.exec(`UPDATE registries SET event_configs = ?, state_topic = ?, mqtt_state = ?,
			http_state = ?, log_level = ?, ca_certs = ? WHERE reg_id = ?`,
			marshal(r.EventNotificationConfigs), r.StateNotificationTopic, r.MQTTEnabledState,
			r.HTTPEnabledState, r.LogLevel, marshal(r.CACertificates), regID); err != nil {
			return err
		}
		out = r
		return nil
	})
	if userErr != nil {
		return nil, userErr
	}
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}

// DeleteRegistry deletes an empty registry.
func (s *Store) DeleteRegistry(ctx context.Context, key store.RegistryKey) error {
	err := s.write(ctx, func(x q) error {
		// The update lock waits for device creations in progress (they hold
		// a key share lock on the registry row) and keeps new ones out.
		var regID int64
		err := x.row(`SELECT r.reg_id FROM registries r WHERE r.project = ? AND r.location = ? AND r.id = ?`+
			s.lockDelete("r"), key.Project, key.Location, key.ID).Scan(&regID)
		if errors.Is(err, sql.ErrNoRows) {
			return registryNotFound(key)
		}
		if err != nil {
			return err
		}
		var one int
		err = x.row(`SELECT 1 FROM devices WHERE reg_id = ? LIMIT 1`, regID).Scan(&one)
		if err == nil {
			return store.Errorf(store.ErrFailedPrecondition, "Registry '%s' still has devices; delete them first", registryName(key))
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = x.exec(`DELETE FROM registries WHERE reg_id = ?`, regID)
		return err
	})
	if isForeignKey(err) {
		return store.Errorf(store.ErrFailedPrecondition, "Registry '%s' still has devices; delete them first", registryName(key))
	}
	return s.fail(ctx, err)
}

// ListRegistries lists the registries of a project and location by id.
func (s *Store) ListRegistries(ctx context.Context, project, location, afterID string, limit int) ([]*store.Registry, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.reader(ctx).rows(`SELECT `+registryCols+` FROM registries r
		WHERE r.project = ? AND r.location = ? AND r.id > ? ORDER BY r.id LIMIT ?`, project, location, afterID, limit)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	defer rows.Close()
	var out []*store.Registry
	for rows.Next() {
		_, r, err := scanRegistry(rows)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, err)
	}
	return out, nil
}

// NotificationTopics lists, sorted and once each, the Pub/Sub topics that
// registries name as event or state notification topics (the Pub/Sub API
// serves them as existing topics).
func (s *Store) NotificationTopics(ctx context.Context) ([]string, error) {
	rows, err := s.reader(ctx).rows(`SELECT ` + registryCols + ` FROM registries r`)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		_, r, err := scanRegistry(rows)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		for _, c := range r.EventNotificationConfigs {
			seen[c.PubsubTopicName] = true
		}
		seen[r.StateNotificationTopic] = true
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, err)
	}
	delete(seen, "")
	return slices.Sorted(maps.Keys(seen)), nil
}
