package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
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

// postgresURL returns the test database, skipping the test without one
// (failing it in CI).
func postgresURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("PASSERELLE_TEST_POSTGRES_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("PASSERELLE_TEST_POSTGRES_URL is not set")
		}
		tb.Skip("PASSERELLE_TEST_POSTGRES_URL is not set")
	}
	return u
}

// freshSchema creates an empty schema in the test database, dropped at
// cleanup, and returns a URL whose connections use it, so that tests and
// packages running in parallel never see each other.
func freshSchema(tb testing.TB, base string) string {
	tb.Helper()
	schema := "t_" + randomHex()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		admin, err := sql.Open("pgx", base)
		if err != nil {
			tb.Error(err)
			return
		}
		defer admin.Close()
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			tb.Error(err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func openPostgres(tb testing.TB, base string) *sqlstore.Store {
	tb.Helper()
	s, err := sqlstore.OpenPostgres(context.Background(), discard(), freshSchema(tb, base))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return openSQLite(t) })
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	base := postgresURL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openPostgres(t, base) })
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
	u := freshSchema(t, postgresURL(t))
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
