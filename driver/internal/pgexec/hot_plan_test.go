package pgexec

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/internal/batchtrace"
	"github.com/millrace/millrace/millracetype"
)

// TestHotStatementsPlannedByIndexOnEmptyAnalyzedTable: on a table ANALYZEd
// while empty, the generic plans of the fetch and of the completer's
// statements, made under the hot statements' setting, read no table
// sequentially (without it, Postgres 15 plans sequential scans there,
// which stay cached as the table grows).
func TestHotStatementsPlannedByIndexOnEmptyAnalyzedTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool, drv := migratedSchema(t)
	if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, "river_job"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	conn := planConn(t, pool)
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	outcomes := "'{1}', '{completed}', '{2026-01-01T00:00:00Z}', '{NULL}', '{NULL}', '{f}', '{f}', '{NULL}', '{1}', '{f}'"
	for _, st := range []struct {
		name string
		sql  *string
		args string
	}{
		{"fetch", &sqlJobGetAvailable, "'default', NULL, 200, 'test', '{k}'"},
		{"fetch_after", &sqlJobGetAvailableAfter, "'default', NULL, 200, 'test', '{k}', 1, now(), 25000"},
		{"complete", &sqlJobSetStateIfRunningMany, outcomes},
		{"complete_deleting", &sqlJobSetStateDeleting, outcomes + ", '{t}'"},
		{"complete_deletes_alone", &sqlJobDeleteAll, "'{1}', '{1}'"},
		{"complete_deletes_alone_rows", &sqlJobDeleteAllRows, "'{1}', '{1}', '{2026-01-01T00:00:00Z}', '{NULL}'"},
		{"complete_completions_alone", &sqlJobCompleteAll, "'{1}', '{1}', '{2026-01-01T00:00:00Z}'"},
	} {
		plan := func(setting string) string {
			t.Helper()
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
			if setting != "" {
				if _, err := tx.Exec(ctx, setting); err != nil {
					t.Fatal(err)
				}
			}
			name := fmt.Sprintf("hot_plan_%s_%t", st.name, setting != "")
			if _, err := tx.Prepare(ctx, name, drv.sql.get(schema, st.sql)); err != nil {
				t.Fatal(err)
			}
			return explain(t, tx, "EXPLAIN (COSTS OFF) EXECUTE "+name+"("+st.args+")")
		}
		if p := plan(""); strings.Contains(p, "Seq Scan on river_job") {
			t.Logf("%s: without %q the generic plan reads the table sequentially", st.name, SQLNoSeqScan)
		}
		if p := plan(SQLNoSeqScan); strings.Contains(p, "Seq Scan on river_job") {
			t.Errorf("%s: with %q the generic plan still reads the table sequentially:\n%s", st.name, SQLNoSeqScan, p)
		}
	}
}

// TestHotStatementsRunWithoutSeqScan: on a pool, the fetch and the
// completer's writes go out as one batch, the setting then the statement;
// they do their work; and the setting does not outlive them on the pool's
// connection.
func TestHotStatementsRunWithoutSeqScan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, base, _ := migratedSchema(t)
	cfg := base.Config()
	rec := &batchtrace.Recorder{}
	cfg.ConnConfig.Tracer = rec
	cfg.MaxConns = 1 // one connection: the SHOW below sees the one the statements ran on
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	exec := newTestDriver(pool).GetExecutor()
	if _, err := pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "river_job"}.Sanitize()+
		` (kind, args, queue) SELECT 'k', '{}', 'default' FROM generate_series(1, 6)`); err != nil {
		t.Fatal(err)
	}
	wantBatch := func(what string, stmt *string) {
		t.Helper()
		batches := rec.Take()
		want := []string{SQLNoSeqScan, newTestDriver(pool).sql.get(schema, stmt)}
		if len(batches) != 1 || strings.Join(batches[0], "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("%s sent batches %q; want one: %q", what, batches, want)
		}
	}

	jobs, err := exec.JobGetAvailable(ctx, &driver.JobGetAvailableParams{Schema: schema, Queue: "default", Max: 10, ClientID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 6 || jobs[0].State != millracetype.JobStateRunning {
		t.Fatalf("fetched %d jobs (first %+v); want 6 running", len(jobs), jobs[0])
	}
	wantBatch("the fetch", &sqlJobGetAvailable)

	now := time.Now()
	done := func(i int, del bool) []*driver.JobSetState {
		return []*driver.JobSetState{{ID: jobs[i].ID, State: millracetype.JobStateCompleted, FinalizedAt: &now, Attempt: 1, Delete: del}}
	}
	if _, err := exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: schema, Jobs: done(0, false), NoRows: true}); err != nil {
		t.Fatal(err)
	}
	wantBatch("the completer's write of completions alone", &sqlJobCompleteAll)
	rows, err := exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: schema, Jobs: done(1, false)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].State != millracetype.JobStateCompleted {
		t.Fatalf("the completer's write returned %+v; want the job completed", rows)
	}
	wantBatch("the completer's write of completions alone returning rows", &sqlJobCompleteAllRows)
	// A completion that records an output takes the mixed statement.
	output := func(i int) []*driver.JobSetState {
		o := done(i, false)
		o[0].MetadataUpdates = []byte(`{"output":1}`)
		return o
	}
	if _, err := exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: schema, Jobs: output(4), NoRows: true}); err != nil {
		t.Fatal(err)
	}
	wantBatch("the completer's write", &sqlJobSetStateIfRunningMany)
	if rows, err = exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: schema, Jobs: output(5)}); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].State != millracetype.JobStateCompleted || string(rows[0].Metadata) != `{"output": 1}` {
		t.Fatalf("the completer's write returned %+v; want the job completed with its output", rows)
	}
	wantBatch("the completer's write returning rows", &sqlJobSetStateIfRunningManyRows)
	if _, err := exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: schema, Jobs: done(2, true), NoRows: true}); err != nil {
		t.Fatal(err)
	}
	wantBatch("the completer's write of deletes alone", &sqlJobDeleteAll)
	// A delete whose metadata updates would be merged into a row that
	// moved on takes the mixed statement.
	mixed := done(3, true)
	mixed[0].MetadataUpdates = []byte(`{"output":1}`)
	if _, err := exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: schema, Jobs: mixed, NoRows: true}); err != nil {
		t.Fatal(err)
	}
	wantBatch("the completer's deleting write", &sqlJobSetStateDeleting)

	var states []string
	if err := pool.QueryRow(ctx, `SELECT array_agg(state::text ORDER BY id) FROM `+pgx.Identifier{schema, "river_job"}.Sanitize()).Scan(&states); err != nil {
		t.Fatal(err)
	}
	if strings.Join(states, ",") != "completed,completed,completed,completed" {
		t.Errorf("states after the writes: %v; want four completed (the third and fourth deleted)", states)
	}
	var setting string
	if err := pool.QueryRow(ctx, "SHOW enable_seqscan").Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if setting != "on" {
		t.Errorf("enable_seqscan is %q on the pool's connection after the hot statements; want on", setting)
	}
}

// TestHotStatementsRaiseNoWarning: the hot statements' setting raises no
// notice. SET LOCAL did: outside an explicit transaction block Postgres
// warns "SET LOCAL can only be used in transaction blocks" (and writes it
// to its log) even where it applies the setting, so every fetch and every
// completer write logged a warning. The test shows first that its notice
// recorder sees that warning.
func TestHotStatementsRaiseNoWarning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, base, _ := migratedSchema(t)
	cfg := base.Config()
	var (
		mu      sync.Mutex
		notices []string
	)
	cfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n.Severity+": "+n.Message)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		n := notices
		notices = nil
		return n
	}

	b := &pgx.Batch{}
	b.Queue("SET LOCAL enable_seqscan = off")
	b.Queue("SELECT 1")
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if n := take(); len(n) != 1 || !strings.Contains(n[0], "SET LOCAL") {
		t.Fatalf("a batch behind SET LOCAL raised %q; want its warning (the recorder must see it)", n)
	}

	exec := newTestDriver(pool).GetExecutor()
	if _, err := pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "river_job"}.Sanitize()+
		` (kind, args, queue) SELECT 'k', '{}', 'default' FROM generate_series(1, 3)`); err != nil {
		t.Fatal(err)
	}
	jobs, err := exec.JobGetAvailable(ctx, &driver.JobGetAvailableParams{Schema: schema, Queue: "default", Max: 10, ClientID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 {
		t.Fatalf("fetched %d jobs; want 3", len(jobs))
	}
	now := time.Now()
	for i, del := range []bool{false, true} {
		if _, err := exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: schema, NoRows: true,
			Jobs: []*driver.JobSetState{{ID: jobs[i].ID, State: millracetype.JobStateCompleted, FinalizedAt: &now, Attempt: 1, Delete: del}}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := take(); len(n) != 0 {
		t.Errorf("the fetch and the completer's writes raised %q; want no notice", n)
	}
}

// TestPipelinedSettingReachesNextStatement checks what hotQuery relies
// on: in a pgx batch, the statements share one implicit transaction, so
// the setting applies to the statement after it, and ends with the batch.
func TestPipelinedSettingReachesNextStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool, _ := migratedSchema(t)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var inside, after string
	b := &pgx.Batch{}
	b.Queue(SQLNoSeqScan)
	b.Queue("SHOW enable_seqscan").QueryRow(func(r pgx.Row) error { return r.Scan(&inside) })
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SHOW enable_seqscan").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if inside != "off" || after != "on" || conn.Conn().PgConn().TxStatus() != 'I' {
		t.Errorf("enable_seqscan in the batch %q, after it %q, transaction status %c; want off, on, I",
			inside, after, conn.Conn().PgConn().TxStatus())
	}
}
