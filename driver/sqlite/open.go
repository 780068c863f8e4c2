// Package sqlite is the start of millrace's SQLite driver (issue 25 §2): a
// pure-Go (no cgo) database, for running millrace, its demo and users' tests
// with no server.
//
// SQLite has a single writer. Open returns a *sql.DB shaped for that:
// transactions that begin IMMEDIATE (take the database's write lock at
// BEGIN, never upgrade mid-transaction), so every write transaction is
// serialised and a job fetched in one transaction cannot be fetched by
// another; a busy timeout, so a writer waits for the lock rather than
// failing; and WAL journaling, so readers on the pool's other connections
// see the last committed state while a write transaction is open (as
// Postgres' readers do), instead of waiting for it.
//
// New makes the driver (driver.Driver[*sql.Tx]) on such a *sql.DB.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// ErrInvalidPath is wrapped by every error Open returns for a path that
// cannot name or hold a database file.
var ErrInvalidPath = errors.New("sqlite: invalid database path")

// BusyTimeoutMillis is how long a statement waits for a lock held by
// another process before failing with SQLITE_BUSY.
const BusyTimeoutMillis = 5000

// MaxOpenConns bounds the pool Open makes: one writer at a time, and
// readers beside it.
const MaxOpenConns = 4

// Open opens (creating if needed) the SQLite database at path and checks it
// can be written. The directory holding path must exist. ":memory:" is
// refused: with WAL and a pool it would be a different database per
// connection; use a file in a temporary directory instead.
func Open(ctx context.Context, path string) (*sql.DB, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidPath)
	}
	if path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("%w: %q: give a file path (not :memory: or a file: URI)", ErrInvalidPath, path)
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: directory %q: %w", ErrInvalidPath, path, dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w: %q: %q is not a directory", ErrInvalidPath, path, dir)
	}
	if err := checkExisting(path); err != nil {
		return nil, err
	}

	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeoutMillis))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	dsn := (&url.URL{Scheme: "file", Opaque: url.PathEscape(path), RawQuery: q.Encode()}).String()

	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	db.SetMaxOpenConns(MaxOpenConns)
	// A write proves the file can be created and written (Ping alone opens
	// lazily and would not).
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS millrace_sqlite_probe (x INTEGER); DROP TABLE millrace_sqlite_probe`); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %q: %w", ErrInvalidPath, path, err)
	}
	return db, nil
}

// sqliteHeader opens every SQLite database file.
const sqliteHeader = "SQLite format 3\x00"

// checkExisting refuses a path that is a directory or a non-empty file that
// is not a SQLite database (SQLite could otherwise treat a short file as
// empty and write over it).
func checkExisting(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrInvalidPath, path, err)
	}
	if st.IsDir() {
		return fmt.Errorf("%w: %q is a directory", ErrInvalidPath, path)
	}
	if st.Size() == 0 {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrInvalidPath, path, err)
	}
	defer f.Close()
	head := make([]byte, len(sqliteHeader))
	if _, err := io.ReadFull(f, head); err != nil || string(head) != sqliteHeader {
		return fmt.Errorf("%w: %q exists and is not a SQLite database", ErrInvalidPath, path)
	}
	return nil
}
