package storetest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// PostgresEnv names the variable holding the test PostgreSQL server's URL.
const PostgresEnv = "PASSERELLE_TEST_POSTGRES_URL"

// PostgresURL returns a URL to a fresh, empty schema of the test PostgreSQL
// server (PASSERELLE_TEST_POSTGRES_URL), dropped when the test ends, so
// that tests and packages running at once never see each other's rows.
// Without the variable the test is skipped, except under CI=true, where a
// missing server is a failure.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal(PostgresEnv + " is not set under CI=true: the PostgreSQL tests must run")
		}
		tb.Skip(PostgresEnv + " is not set")
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	exec := func(stmt string) error {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.Exec(stmt)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		tb.Fatalf("create a test schema on %s: %v", base, err)
	}
	tb.Cleanup(func() {
		if err := exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			tb.Errorf("drop test schema %s: %v", schema, err)
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
