package sqlstore_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/store/storetest"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openSQLite(tb testing.TB) *sqlstore.Store {
	tb.Helper()
	s, err := sqlstore.OpenSQLite(context.Background(), discard(), filepath.Join(tb.TempDir(), "passerelle.db"))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func openPostgres(tb testing.TB) *sqlstore.Store {
	tb.Helper()
	s, err := sqlstore.OpenPostgres(context.Background(), discard(), storetest.PostgresURL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return openSQLite(t) })
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.PostgresURL(t) // skips without a server
	storetest.Run(t, func(t *testing.T) store.Store { return openPostgres(t) })
}

func TestOpenDispatch(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{filepath.Join(dir, "a.db"), "sqlite:" + filepath.Join(dir, "b.db"), "file:" + filepath.Join(dir, "c.db")} {
		s, err := sqlstore.Open(t.Context(), discard(), u)
		if err != nil {
			t.Fatalf("Open(%q): %v", u, err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}
	// Reopening applies no migration twice and keeps the data.
	path := filepath.Join(dir, "d.db")
	s, err := sqlstore.Open(t.Context(), discard(), path)
	if err != nil {
		t.Fatal(err)
	}
	key := store.RegistryKey{Project: "p", Location: "l", ID: "r"}
	if err := s.CreateRegistry(t.Context(), &store.Registry{Key: key}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = sqlstore.Open(t.Context(), discard(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetRegistry(t.Context(), key); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresConcurrentOpen starts several stores on one empty schema at
// once, as the processes of a fleet do: the migration runs once and every
// store works.
func TestPostgresConcurrentOpen(t *testing.T) {
	t.Parallel()
	u := storetest.PostgresURL(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := sqlstore.Open(t.Context(), discard(), u)
			if err == nil {
				_, err = s.ListRegistries(t.Context(), "p", "l", "", 1)
				err = errors.Join(err, s.Close())
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
