package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/millrace/millrace/driver"
)

// PGAdvisoryXactLock implements driver.Executor. SQLite has no advisory
// locks and needs none: a transaction of this driver holds the database's
// only write lock from BEGIN to its end, which excludes every other
// transaction that could take the same key. Outside a transaction there
// is nothing to hold, as in Postgres, where the lock ends with the
// statement's implicit transaction.
func (e *executor) PGAdvisoryXactLock(context.Context, int64) error { return e.fail }

// schemaTable returns the sqlite_schema table of a schema.
func schemaTable(schema string) string {
	if schema == "" {
		return "sqlite_schema"
	}
	return qualify(schema) + "sqlite_schema"
}

func (e *executor) objectExists(ctx context.Context, schema, typ, name string) (bool, error) {
	if schema != "" {
		ok, err := e.SchemaExists(ctx, schema)
		if err != nil || !ok {
			return false, err
		}
	}
	var n int
	_, err := e.queryOne(ctx, `SELECT count(*) FROM `+schemaTable(schema)+` WHERE type = ? AND name = ?`, []any{typ, name}, &n)
	return n > 0, err
}

func (e *executor) TableExists(ctx context.Context, p *driver.TableExistsParams) (bool, error) {
	return e.objectExists(ctx, p.Schema, "table", p.Table)
}

func (e *executor) ColumnExists(ctx context.Context, p *driver.ColumnExistsParams) (bool, error) {
	ok, err := e.TableExists(ctx, &driver.TableExistsParams{Schema: p.Schema, Table: p.Table})
	if err != nil || !ok {
		return false, err
	}
	var n int
	q := `SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`
	args := []any{p.Table, p.Column}
	if p.Schema != "" {
		q = `SELECT count(*) FROM pragma_table_info(?, ?) WHERE name = ?`
		args = []any{p.Table, p.Schema, p.Column}
	}
	_, err = e.queryOne(ctx, q, args, &n)
	return n > 0, err
}

// SchemaExists implements driver.Executor: SQLite's schemas are the
// connection's databases ("main", "temp" and the ATTACHed ones).
func (e *executor) SchemaExists(ctx context.Context, schema string) (bool, error) {
	var n int
	_, err := e.queryOne(ctx, `SELECT count(*) FROM pragma_database_list WHERE name = ?`, []any{schema}, &n)
	return n > 0, err
}

func (e *executor) IndexExists(ctx context.Context, p *driver.IndexParams) (bool, error) {
	return e.objectExists(ctx, p.Schema, "index", p.Index)
}

// IndexReindex implements driver.Executor with REINDEX, which SQLite runs
// under its write lock (there is no concurrent variant).
func (e *executor) IndexReindex(ctx context.Context, p *driver.IndexParams) error {
	ok, err := e.IndexExists(ctx, p)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("sqlite: reindex: index %q does not exist in schema %q", p.Index, p.Schema)
	}
	_, err = e.exec(ctx, `REINDEX `+qualify(p.Schema)+`"`+strings.ReplaceAll(p.Index, `"`, `""`)+`"`)
	return err
}

func (e *executor) MigrationGetAll(ctx context.Context, p *driver.MigrationParams) ([]*driver.Migration, error) {
	ok, err := e.TableExists(ctx, &driver.TableExistsParams{Schema: p.Schema, Table: "river_migration"})
	if err != nil || !ok {
		return nil, err
	}
	var out []*driver.Migration
	err = e.query(ctx, render(p.Schema, `SELECT line, version, created_at FROM {{schema}}river_migration WHERE line = ? ORDER BY version`),
		[]any{p.Line}, func(r *sql.Rows) error {
			m, err := scanMigration(r)
			if err == nil {
				out = append(out, m)
			}
			return err
		})
	return out, err
}

func scanMigration(r *sql.Rows) (*driver.Migration, error) {
	var m driver.Migration
	var created string
	if err := r.Scan(&m.Line, &m.Version, &created); err != nil {
		return nil, err
	}
	t, err := parseTime(created)
	if err != nil {
		return nil, err
	}
	m.CreatedAt = t
	return &m, nil
}

func (e *executor) MigrationInsertMany(ctx context.Context, p *driver.MigrationInsertManyParams) ([]*driver.Migration, error) {
	var out []*driver.Migration
	err := e.inTx(ctx, func(tx *executor) error {
		now := fmtTime(e.now())
		for _, v := range p.Versions {
			if _, err := tx.exec(ctx, render(p.Schema, `INSERT INTO {{schema}}river_migration (line, version, created_at) VALUES (?, ?, ?)`),
				p.Line, v, now); err != nil {
				return err
			}
			t, _ := parseTime(now)
			out = append(out, &driver.Migration{Line: p.Line, Version: v, CreatedAt: t})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (e *executor) MigrationDeleteMany(ctx context.Context, p *driver.MigrationInsertManyParams) error {
	ok, err := e.TableExists(ctx, &driver.TableExistsParams{Schema: p.Schema, Table: "river_migration"})
	if err != nil || !ok {
		return err // a reverted version 1 takes the table with it
	}
	return e.inTx(ctx, func(tx *executor) error {
		for _, v := range p.Versions {
			if _, err := tx.exec(ctx, render(p.Schema, `DELETE FROM {{schema}}river_migration WHERE line = ? AND version = ?`), p.Line, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// NotifyMany implements driver.Executor. SQLite has no notifications and
// this driver no listener (SupportsListener is false), so there is no one
// to deliver to: it checks its input and sends nothing. The same holds
// for the notifications other methods send in Postgres.
func (e *executor) NotifyMany(_ context.Context, p *driver.NotifyManyParams) error {
	if e.fail != nil {
		return e.fail
	}
	if p.Topic == "" {
		return fmt.Errorf("notify: empty topic")
	}
	return nil
}
