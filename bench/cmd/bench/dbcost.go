package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// queryCounter is a pgx tracer that counts what a pool sends to the server.
// A Query, QueryRow or Exec (BEGIN and COMMIT included) is one round trip
// and one statement; a batch is one round trip carrying one statement per
// query; a COPY is one round trip and one statement. The one-time prepares
// of pgx's statement cache are not counted.
type queryCounter struct {
	queries atomic.Int64 // Query/QueryRow/Exec calls
	batches atomic.Int64 // SendBatch calls
	batched atomic.Int64 // queries inside batches
	copies  atomic.Int64 // CopyFrom calls
}

var (
	_ pgx.QueryTracer    = (*queryCounter)(nil)
	_ pgx.BatchTracer    = (*queryCounter)(nil)
	_ pgx.CopyFromTracer = (*queryCounter)(nil)
)

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.queries.Add(1)
	return ctx
}

func (*queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (q *queryCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	q.batches.Add(1)
	return ctx
}

func (q *queryCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	q.batched.Add(1)
}

func (*queryCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (q *queryCounter) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	q.copies.Add(1)
	return ctx
}

func (*queryCounter) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

// queryCounts is a snapshot of a queryCounter.
type queryCounts struct {
	RoundTrips, Statements int64
}

func (q *queryCounter) snapshot() queryCounts {
	queries, batches, batched, copies := q.queries.Load(), q.batches.Load(), q.batched.Load(), q.copies.Load()
	return queryCounts{RoundTrips: queries + batches + copies, Statements: queries + batched + copies}
}

// serverCounters are the server-side counters a run's cost is read from:
// the WAL insert position (cluster-wide), pg_stat_wal (cluster-wide) and
// the database's transaction counts (pg_stat_database).
type serverCounters struct {
	walLSN     int64 // bytes since the start of WAL
	walRecords int64
	walFPI     int64
	commits    int64
	rollbacks  int64
}

// queryRower is a pool or a single connection.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readServerCounters reads serverCounters. Each
// query is its own transaction, so the statistics are current ones (a
// snapshot of them lives only as long as a transaction).
func readServerCounters(ctx context.Context, pool queryRower) (serverCounters, error) {
	var c serverCounters
	err := pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint,
		(SELECT wal_records FROM pg_stat_wal), (SELECT wal_fpi FROM pg_stat_wal),
		xact_commit, xact_rollback
		FROM pg_stat_database WHERE datname = current_database()`).
		Scan(&c.walLSN, &c.walRecords, &c.walFPI, &c.commits, &c.rollbacks)
	if err != nil {
		return c, fmt.Errorf("read server counters: %w", err)
	}
	return c, nil
}

// dbCost is what a run cost the database, per job.
type dbCost struct {
	// WALBytesPerJob is the WAL the server wrote during the run (from the
	// insert position), divided by the jobs. It is cluster-wide: anything
	// else writing on the server during the run is in it.
	WALBytesPerJob float64 `json:"wal_bytes_per_job"`
	// WALRecordsPerJob and WALFPIPerJob come from pg_stat_wal (also
	// cluster-wide); full-page images follow the CHECKPOINT before each run.
	WALRecordsPerJob float64 `json:"wal_records_per_job"`
	WALFPIPerJob     float64 `json:"wal_fpi_per_job"`
	// RoundTripsPerJob and StatementsPerJob are counted by a tracer on the
	// system's own pool (see queryCounter), so the bench's own queries are
	// not in them.
	RoundTripsPerJob float64 `json:"round_trips_per_job"`
	StatementsPerJob float64 `json:"statements_per_job"`
	// CommitsPerJob is pg_stat_database's xact_commit delta for the
	// database, less the bench's own monitoring statements: a cross-check
	// of the tracer (a statement outside a transaction is a commit of its
	// own; a transaction of several statements is one). RollbacksPerJob is
	// xact_rollback's delta.
	CommitsPerJob   float64 `json:"commits_per_job"`
	RollbacksPerJob float64 `json:"rollbacks_per_job"`
	// ClientCPUMicrosPerJob is the CPU time (user and system) of the
	// child process that ran the system, from the start of the run to the
	// end of its checks; ServerCPUMicrosPerJob is that of every postgres
	// process on this machine over the same window (see readCPU), or -1
	// when the server is not visible from here. The checks after the run
	// add well under a microsecond per job.
	ClientCPUMicrosPerJob float64 `json:"client_cpu_us_per_job"`
	ServerCPUMicrosPerJob float64 `json:"server_cpu_us_per_job"`
}

// costWindow measures a run's database cost, from begin (just before the
// system starts) to end (once the system's pool and the monitoring pool are
// closed and every server backend of theirs has exited, which flushes their
// statistics).
type costWindow struct {
	url            string
	monitor        *pgxpool.Pool // the bench's own queries during the run
	monitorCounter *queryCounter
	system         *queryCounter
	appNames       []string // application_name of the system's and the monitor's connections

	before        serverCounters
	cpuBefore     cpuReading
	systemBefore  queryCounts
	monitorBefore queryCounts
	begun         bool
}

func (w *costWindow) begin(ctx context.Context) error {
	// The monitor's statements are counted from before this read: its own
	// commit comes after the values it reads, so it is among those taken
	// off xact_commit's delta.
	w.monitorBefore = w.monitorCounter.snapshot()
	c, err := readServerCounters(ctx, w.monitor)
	if err != nil {
		return err
	}
	w.before, w.systemBefore, w.begun = c, w.system.snapshot(), true
	w.cpuBefore = readCPU()
	return nil
}

// end is called once the system is stopped, its pool closed and the bench's
// checks done. It closes the monitoring pool, waits on a connection of its
// own for the server backends of both pools to exit, and reads the
// counters. That connection's own few statements may or may not reach
// xact_commit before the read: a handful of commits in a run of thousands
// of jobs.
func (w *costWindow) end(ctx context.Context, jobs int) (*dbCost, error) {
	if !w.begun {
		return nil, errors.New("cost window: never begun")
	}
	system := w.system.snapshot()
	monitorStatements := w.monitorCounter.snapshot().Statements - w.monitorBefore.Statements
	w.monitor.Close()
	conn, err := pgx.Connect(ctx, w.url)
	if err != nil {
		return nil, fmt.Errorf("cost window: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := waitBackendsGone(ctx, conn, w.appNames); err != nil {
		return nil, err
	}
	cpuAfter := readCPU()
	after, err := readServerCounters(ctx, conn)
	if err != nil {
		return nil, err
	}
	cost := costPerJob(w.before, after, w.systemBefore, system, monitorStatements, jobs)
	cost.ClientCPUMicrosPerJob, cost.ServerCPUMicrosPerJob = cpuPerJob(w.cpuBefore, cpuAfter, jobs)
	return cost, nil
}

// costPerJob turns two readings of the counters into per-job figures.
// monitorStatements, the bench's own statements in between (each a
// transaction of its own), are taken off the commits.
func costPerJob(before, after serverCounters, sysBefore, sysAfter queryCounts, monitorStatements int64, jobs int) *dbCost {
	if jobs <= 0 {
		return &dbCost{}
	}
	n := float64(jobs)
	return &dbCost{
		WALBytesPerJob:   float64(after.walLSN-before.walLSN) / n,
		WALRecordsPerJob: float64(after.walRecords-before.walRecords) / n,
		WALFPIPerJob:     float64(after.walFPI-before.walFPI) / n,
		RoundTripsPerJob: float64(sysAfter.RoundTrips-sysBefore.RoundTrips) / n,
		StatementsPerJob: float64(sysAfter.Statements-sysBefore.Statements) / n,
		CommitsPerJob:    float64(max(after.commits-before.commits-monitorStatements, 0)) / n,
		RollbacksPerJob:  float64(after.rollbacks-before.rollbacks) / n,
	}
}

// waitBackendsGone waits until no server backend has one of the given
// application names any more (a backend flushes its statistics before it
// leaves pg_stat_activity).
func waitBackendsGone(ctx context.Context, conn queryRower, appNames []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY($1)", appNames).Scan(&n); err != nil {
			return fmt.Errorf("wait for the run's connections to close: %w", err)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the run's connections to close: %d still open: %w", n, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
