// Package pgxv5 is millrace's Postgres driver, built on
// github.com/jackc/pgx/v5 and its pgxpool.
//
// Jobs are inserted with one multi-row statement (unnest of arrays) or with
// COPY, outcomes are recorded many per statement, and the listener holds one
// dedicated connection. Statements are cached by pgx (prepared once per
// connection), and their text is rendered once per schema.
//
//	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	...
//	drv := pgxv5.New(pool)
package pgxv5

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver"
)

// Driver is the pgx/v5 driver. Make one with New.
type Driver struct {
	pool *pgxpool.Pool
	sql  *sqlCache
}

var _ driver.Driver[pgx.Tx] = (*Driver)(nil)

// New returns a driver on a pool. A nil pool gives a driver that can only
// work inside transactions passed to UnwrapExecutor (enough to insert jobs),
// not run a client that works jobs.
func New(pool *pgxpool.Pool) *Driver {
	return &Driver{pool: pool, sql: newSQLCache()}
}

// GetExecutor returns an executor on the pool. Without a pool, every call
// of the executor fails with an error.
func (d *Driver) GetExecutor() driver.Executor {
	if d.pool == nil {
		// A nil *pgxpool.Pool stored in the dbtx interface is not a nil
		// interface: it would panic on first use.
		return &executor{db: noPool{}, sql: d.sql}
	}
	return &executor{db: d.pool, sql: d.sql, pool: d.pool}
}

// errNoPool is what the executor of a driver without a pool returns.
var errNoPool = errors.New("pgxv5: driver has no pool (made with New(nil)); use UnwrapExecutor with a transaction")

// noPool is the dbtx of a driver without a pool: every call fails.
type noPool struct{}

func (noPool) Begin(context.Context) (pgx.Tx, error) { return nil, errNoPool }
func (noPool) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, errNoPool
}
func (noPool) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, errNoPool }
func (noPool) QueryRow(context.Context, string, ...any) pgx.Row        { return noPoolRow{} }
func (noPool) CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error) {
	return 0, errNoPool
}

type noPoolRow struct{}

func (noPoolRow) Scan(...any) error { return errNoPool }

// UnwrapExecutor returns an executor inside tx. The caller still owns tx.
func (d *Driver) UnwrapExecutor(tx pgx.Tx) driver.ExecutorTx {
	return &executorTx{executor: executor{db: tx, sql: d.sql, pool: d.pool}, tx: tx, borrowed: true}
}

// UnwrapTx returns the pgx.Tx behind an executor made by this driver.
func (d *Driver) UnwrapTx(tx driver.ExecutorTx) (pgx.Tx, error) {
	etx, ok := tx.(*executorTx)
	if !ok {
		return nil, fmt.Errorf("pgxv5: executor of type %T was not made by this driver", tx)
	}
	return etx.tx, nil
}

// GetListener returns a listener that will open its own connection with the
// pool's configuration.
func (d *Driver) GetListener(schema string) (driver.Listener, error) {
	if d.pool == nil {
		return nil, errors.New("pgxv5: a driver without a pool cannot listen")
	}
	return &listener{config: d.pool.Config().ConnConfig.Copy(), schema: schema}, nil
}

// SupportsListener is true when the driver has a pool.
func (d *Driver) SupportsListener() bool { return d.pool != nil }

// PoolIsSet reports whether the driver has a pool.
func (d *Driver) PoolIsSet() bool { return d.pool != nil }

// dbtx is what a pool and a transaction have in common.
type dbtx interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

type executor struct {
	db   dbtx
	sql  *sqlCache
	pool *pgxpool.Pool
}

type executorTx struct {
	executor
	tx pgx.Tx
	// borrowed is true for a caller's transaction: Commit and Rollback do
	// nothing, the caller ends it.
	borrowed bool
}

func (e *executor) Begin(ctx context.Context) (driver.ExecutorTx, error) {
	if e.db == nil {
		return nil, errors.New("pgxv5: driver has no pool")
	}
	tx, err := e.db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &executorTx{executor: executor{db: tx, sql: e.sql, pool: e.pool}, tx: tx}, nil
}

func (e *executor) Exec(ctx context.Context, sql string, args ...any) error {
	_, err := e.db.Exec(ctx, sql, args...)
	return err
}

func (t *executorTx) Commit(ctx context.Context) error {
	if t.borrowed {
		return nil
	}
	return t.tx.Commit(ctx)
}

func (t *executorTx) Rollback(ctx context.Context) error {
	if t.borrowed {
		return nil
	}
	err := t.tx.Rollback(ctx)
	if errors.Is(err, pgx.ErrTxClosed) {
		return nil
	}
	return err
}

// inTx runs fn in a transaction: the executor's own when it is one (a
// savepoint keeps fn atomic), else a new one on the pool.
func (e *executor) inTx(ctx context.Context, fn func(tx *executor) error) error {
	tx, err := e.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(&executor{db: tx, sql: e.sql, pool: e.pool}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// sqlCache renders each query template once per schema: "{{schema}}" becomes
// `"schema".` or nothing.
type sqlCache struct {
	mu sync.RWMutex
	m  map[sqlKey]string
}

type sqlKey struct {
	schema string
	tmpl   *string
}

func newSQLCache() *sqlCache { return &sqlCache{m: map[sqlKey]string{}} }

// get returns the template rendered for the schema. Templates are package
// variables, so their addresses identify them cheaply.
func (c *sqlCache) get(schema string, tmpl *string) string {
	k := sqlKey{schema, tmpl}
	c.mu.RLock()
	s, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return s
	}
	s = renderSchema(schema, *tmpl)
	c.mu.Lock()
	c.m[k] = s
	c.mu.Unlock()
	return s
}

func renderSchema(schema, tmpl string) string {
	prefix := ""
	if schema != "" {
		prefix = pgx.Identifier{schema}.Sanitize() + "."
	}
	return strings.NewReplacer(
		"{{schema}}", prefix,
		"{{insert_channel}}", channelExpr(schema, driver.TopicInsert),
		"{{control_channel}}", channelExpr(schema, driver.TopicControl),
		"{{leadership_channel}}", channelExpr(schema, driver.TopicLeadership),
	).Replace(tmpl)
}

// channel returns the SQL expression for a notification channel of the
// schema: a literal when a schema is configured, else current_schema() read
// by the server (prefix dropped when it is NULL).
func channelExpr(schema, topic string) string {
	if schema != "" {
		return quoteLiteral(schema + "." + topic)
	}
	return "coalesce(current_schema() || '.', '') || " + quoteLiteral(topic)
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
