// Package pgxv5 is millrace's Postgres driver, built on
// github.com/jackc/pgx/v5 and its pgxpool.
//
// Jobs are inserted with one multi-row statement (unnest of arrays) or with
// COPY, outcomes are recorded many per statement, and the listener holds one
// dedicated connection. Statements are cached by pgx (prepared once per
// connection, with pgx's default query mode), and their text is rendered
// once per schema.
//
//	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	...
//	drv := pgxv5.New(pool)
//
// # Behind PgBouncer in transaction mode
//
// A pooler in transaction mode (PgBouncer's pool_mode = transaction) gives
// each transaction whichever server connection is free, so prepared
// statements and LISTEN, which live in a server session, do not work
// through it: with pgx's defaults every statement fails sooner or later
// with `prepared statement "stmtcache_..." does not exist`. Declare the
// pooler with NewWithOptions, set a query mode that prepares nothing in
// the session, and either give the listener a direct connection or poll:
//
//	cfg, err := pgxpool.ParseConfig(os.Getenv("PGBOUNCER_URL"))
//	...
//	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
//	pool, err := pgxpool.NewWithConfig(ctx, cfg)
//	...
//	direct, err := pgx.ParseConfig(os.Getenv("DATABASE_URL")) // not through PgBouncer
//	...
//	drv, err := pgxv5.NewWithOptions(pool, &pgxv5.Options{Pooler: true, ListenerConfig: direct})
//
// or Options{Pooler: true, PollOnly: true} when no direct connection can
// be had: clients then poll for jobs (client.Config.FetchPollInterval),
// and for pauses, resumes and cancels (every 2 s). Everything else works
// as usual: the fetch and the completer's write, sent as one pipelined
// batch, are one implicit transaction, which transaction mode keeps on one
// server connection. Set the client's Config.Schema (PgBouncer rejects
// search_path as a startup parameter unless told to ignore it).
package pgxv5

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/internal/pgexec"
)

// Driver is the pgx/v5 driver. Make one with New or NewWithOptions.
type Driver struct {
	pool *pgxpool.Pool
	sql  *pgexec.SQLCache
	// listenConfig is the listener's connection configuration; nil means
	// the pool's.
	listenConfig *pgx.ConnConfig
	// noListen is set for a driver that must not listen (Options.PollOnly).
	noListen bool
}

var _ driver.Driver[pgx.Tx] = (*Driver)(nil)

// New returns a driver on a pool. A nil pool gives a driver that can only
// work inside transactions passed to UnwrapExecutor (enough to insert jobs),
// not run a client that works jobs.
func New(pool *pgxpool.Pool) *Driver {
	return &Driver{pool: pool, sql: pgexec.NewSQLCache()}
}

// Options configure a driver made with NewWithOptions. The zero value
// gives the same driver as New.
type Options struct {
	// Pooler declares that the pool connects through a connection pooler
	// in transaction mode, such as PgBouncer with pool_mode = transaction,
	// which hands each transaction (each statement outside one) whichever
	// server connection is free. Nothing that lives in a server session
	// survives from one transaction to the next there, so:
	//
	//   - the pool's ConnConfig.DefaultQueryExecMode must not keep prepared
	//     statements in the session: pgx's default, QueryExecModeCacheStatement
	//     (which fails with `prepared statement "stmtcache_..." does not
	//     exist`), and QueryExecModeDescribeExec are refused;
	//     QueryExecModeExec (default_query_exec_mode=exec in the URL),
	//     QueryExecModeSimpleProtocol and QueryExecModeCacheDescribe work;
	//   - LISTEN cannot go through the pooler: set ListenerConfig to a
	//     direct connection, or PollOnly.
	Pooler bool

	// ListenerConfig is the configuration of the listener's dedicated
	// connection, made by pgx.ParseConfig. Behind a pooler it must reach
	// Postgres directly (not through the pooler), and when the client's
	// schema is empty its search_path must name the same schema as the
	// pool's connections, since notification channels are named after it.
	// Default: the pool's connection configuration (not allowed with
	// Pooler).
	ListenerConfig *pgx.ConnConfig

	// PollOnly makes a driver that never listens: SupportsListener is
	// false and clients poll for new jobs, queue changes and cancels
	// (every client.Config.FetchPollInterval for jobs, every 2 s for the
	// rest). It cannot be combined with ListenerConfig.
	PollOnly bool
}

// NewWithOptions returns a driver on a pool, configured by opts (nil means
// the defaults, as New). Unlike New it needs a pool. It returns an error
// when the options contradict each other or the pool: a pool declared
// behind a pooler that caches prepared statements in the session, or that
// would listen through the pooler.
func NewWithOptions(pool *pgxpool.Pool, opts *Options) (*Driver, error) {
	if pool == nil {
		return nil, errors.New("pgxv5: NewWithOptions needs a pool (use New(nil) for a driver that only works inside transactions)")
	}
	if opts == nil {
		opts = &Options{}
	}
	d := New(pool)
	if opts.ListenerConfig != nil {
		if opts.PollOnly {
			return nil, errors.New("pgxv5: Options.PollOnly and Options.ListenerConfig contradict each other: a poll-only driver has no listener")
		}
		// pgx.ParseConfig always sets a query mode; a literal has none, and
		// connecting with it would panic.
		if opts.ListenerConfig.DefaultQueryExecMode == 0 {
			return nil, errors.New("pgxv5: Options.ListenerConfig was not made by pgx.ParseConfig, which pgx requires")
		}
		d.listenConfig = opts.ListenerConfig.Copy()
	}
	d.noListen = opts.PollOnly
	if opts.Pooler {
		switch mode := pool.Config().ConnConfig.DefaultQueryExecMode; mode {
		case pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec:
			return nil, fmt.Errorf("pgxv5: the pool is declared behind a pooler in transaction mode (Options.Pooler), but its DefaultQueryExecMode is %v, which needs prepared statements to stay in a server session (behind PgBouncer it fails with `prepared statement \"stmtcache_...\" does not exist`); set ConnConfig.DefaultQueryExecMode to pgx.QueryExecModeExec (default_query_exec_mode=exec in the connection string) or pgx.QueryExecModeSimpleProtocol", queryExecModeName(mode))
		}
		if opts.ListenerConfig == nil && !opts.PollOnly {
			return nil, errors.New("pgxv5: the pool is declared behind a pooler in transaction mode (Options.Pooler), which cannot carry LISTEN; set Options.ListenerConfig to a direct connection to Postgres (not through the pooler) for LISTEN, or Options.PollOnly to poll instead")
		}
	}
	return d, nil
}

// queryExecModeName returns the connection-string name of a query mode.
func queryExecModeName(m pgx.QueryExecMode) string {
	switch m {
	case pgx.QueryExecModeCacheStatement:
		return "cache_statement (pgx's default)"
	case pgx.QueryExecModeCacheDescribe:
		return "cache_describe"
	case pgx.QueryExecModeDescribeExec:
		return "describe_exec"
	case pgx.QueryExecModeExec:
		return "exec"
	case pgx.QueryExecModeSimpleProtocol:
		return "simple_protocol"
	}
	return fmt.Sprintf("QueryExecMode(%d)", int32(m))
}

// GetExecutor returns an executor on the pool. Without a pool, every call
// of the executor fails with an error.
func (d *Driver) GetExecutor() driver.Executor {
	if d.pool == nil {
		// A nil *pgxpool.Pool in the DB interface is not a nil interface:
		// it would panic on first use.
		return pgexec.NewExecutor(pgexec.FailDB{Err: errNoPool}, d.sql)
	}
	return pgexec.NewExecutor(pgexec.PoolDB{Pool: d.pool}, d.sql)
}

// errNoPool is what the executor of a driver without a pool returns.
var errNoPool = errors.New("pgxv5: driver has no pool (made with New(nil)); use UnwrapExecutor with a transaction")

// UnwrapExecutor returns an executor inside tx. The caller still owns tx.
func (d *Driver) UnwrapExecutor(tx pgx.Tx) driver.ExecutorTx {
	return pgexec.NewExecutorTx(pgexec.PgxTx{Tx: tx}, d.sql, true)
}

// UnwrapTx returns the pgx.Tx behind an executor made by this driver.
func (d *Driver) UnwrapTx(tx driver.ExecutorTx) (pgx.Tx, error) {
	etx, ok := tx.(*pgexec.ExecutorTx)
	if ok {
		if ptx, ok := etx.Tx().(pgexec.PgxTx); ok {
			return ptx.Tx, nil
		}
	}
	return nil, fmt.Errorf("pgxv5: executor of type %T was not made by this driver", tx)
}

// GetListener returns a listener that will open its own connection with
// Options.ListenerConfig, or else the pool's configuration.
func (d *Driver) GetListener(schema string) (driver.Listener, error) {
	if d.pool == nil {
		return nil, errors.New("pgxv5: a driver without a pool cannot listen")
	}
	if d.noListen {
		return nil, errors.New("pgxv5: the driver was made with Options.PollOnly and cannot listen")
	}
	config := d.listenConfig
	if config == nil {
		config = d.pool.Config().ConnConfig
	}
	return pgexec.NewListener(config, schema), nil
}

// SupportsListener is true when the driver has a pool and was not made
// with Options.PollOnly.
func (d *Driver) SupportsListener() bool { return d.pool != nil && !d.noListen }

// PoolIsSet reports whether the driver has a pool.
func (d *Driver) PoolIsSet() bool { return d.pool != nil }
