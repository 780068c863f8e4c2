// Package databasesql is millrace's driver for a *sql.DB of pgx's stdlib
// (github.com/jackc/pgx/v5/stdlib), for applications that reach Postgres
// through database/sql (Bun, GORM, sqlx): jobs are inserted, completed and
// administered inside the application's own *sql.Tx.
//
//	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
//	...
//	drv, err := databasesql.New(db, nil)
//	...
//	c, err := client.New(drv, &client.Config{...})
//	...
//	tx, err := db.BeginTx(ctx, nil)
//	...
//	_, err = c.InsertTx(ctx, tx, args, nil)
//	...
//	err = tx.Commit()
//
// It runs the same statements as driver/pgxv5 (package
// driver/internal/pgexec holds them), through database/sql. What differs:
//
//   - JobInsertCopy inserts with one multi-row INSERT from arrays instead
//     of COPY (database/sql has no COPY); a unique-key conflict fails it
//     all the same.
//   - The fetch and the completer's write are sent, on the pool, as one
//     pipelined batch on a connection taken from the *sql.DB (through
//     sql.Conn.Raw), exactly as pgxv5 sends them on its pool.
//   - Only a *sql.DB whose driver is pgx/v5's stdlib is accepted (New
//     fails on any other): arrays are passed to pgx as they are, and rows
//     are read with pgx's types. Transactions given to UnwrapExecutor must
//     come from such a *sql.DB too (database/sql cannot tell where a
//     *sql.Tx comes from; another driver's fails on its first statement).
//   - LISTEN needs a pgx connection: set Options.ListenerConfig (made by
//     pgx.ParseConfig, connecting to the same database). Without it the
//     driver cannot listen (SupportsListener is false) and clients poll:
//     for new jobs every client.Config.FetchPollInterval, for pauses,
//     resumes and cancels every 2 s.
//   - UnwrapTx of an executor made inside a savepoint (Begin on a
//     transaction's executor) returns the enclosing *sql.Tx: database/sql
//     has no type for a savepoint.
package databasesql

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/internal/pgexec"
)

// Driver is the database/sql driver. Make one with New.
type Driver struct {
	db  *sql.DB
	sql *pgexec.SQLCache
	// listenConfig is the listener's connection configuration; nil means
	// the driver polls.
	listenConfig *pgx.ConnConfig
}

var _ driver.Driver[*sql.Tx] = (*Driver)(nil)

// Options configure a driver. The zero value (or nil) gives a driver that
// polls.
type Options struct {
	// ListenerConfig is the configuration of the listener's dedicated pgx
	// connection, made by pgx.ParseConfig with the connection string of
	// the *sql.DB (a direct connection to Postgres, not through a pooler
	// in transaction mode). When the client's schema is empty its
	// search_path must name the same schema as the *sql.DB's connections,
	// since notification channels are named after it. Nil: no listener,
	// clients poll.
	ListenerConfig *pgx.ConnConfig
}

// New returns a driver on db, a *sql.DB of pgx/v5's stdlib (sql.Open with
// "pgx" or "pgx/v5", stdlib.OpenDB, stdlib.OpenDBFromPool). A nil db gives
// a driver that can only work inside transactions passed to
// UnwrapExecutor (enough to insert and complete jobs there), not run a
// client that works jobs. opts may be nil.
//
// It returns an error when db's driver is not pgx/v5's stdlib, or when
// opts.ListenerConfig was not made by pgx.ParseConfig.
func New(db *sql.DB, opts *Options) (*Driver, error) {
	if opts == nil {
		opts = &Options{}
	}
	if db != nil {
		if _, ok := db.Driver().(*stdlib.Driver); !ok {
			return nil, fmt.Errorf("databasesql: the *sql.DB's driver is %T, not pgx/v5's stdlib: open it with sql.Open(\"pgx\", url) after importing github.com/jackc/pgx/v5/stdlib, or with stdlib.OpenDB (millrace passes arrays to pgx and reads rows with pgx's types, which no other database/sql driver accepts)", db.Driver())
		}
	}
	d := &Driver{db: db, sql: pgexec.NewSQLCache()}
	if opts.ListenerConfig != nil {
		if db == nil {
			return nil, errors.New("databasesql: Options.ListenerConfig needs a *sql.DB: a driver without one cannot run a client that listens")
		}
		// pgx.ParseConfig always sets a query mode; a literal has none, and
		// connecting with it would panic.
		if opts.ListenerConfig.DefaultQueryExecMode == 0 {
			return nil, errors.New("databasesql: Options.ListenerConfig was not made by pgx.ParseConfig, which pgx requires")
		}
		d.listenConfig = opts.ListenerConfig.Copy()
	}
	return d, nil
}

// GetExecutor returns an executor on the *sql.DB. Without one, every call
// of the executor fails with an error.
func (d *Driver) GetExecutor() driver.Executor {
	if d.db == nil {
		return pgexec.NewExecutor(pgexec.FailDB{Err: errNoDB}, d.sql)
	}
	return pgexec.NewExecutor(&poolDB{db: d.db}, d.sql)
}

// errNoDB is what the executor of a driver without a *sql.DB returns.
var errNoDB = errors.New("databasesql: driver has no *sql.DB (made with New(nil, ...)); use UnwrapExecutor with a transaction")

// errNilTx is what the executor of UnwrapExecutor(nil) returns.
var errNilTx = errors.New("databasesql: UnwrapExecutor was given a nil *sql.Tx")

// UnwrapExecutor returns an executor inside tx. The caller still owns tx:
// the executor's Commit and Rollback do nothing. A nil tx gives an
// executor whose every call fails.
func (d *Driver) UnwrapExecutor(tx *sql.Tx) driver.ExecutorTx {
	if tx == nil {
		return pgexec.NewExecutorTx(pgexec.FailDB{Err: errNilTx}, d.sql, true)
	}
	return pgexec.NewExecutorTx(newTxDB(tx), d.sql, true)
}

// UnwrapTx returns the *sql.Tx behind an executor made by a databasesql
// driver (for a savepoint, its enclosing transaction).
func (d *Driver) UnwrapTx(tx driver.ExecutorTx) (*sql.Tx, error) {
	if etx, ok := tx.(*pgexec.ExecutorTx); ok {
		if t, ok := etx.Tx().(*txDB); ok {
			return t.tx, nil
		}
	}
	return nil, fmt.Errorf("databasesql: executor of type %T was not made by this driver", tx)
}

// GetListener returns a listener that will open its own pgx connection
// with Options.ListenerConfig. Without it, it returns an error: the
// driver polls.
func (d *Driver) GetListener(schema string) (driver.Listener, error) {
	if d.listenConfig == nil {
		return nil, errors.New("databasesql: the driver has no Options.ListenerConfig and cannot listen; clients poll")
	}
	return pgexec.NewListener(d.listenConfig, schema), nil
}

// SupportsListener is true when Options.ListenerConfig was set.
func (d *Driver) SupportsListener() bool { return d.listenConfig != nil }

// PoolIsSet reports whether the driver has a *sql.DB.
func (d *Driver) PoolIsSet() bool { return d.db != nil }
