package pgexec

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
)

const sqlAdvisoryXactLock = "SELECT pg_advisory_xact_lock($1)"

func (e *executor) PGAdvisoryXactLock(ctx context.Context, key int64) error {
	_, err := e.db.Exec(ctx, sqlAdvisoryXactLock, key)
	return err
}

func (e *executor) TableExists(ctx context.Context, p *driver.TableExistsParams) (bool, error) {
	return e.exists(ctx, `SELECT EXISTS (
		SELECT 1 FROM pg_catalog.pg_tables
		WHERE tablename = $1 AND schemaname = coalesce(nullif($2, ''), current_schema()))`, p.Table, p.Schema)
}

func (e *executor) ColumnExists(ctx context.Context, p *driver.ColumnExistsParams) (bool, error) {
	return e.exists(ctx, `SELECT EXISTS (
		SELECT 1 FROM information_schema.columns
		WHERE table_name = $1 AND column_name = $2 AND table_schema = coalesce(nullif($3, ''), current_schema()))`,
		p.Table, p.Column, p.Schema)
}

func (e *executor) SchemaExists(ctx context.Context, schema string) (bool, error) {
	return e.exists(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)`, schema)
}

func (e *executor) IndexExists(ctx context.Context, p *driver.IndexParams) (bool, error) {
	return e.exists(ctx, `SELECT EXISTS (
		SELECT 1 FROM pg_catalog.pg_indexes
		WHERE indexname = $1 AND schemaname = coalesce(nullif($2, ''), current_schema()))`, p.Index, p.Schema)
}

func (e *executor) IndexReindex(ctx context.Context, p *driver.IndexParams) error {
	name := pgx.Identifier{p.Index}
	if p.Schema != "" {
		name = pgx.Identifier{p.Schema, p.Index}
	}
	_, err := e.db.Exec(ctx, "REINDEX INDEX CONCURRENTLY "+name.Sanitize())
	return err
}

func (e *executor) exists(ctx context.Context, sql string, args ...any) (bool, error) {
	var ok bool
	if err := e.db.QueryRow(ctx, sql, args...).Scan(&ok); err != nil {
		return false, err
	}
	return ok, nil
}

// migrationShape tells which form river_migration has: missing, the first
// form (no line column, before River's version 5), or keyed by line.
func (e *executor) migrationShape(ctx context.Context, schema string) (exists, hasLine bool, err error) {
	exists, err = e.TableExists(ctx, &driver.TableExistsParams{Schema: schema, Table: "river_migration"})
	if err != nil || !exists {
		return exists, false, err
	}
	hasLine, err = e.ColumnExists(ctx, &driver.ColumnExistsParams{Schema: schema, Table: "river_migration", Column: "line"})
	return exists, hasLine, err
}

func (e *executor) MigrationGetAll(ctx context.Context, p *driver.MigrationParams) ([]*driver.Migration, error) {
	exists, hasLine, err := e.migrationShape(ctx, p.Schema)
	if err != nil || !exists {
		return nil, err
	}
	var rows pgx.Rows
	if hasLine {
		rows, err = e.db.Query(ctx, renderSchema(p.Schema,
			`SELECT line, version, created_at FROM {{schema}}river_migration WHERE line = $1 ORDER BY version`), p.Line)
	} else {
		if p.Line != "main" {
			return nil, nil
		}
		rows, err = e.db.Query(ctx, renderSchema(p.Schema,
			`SELECT 'main', version, created_at FROM {{schema}}river_migration ORDER BY version`))
	}
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanMigration)
}

func scanMigration(row pgx.CollectableRow) (*driver.Migration, error) {
	var m driver.Migration
	var version int64
	if err := row.Scan(&m.Line, &version, &m.CreatedAt); err != nil {
		return nil, err
	}
	m.Version = int(version)
	m.CreatedAt = m.CreatedAt.UTC()
	return &m, nil
}

func (e *executor) MigrationInsertMany(ctx context.Context, p *driver.MigrationInsertManyParams) ([]*driver.Migration, error) {
	exists, hasLine, err := e.migrationShape(ctx, p.Schema)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("table river_migration does not exist in schema %q", p.Schema)
	}
	versions := make([]int64, len(p.Versions))
	for i, v := range p.Versions {
		versions[i] = int64(v)
	}
	var rows pgx.Rows
	if hasLine {
		rows, err = e.db.Query(ctx, renderSchema(p.Schema, `INSERT INTO {{schema}}river_migration (line, version)
			SELECT $1, v FROM unnest($2::bigint[]) AS v RETURNING line, version, created_at`), p.Line, versions)
	} else {
		if p.Line != "main" {
			return nil, errors.New("river_migration predates migration lines: only line main can be recorded")
		}
		rows, err = e.db.Query(ctx, renderSchema(p.Schema, `INSERT INTO {{schema}}river_migration (version)
			SELECT v FROM unnest($1::bigint[]) AS v RETURNING 'main', version, created_at`), versions)
	}
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanMigration)
}

func (e *executor) MigrationDeleteMany(ctx context.Context, p *driver.MigrationInsertManyParams) error {
	exists, hasLine, err := e.migrationShape(ctx, p.Schema)
	if err != nil || !exists {
		return err // a reverted version 1 takes the table with it
	}
	versions := make([]int64, len(p.Versions))
	for i, v := range p.Versions {
		versions[i] = int64(v)
	}
	if hasLine {
		_, err = e.db.Exec(ctx, renderSchema(p.Schema,
			`DELETE FROM {{schema}}river_migration WHERE line = $1 AND version = ANY($2::bigint[])`), p.Line, versions)
		return err
	}
	if p.Line != "main" {
		return nil
	}
	_, err = e.db.Exec(ctx, renderSchema(p.Schema,
		`DELETE FROM {{schema}}river_migration WHERE version = ANY($1::bigint[])`), versions)
	return err
}

func (e *executor) NotifyMany(ctx context.Context, p *driver.NotifyManyParams) error {
	if p.Topic == "" {
		return errors.New("notify: empty topic")
	}
	if len(p.Payloads) == 0 {
		return nil
	}
	_, err := e.db.Exec(ctx, "SELECT count(pg_notify("+channelExpr(p.Schema, p.Topic)+", payload)) FROM unnest($1::text[]) AS payload", p.Payloads)
	return err
}

// utc converts a scanned time to UTC.
func utc(t time.Time) time.Time { return t.UTC() }

// utcPtr converts an optional scanned time to UTC.
func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
