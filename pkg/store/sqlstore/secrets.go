package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
)

// Secret implements store.Store. The first writer's random value wins; a
// process racing it reads that value back.
func (s *Store) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	if size <= 0 {
		return nil, fmt.Errorf("sqlstore: secret %q of %d bytes", name, size)
	}
	var value []byte
	err := s.reader(ctx).row(`SELECT value FROM secrets WHERE name = ?`, name).Scan(&value)
	if err == nil {
		return value, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, s.fail(ctx, fmt.Errorf("secret %q: %w", name, err))
	}
	made := make([]byte, size)
	_, _ = rand.Read(made) // never fails (Go 1.24+)
	err = s.write(ctx, func(x q) error {
		if _, err := x.exec(`INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, made); err != nil {
			return err
		}
		return x.row(`SELECT value FROM secrets WHERE name = ?`, name).Scan(&value)
	})
	if err != nil {
		return nil, s.fail(ctx, fmt.Errorf("secret %q: %w", name, err))
	}
	return value, nil
}
