// Package sqlstore implements store.Store on SQLite (modernc.org/sqlite, no
// cgo) and PostgreSQL (github.com/jackc/pgx/v5) with one set of queries.
//
// The two back ends differ in how they keep the invariants that span rows.
// SQLite allows one writer per file, so every write transaction runs on a
// single connection with BEGIN IMMEDIATE and is alone by construction; reads
// use a separate pool and see WAL snapshots. PostgreSQL serves several
// processes at once, so write transactions lock the rows they depend on
// (always in num_id order, to avoid deadlocks) before checking a limit.
package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// Open opens the store named by databaseURL and brings its schema up to
// date: a postgres:// or postgresql:// URL opens PostgreSQL, a file path
// (optionally prefixed with sqlite: or file:) a SQLite file. Any other
// scheme is refused (CheckURL).
func Open(ctx context.Context, logger *slog.Logger, databaseURL string) (store.Store, error) {
	if err := CheckURL(databaseURL); err != nil {
		return nil, err
	}
	if IsPostgresURL(databaseURL) {
		return OpenPostgres(ctx, logger, databaseURL)
	}
	path := strings.TrimPrefix(strings.TrimPrefix(databaseURL, "sqlite:"), "file:")
	return OpenSQLite(ctx, logger, path)
}

// IsPostgresURL reports whether databaseURL names a PostgreSQL database.
func IsPostgresURL(databaseURL string) bool {
	return strings.HasPrefix(databaseURL, "postgres://") || strings.HasPrefix(databaseURL, "postgresql://")
}

// acceptedForms is what CheckURL's errors list.
const acceptedForms = "postgres://user@host:5432/db?sslmode=disable (or postgresql://), or a SQLite file path (optionally sqlite:PATH or file:PATH)"

// CheckURL checks a database URL as Open reads it, without opening
// anything: a PostgreSQL URL must parse, and a URL of any other scheme
// (postgress://, mysql://) is refused rather than taken for a SQLite file
// name.
func CheckURL(databaseURL string) error {
	if databaseURL == "" {
		return errors.New("the database URL is empty: give " + acceptedForms)
	}
	if IsPostgresURL(databaseURL) {
		if _, err := pgconn.ParseConfig(databaseURL); err != nil {
			return fmt.Errorf("the PostgreSQL URL does not parse: %w", err)
		}
		return nil
	}
	if scheme, _, ok := strings.Cut(databaseURL, "://"); ok && isScheme(scheme) {
		return fmt.Errorf("the database URL's scheme %q is not supported: give %s", scheme+"://", acceptedForms)
	}
	return nil
}

// isScheme reports whether s is a URL scheme (RFC 3986 §3.1).
func isScheme(s string) bool {
	if s == "" || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// dialect holds what differs between the back ends.
type dialect struct {
	name string
	// lockUpdate and lockShare end a SELECT that must lock the rows it
	// reads until the end of the transaction; they are empty on SQLite,
	// whose write transactions are serialized anyway. The %s is the alias
	// of the table to lock.
	lockUpdate string
	lockShare  string
	lockDelete string
	// numbered placeholders ($1) instead of ?.
	numbered bool
	// cacheStmts prepares static queries once per connection (PostgreSQL's
	// pgx driver already caches them itself).
	cacheStmts bool
}

var (
	sqliteDialect   = dialect{name: "sqlite", cacheStmts: true}
	postgresDialect = dialect{name: "postgres", lockUpdate: " FOR NO KEY UPDATE OF %s", lockShare: " FOR KEY SHARE OF %s", lockDelete: " FOR UPDATE OF %s", numbered: true}
)

// Store is a store.Store on a SQL database.
type Store struct {
	logger  *slog.Logger
	dialect dialect
	// wdb runs write transactions, rdb reads; they are the same pool on
	// PostgreSQL.
	wdb, rdb *sql.DB

	// SQLite's group commit (batch.go); nil on PostgreSQL.
	ops         chan writeOp
	closing     chan struct{}
	batcherDone chan struct{}
	closeOnce   sync.Once

	stmts   sync.Map // stmtKey -> *sql.Stmt
	rebinds sync.Map // string -> string
}

type stmtKey struct {
	db    *sql.DB
	query string
}

var _ store.Store = (*Store)(nil)

// OpenSQLite opens (creating if needed) the SQLite database file at path.
// Writes are durable when acknowledged: the journal is a WAL synced at every
// commit (synchronous=FULL).
func OpenSQLite(ctx context.Context, logger *slog.Logger, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlstore: empty SQLite path")
	}
	base := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"
	wdb, err := sql.Open("sqlite", base+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	// One writer: concurrent writers queue for the connection instead of
	// failing with SQLITE_BUSY.
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	// Set WAL before any reader opens the file.
	if err := wdb.PingContext(ctx); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	rdb, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	rdb.SetConnMaxLifetime(0)
	rdb.SetConnMaxIdleTime(0)
	s := &Store{logger: logger, dialect: sqliteDialect, wdb: wdb, rdb: rdb}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.ops = make(chan writeOp)
	s.closing = make(chan struct{})
	s.batcherDone = make(chan struct{})
	go s.batcher()
	return s, nil
}

// OpenPostgres connects to the PostgreSQL database at url. Several
// processes may open the same database at once: schema migrations run under
// an advisory lock.
func OpenPostgres(ctx context.Context, logger *slog.Logger, url string) (*Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open PostgreSQL: %w", err)
	}
	n := max(8, 4*runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: connect to PostgreSQL: %w", err)
	}
	s := &Store{logger: logger, dialect: postgresDialect, wdb: db, rdb: db}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the store's connections.
func (s *Store) Close() error {
	if s.ops != nil {
		s.closeOnce.Do(func() { close(s.closing) })
		<-s.batcherDone
	}
	err := s.wdb.Close()
	if s.rdb != s.wdb {
		err = errors.Join(err, s.rdb.Close())
	}
	return err
}

// rebind turns ? placeholders into $n for PostgreSQL. Queries never hold a
// literal question mark.
func (s *Store) rebind(q string) string {
	if !s.dialect.numbered {
		return q
	}
	if v, ok := s.rebinds.Load(q); ok {
		return v.(string)
	}
	r := rebindNumbered(q)
	s.rebinds.Store(q, r)
	return r
}

func rebindNumbered(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// lockUpdate returns the clause that locks the rows of alias for update.
func (s *Store) lockUpdate(alias string) string {
	if s.dialect.lockUpdate == "" {
		return ""
	}
	return fmt.Sprintf(s.dialect.lockUpdate, alias)
}

// lockDelete returns the clause that locks the rows of alias against
// every other lock, key share locks included.
func (s *Store) lockDelete(alias string) string {
	if s.dialect.lockDelete == "" {
		return ""
	}
	return fmt.Sprintf(s.dialect.lockDelete, alias)
}

// lockShare returns the clause that keeps the rows of alias from being
// deleted or their key changed.
func (s *Store) lockShare(alias string) string {
	if s.dialect.lockShare == "" {
		return ""
	}
	return fmt.Sprintf(s.dialect.lockShare, alias)
}

// q runs queries on a pool or inside a transaction, with cached prepared
// statements for the static ones. Inside a transaction a statement is
// taken from the cache only: preparing it on the pool from there would
// wait for a second connection, which the single SQLite writer does not
// have. Those the cache lacks run unprepared and are noted in missed, to
// be prepared on the pool once the transaction is over.
type q struct {
	s      *Store
	db     *sql.DB
	tx     *sql.Tx
	ctx    context.Context
	missed *[]string
}

func (s *Store) reader(ctx context.Context) q { return q{s: s, db: s.rdb, ctx: ctx} }

// inTx returns a q running in tx on db, which noting what the cache lacks.
func (s *Store) inTx(ctx context.Context, db *sql.DB, tx *sql.Tx) q {
	return q{s: s, db: db, tx: tx, ctx: ctx, missed: new([]string)}
}

// prepareMissed prepares on the pool the statements x's transaction ran
// unprepared, for the next transactions to reuse. Call it once x's
// transaction has ended.
func (x q) prepareMissed() {
	if x.missed == nil {
		return
	}
	for _, query := range *x.missed {
		_, _ = q{s: x.s, db: x.db, ctx: context.WithoutCancel(x.ctx)}.stmt(query)
	}
	*x.missed = nil
}

func (x q) stmt(query string) (*sql.Stmt, error) {
	key := stmtKey{x.db, query}
	if v, ok := x.s.stmts.Load(key); ok {
		return v.(*sql.Stmt), nil
	}
	st, err := x.db.PrepareContext(x.ctx, x.s.rebind(query))
	if err != nil {
		return nil, err
	}
	if v, loaded := x.s.stmts.LoadOrStore(key, st); loaded {
		st.Close()
		return v.(*sql.Stmt), nil
	}
	return st, nil
}

// prepared returns the prepared statement for a static query, or nil to run
// it unprepared (a dialect whose driver caches statements itself, a
// transaction the cache cannot serve yet, a query that does not prepare:
// running it unprepared reports why).
func (x q) prepared(query string) *sql.Stmt {
	if !x.s.dialect.cacheStmts {
		return nil
	}
	if x.tx == nil {
		st, err := x.stmt(query)
		if err != nil {
			return nil
		}
		return st
	}
	v, ok := x.s.stmts.Load(stmtKey{x.db, query})
	if !ok {
		if x.missed != nil {
			*x.missed = append(*x.missed, query)
		}
		return nil
	}
	// Reuses the statement already prepared on the transaction's
	// connection, or prepares it there; closed with the transaction.
	return x.tx.StmtContext(x.ctx, v.(*sql.Stmt))
}

// row runs a static query expected to return one row.
func (x q) row(query string, args ...any) *sql.Row {
	if st := x.prepared(query); st != nil {
		return st.QueryRowContext(x.ctx, args...)
	}
	if x.tx != nil {
		return x.tx.QueryRowContext(x.ctx, x.s.rebind(query), args...)
	}
	return x.db.QueryRowContext(x.ctx, x.s.rebind(query), args...)
}

// rows runs a static query. Inside a transaction it runs unprepared: the
// driver keeps one SQLite statement per prepared statement and connection,
// so the same query run again while its rows are open would fail.
func (x q) rows(query string, args ...any) (*sql.Rows, error) {
	if x.tx == nil {
		if st := x.prepared(query); st != nil {
			return st.QueryContext(x.ctx, args...)
		}
	}
	if x.tx != nil {
		return x.tx.QueryContext(x.ctx, x.s.rebind(query), args...)
	}
	return x.db.QueryContext(x.ctx, x.s.rebind(query), args...)
}

// inList is the condition "col is one of a list" with the list as one
// parameter (listArg): a JSON array on SQLite, an array on PostgreSQL.
func (s *Store) inList(col string) string {
	if s.dialect.name == "postgres" {
		return col + " = ANY(?)"
	}
	return col + " IN (SELECT value FROM json_each(?))"
}

// listArg is the parameter of an inList condition.
func (s *Store) listArg(list any) any {
	if s.dialect.name == "postgres" {
		return list // pgx sends []string and []int64 as arrays
	}
	b, err := json.Marshal(list)
	if err != nil { // strings and integers always encode
		panic(err)
	}
	return string(b)
}

// exec runs a static statement.
func (x q) exec(query string, args ...any) (sql.Result, error) {
	if st := x.prepared(query); st != nil {
		return st.ExecContext(x.ctx, args...)
	}
	if x.tx != nil {
		return x.tx.ExecContext(x.ctx, x.s.rebind(query), args...)
	}
	return x.db.ExecContext(x.ctx, x.s.rebind(query), args...)
}

// write runs fn in a write transaction and commits it. PostgreSQL deadlocks
// and serialization failures are retried: the transaction saw nothing.
func (s *Store) write(ctx context.Context, fn func(x q) error) error {
	if s.ops != nil {
		return s.writeBatched(ctx, fn)
	}
	for attempt := 0; ; attempt++ {
		err := s.writeOnce(ctx, fn)
		if err != nil && attempt < 5 && s.retryable(err) && ctx.Err() == nil {
			s.logger.DebugContext(ctx, "retrying transaction", "error", err, "attempt", attempt+1)
			continue
		}
		return err
	}
}

func (s *Store) writeOnce(ctx context.Context, fn func(x q) error) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(ctx, err)
	}
	x := s.inTx(ctx, s.wdb, tx)
	defer x.prepareMissed()
	if err := fn(x); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return s.fail(ctx, err)
	}
	return nil
}

// read runs fn in a read-only snapshot. On SQLite every statement sees a
// consistent WAL snapshot already; a transaction keeps several of them
// consistent with each other.
func (s *Store) read(ctx context.Context, fn func(x q) error) error {
	opts := &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	if s.dialect.name == "sqlite" {
		opts = nil // the driver takes neither option; BEGIN DEFERRED is a snapshot
	}
	tx, err := s.rdb.BeginTx(ctx, opts)
	if err != nil {
		return s.fail(ctx, err)
	}
	x := s.inTx(ctx, s.rdb, tx)
	defer x.prepareMissed() // deferred first: runs after the rollback
	defer tx.Rollback()
	if err := fn(x); err != nil {
		return err
	}
	return nil
}

func (s *Store) retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return false
}

// isUnique reports a unique or primary key violation.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// isForeignKey reports a foreign key violation.
func isForeignKey(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23503"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}

// fail turns a back end error into the store's: context errors pass through
// unwrapped, store errors as they are, anything else is wrapped.
func (s *Store) fail(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if errors.Is(err, context.Canceled) {
			return context.Canceled
		}
		return context.DeadlineExceeded
	}
	var se *store.Error
	if errors.As(err, &se) {
		return err
	}
	if s.dialect.name == "postgres" && unreachable(err) {
		return fmt.Errorf("sqlstore %s: %w: %w", s.dialect.name, store.ErrUnavailable, err)
	}
	return fmt.Errorf("sqlstore %s: %w", s.dialect.name, err)
}

// unreachable reports whether a PostgreSQL error means the server cannot
// be reached or is going away (it is down, restarting, or the network is
// cut), rather than a query it refused.
func unreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01-57P03: the server is
		// shutting down, crashed, or still starting.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Ping implements store.Store: it asks the database for an answer
// (PostgreSQL: a round trip on a pooled connection; SQLite: the file is
// open).
//
// After PostgreSQL restarts, the pool's connections are dead. pgx pings a
// connection idle for more than a second before reusing it and drops it
// when the ping fails (database/sql then takes another or dials), so after
// an outage of a second or more the first calls succeed
// (TestPostgresGoesAwayAndComesBack); a call made on a connection used
// within the last second fails once with ErrUnavailable and closes it.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.wdb.PingContext(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("sqlstore %s: %w: no answer in time (%v)", s.dialect.name, store.ErrUnavailable, ctx.Err())
		}
		return fmt.Errorf("sqlstore %s: %w: %w", s.dialect.name, store.ErrUnavailable, err)
	}
	return nil
}

// registryName is the full resource name used in messages.
func registryName(k store.RegistryKey) string {
	return "projects/" + k.Project + "/locations/" + k.Location + "/registries/" + k.ID
}

// ns stores a time as Unix nanoseconds, 0 for the zero time.
func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// tm is the inverse of ns.
func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
