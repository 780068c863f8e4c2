package sqlite

import (
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	msqlite "modernc.org/sqlite"

	"github.com/millrace/millrace/driver"
)

// ErrNoListener is wrapped by GetListener's error: SQLite has no
// LISTEN/NOTIFY, so clients on this driver poll.
var ErrNoListener = errors.New("sqlite: no LISTEN/NOTIFY: clients on SQLite poll")

//go:embed migrations/main/*.sql migrations/millrace/*.sql
var migrations embed.FS

// Driver is millrace's driver for a SQLite database opened with Open. Its
// native transaction type is *sql.Tx.
type Driver struct {
	db *sql.DB
}

var (
	_ driver.Driver[*sql.Tx]   = (*Driver)(nil)
	_ driver.MigrationProvider = (*Driver)(nil)
)

// New returns a driver on db, which must come from Open (its settings make
// every transaction take SQLite's write lock at BEGIN, which the driver's
// read-modify-write methods rely on); on a *sql.DB of another database/sql
// driver every call fails with ErrWrongDB. A nil db gives a driver that works
// only inside transactions passed to UnwrapExecutor.
func New(db *sql.DB) *Driver { return &Driver{db: db} }

// GetExecutor implements driver.Driver.
func (d *Driver) GetExecutor() driver.Executor {
	if d.db == nil {
		return &executor{q: failQuerier{}, fail: errors.New("sqlite: driver has no *sql.DB")}
	}
	if _, ok := d.db.Driver().(*msqlite.Driver); !ok {
		// Its SQL is SQLite's: on another database it would fail with
		// that database's syntax errors, statement by statement.
		return &executor{q: failQuerier{}, fail: fmt.Errorf("%w: the *sql.DB is of database/sql driver %T, not modernc.org/sqlite's: open it with sqlite.Open",
			ErrWrongDB, d.db.Driver())}
	}
	return &executor{q: d.db, db: d.db}
}

// ErrWrongDB is wrapped by every call of a driver made on a *sql.DB that
// another database/sql driver opened (use Open).
var ErrWrongDB = errors.New("sqlite: not a SQLite database handle")

// UnwrapExecutor implements driver.Driver: the executor runs in tx, which
// the caller ends.
func (d *Driver) UnwrapExecutor(tx *sql.Tx) driver.ExecutorTx {
	if tx == nil {
		return &executorTx{executor: executor{q: failQuerier{}, fail: errors.New("sqlite: nil *sql.Tx")}, borrowed: true}
	}
	return &executorTx{executor: executor{q: tx, tx: tx}, borrowed: true}
}

// UnwrapTx implements driver.Driver. For an executor made inside a
// savepoint it returns the enclosing *sql.Tx.
func (d *Driver) UnwrapTx(tx driver.ExecutorTx) (*sql.Tx, error) {
	t, ok := tx.(*executorTx)
	if !ok || t.tx == nil {
		return nil, fmt.Errorf("sqlite: UnwrapTx of a %T not made by this driver", tx)
	}
	return t.tx, nil
}

// GetListener implements driver.Driver: it always fails with an error
// wrapping ErrNoListener.
func (d *Driver) GetListener(string) (driver.Listener, error) { return nil, ErrNoListener }

// SupportsListener implements driver.Driver: false, SQLite has no
// LISTEN/NOTIFY.
func (d *Driver) SupportsListener() bool { return false }

// PoolIsSet implements driver.Driver.
func (d *Driver) PoolIsSet() bool { return d.db != nil }

// MigrationFS implements driver.MigrationProvider: the SQLite translation
// of migration lines main and millrace.
func (d *Driver) MigrationFS() fs.FS {
	// fs.Sub fails only for an invalid path name; on failure the nil
	// result makes package migrate report a missing line.
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// SingleWriter implements driver.SingleWriter: true, SQLite has one
// writer at a time and no row locks.
func (d *Driver) SingleWriter() bool { return true }
