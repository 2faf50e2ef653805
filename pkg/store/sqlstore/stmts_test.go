package sqlstore

import (
	"context"
	"io"
	"log/slog"
	"testing"
)

// TestStatementsInTransactions: a static query first run inside a
// transaction is prepared on the pool afterwards and reused by the next
// transactions; a query may run again while its own rows are open.
func TestStatementsInTransactions(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), t.TempDir()+"/db.sqlite")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const query = `SELECT version FROM schema_migrations WHERE version >= ? ORDER BY version`
	cached := func() bool {
		_, ok := s.stmts.Load(stmtKey{s.rdb, query})
		return ok
	}
	nested := func() error {
		return s.read(ctx, func(x q) error {
			rows, err := x.rows(query, 0)
			if err != nil {
				return err
			}
			defer rows.Close()
			n := 0
			for ; rows.Next(); n++ {
				var v, w int
				if err := rows.Scan(&v); err != nil {
					return err
				}
				if err := x.row(query, v).Scan(&w); err != nil {
					return err
				}
			}
			if n == 0 {
				t.Error("no migrations listed")
			}
			return rows.Err()
		})
	}
	if cached() {
		t.Fatal("the query is cached before any use")
	}
	if err := nested(); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if !cached() {
		t.Fatal("a query run in a transaction was not prepared afterwards")
	}
	if err := nested(); err != nil {
		t.Fatalf("second run, with the query prepared: %v", err)
	}
}
