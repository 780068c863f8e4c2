package pgexec

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/millrace/millrace/millracetype"
)

// The hot statements (the fetch and the completer's write) are prepared,
// and Postgres may settle on a generic plan for a prepared statement after
// its fifth run, planned for the table as it was then and kept until the
// table's statistics change. A table ANALYZEd while (nearly) empty, as a
// fresh deployment's or a test's often is, makes that plan a sequential
// scan, for the fetch's UPDATE and for the completer's join: without
// autovacuum, or until it analyzes the table again, every fetch and every
// write then reads the whole table, finished jobs included. On a
// 10,000-job latency run that was a mean of 1.3 ms per fetch and 3.1 ms
// per write (pg_stat_statements; auto_explain showed the sequential
// scans), against 0.25 ms for River's fetch.
//
// So on a pool (a DB that is a HotRunner) they go out in one pipelined
// batch behind a transaction-local enable_seqscan = off. A batch's
// statements share one implicit transaction, committed at its end exactly
// as a lone statement is (so a connection lost midway leaves the same
// outcomes as before: nothing, or everything), and the setting ends with
// it. Every plan of theirs, generic or custom, is then made by index,
// which is what they need at every table size: they touch a few rows
// found by key. Inside a caller's transaction they run as they are (a
// setting local to the transaction would outlive them there).
//
// An explicit BEGIN ... COMMIT around them was tried first and lost jobs
// to TestLostConnections: a fetch whose COMMIT ran but whose answer the
// connection's end cut off had locked and marked its jobs running while
// the fetcher saw an error, so they waited for the rescuer.

// SQLNoSeqScan is the setting the hot statements run under, made local to
// the batch's implicit transaction with set_config's is_local rather than
// SET LOCAL: Postgres applies both alike there, but SET LOCAL outside an
// explicit transaction block also raises a WARNING ("SET LOCAL can only be
// used in transaction blocks"), which the server writes to its log (at the
// default log_min_messages) and sends to the client, once for every fetch
// and every completer write.
const SQLNoSeqScan = "SELECT set_config('enable_seqscan', 'off', true)"

// BatchSender is what SendHotQuery and SendHotExec send their batch on:
// a pgx pool or connection outside any transaction.
type BatchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// SendHotQuery runs sql with args on db as described above; read gets its
// rows and must consume them.
func SendHotQuery(ctx context.Context, db BatchSender, sql string, args []any, read func(pgx.Rows) error) error {
	b := &pgx.Batch{}
	b.Queue(SQLNoSeqScan)
	b.Queue(sql, args...).Query(read)
	return db.SendBatch(ctx, b).Close()
}

// SendHotExec runs a hot statement returning no rows on db and gives its
// command tag.
func SendHotExec(ctx context.Context, db BatchSender, sql string, args []any) (pgconn.CommandTag, error) {
	b := &pgx.Batch{}
	b.Queue(SQLNoSeqScan)
	var tag pgconn.CommandTag
	b.Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error {
		tag = ct
		return nil
	})
	return tag, db.SendBatch(ctx, b).Close()
}

// hotQuery runs a hot statement: through the DB's HotRunner when it has
// one (a pool), else as it is.
func (e *executor) hotQuery(ctx context.Context, sql string, args []any, read func(pgx.Rows) error) error {
	if h, ok := e.db.(HotRunner); ok {
		return h.HotQuery(ctx, sql, args, read)
	}
	rows, err := e.db.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	return read(rows)
}

// hotExec runs a hot statement returning no rows and gives its command
// tag.
func (e *executor) hotExec(ctx context.Context, sql string, args []any) (pgconn.CommandTag, error) {
	if h, ok := e.db.(HotRunner); ok {
		return h.HotExec(ctx, sql, args)
	}
	return e.db.Exec(ctx, sql, args...)
}

// hotJobs runs a hot statement returning jobs.
func (e *executor) hotJobs(ctx context.Context, sql string, args ...any) ([]*millracetype.JobRow, error) {
	var jobs []*millracetype.JobRow
	err := e.hotQuery(ctx, sql, args, func(rows pgx.Rows) error {
		var err error
		jobs, err = collectJobs(rows)
		return err
	})
	return jobs, err
}
