// Package testfixture builds what most tests start from: a fresh schema
// migrated to River's latest version, with the pgx driver on it, and small
// helpers to insert and read jobs. It is for tests only.
//
// It sits on top of internal/testdb, which provides the PostgreSQL server
// (finding one or starting a throwaway one) and the empty schemas and
// databases; testfixture adds millrace's tables and the driver.
package testfixture

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

// DB is a migrated schema and the driver on it.
type DB struct {
	Schema string
	Pool   *pgxpool.Pool
	Driver *pgxv5.Driver
}

// Exec returns an executor on the pool.
func (d *DB) Exec() driver.Executor { return d.Driver.GetExecutor() }

// New returns a fresh schema migrated to the latest version.
func New(tb testing.TB) *DB {
	tb.Helper()
	schema, pool := testdb.NewSchema(tb)
	drv := pgxv5.New(pool)
	m, err := migrate.New[pgx.Tx](drv, &migrate.Config{Schema: schema})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := m.Migrate(context.Background(), migrate.DirectionUp, nil); err != nil {
		tb.Fatalf("testfixture: migrate %s: %v", schema, err)
	}
	return &DB{Schema: schema, Pool: pool, Driver: drv}
}

// NewAllLines returns a fresh schema migrated to the latest version of
// every migration line (River's and millrace's own), as `millrace migrate
// up` does.
func NewAllLines(tb testing.TB) *DB {
	tb.Helper()
	schema, pool := testdb.NewSchema(tb)
	drv := pgxv5.New(pool)
	if _, err := migrate.MigrateAll[pgx.Tx](context.Background(), drv, &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
		tb.Fatalf("testfixture: migrate %s: %v", schema, err)
	}
	return &DB{Schema: schema, Pool: pool, Driver: drv}
}

// InsertJob inserts one job with every column under control; zero fields
// take the usual defaults (kind "test", queue "default").
func (d *DB) InsertJob(tb testing.TB, p *driver.JobInsertFullParams) *millracetype.JobRow {
	tb.Helper()
	cp := *p
	cp.Schema = d.Schema
	if cp.Kind == "" {
		cp.Kind = "test"
	}
	job, err := d.Exec().JobInsertFull(context.Background(), &cp)
	if err != nil {
		tb.Fatalf("testfixture: insert job: %v", err)
	}
	return job
}

// InsertJobs inserts n available jobs of a kind in a queue.
func (d *DB) InsertJobs(tb testing.TB, n int, kind, queue string) []*millracetype.JobRow {
	tb.Helper()
	params := make([]*driver.JobInsertParams, n)
	for i := range params {
		params[i] = &driver.JobInsertParams{Args: []byte(`{}`), Kind: kind, MaxAttempts: 25, Priority: 1,
			Queue: queue, State: millracetype.JobStateAvailable}
	}
	res, err := d.Exec().JobInsertMany(context.Background(), &driver.JobInsertManyParams{Schema: d.Schema, Jobs: params})
	if err != nil {
		tb.Fatalf("testfixture: insert %d jobs: %v", n, err)
	}
	jobs := make([]*millracetype.JobRow, n)
	for i, r := range res {
		jobs[i] = r.Job
	}
	return jobs
}

// Job reads a job back.
func (d *DB) Job(tb testing.TB, id int64) *millracetype.JobRow {
	tb.Helper()
	job, err := d.Exec().JobGetByID(context.Background(), &driver.JobGetByIDParams{Schema: d.Schema, ID: id})
	if err != nil {
		tb.Fatalf("testfixture: get job %d: %v", id, err)
	}
	return job
}

// CountByState counts the schema's jobs per state.
func (d *DB) CountByState(tb testing.TB) map[millracetype.JobState]int {
	tb.Helper()
	rows, err := d.Pool.Query(context.Background(),
		"SELECT state::text, count(*) FROM "+pgx.Identifier{d.Schema, "river_job"}.Sanitize()+" GROUP BY state")
	if err != nil {
		tb.Fatal(err)
	}
	counts := map[millracetype.JobState]int{}
	var state string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&state, &n}, func() error {
		counts[millracetype.JobState(state)] = n
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return counts
}
