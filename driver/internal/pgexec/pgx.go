package pgexec

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PoolDB is a DB on a pgx pool, with both fast paths: COPY, and the hot
// statements pipelined behind their setting.
type PoolDB struct{ Pool *pgxpool.Pool }

// PgxTx is a Tx on a pgx transaction (COPY, no hot path).
type PgxTx struct{ Tx pgx.Tx }

var (
	_ HotRunner = PoolDB{}
	_ Copier    = PoolDB{}
	_ Copier    = PgxTx{}
	_ Batcher   = PgxTx{}
)

func (p PoolDB) Begin(ctx context.Context) (Tx, error) {
	tx, err := p.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return PgxTx{tx}, nil
}

func (p PoolDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return p.Pool.Exec(ctx, sql, args...)
}

func (p PoolDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return p.Pool.Query(ctx, sql, args...)
}

func (p PoolDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return p.Pool.QueryRow(ctx, sql, args...)
}

func (p PoolDB) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	return p.Pool.CopyFrom(ctx, table, columns, src)
}

func (p PoolDB) HotQuery(ctx context.Context, sql string, args []any, read func(pgx.Rows) error) error {
	return SendHotQuery(ctx, p.Pool, sql, args, read)
}

func (p PoolDB) HotExec(ctx context.Context, sql string, args []any) (pgconn.CommandTag, error) {
	return SendHotExec(ctx, p.Pool, sql, args)
}

func (t PgxTx) Begin(ctx context.Context) (Tx, error) {
	tx, err := t.Tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return PgxTx{tx}, nil
}

func (t PgxTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.Tx.Exec(ctx, sql, args...)
}

func (t PgxTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.Tx.Query(ctx, sql, args...)
}

func (t PgxTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.Tx.QueryRow(ctx, sql, args...)
}

func (t PgxTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	return t.Tx.CopyFrom(ctx, table, columns, src)
}

func (t PgxTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return t.Tx.SendBatch(ctx, b)
}

func (t PgxTx) Commit(ctx context.Context) error   { return t.Tx.Commit(ctx) }
func (t PgxTx) Rollback(ctx context.Context) error { return t.Tx.Rollback(ctx) }
