package databasesql_test

import (
	"database/sql"
	sqldriver "database/sql/driver"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/databasesql"
	"github.com/millrace/millrace/driver/internal/batchtrace"
	"github.com/millrace/millrace/driver/internal/pgexec"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

// otherDriver is a database/sql driver that is not pgx's stdlib. It never
// connects: New must refuse it before any connection is opened.
type otherDriver struct{}

func (otherDriver) Open(string) (sqldriver.Conn, error) {
	return nil, errors.New("otherDriver never connects")
}

var registerOther sync.Once

func TestNewRefusesAnotherDriver(t *testing.T) {
	t.Parallel()
	registerOther.Do(func() { sql.Register("millrace_test_other", otherDriver{}) })
	db, err := sql.Open("millrace_test_other", "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	drv, err := databasesql.New(db, nil)
	if err == nil {
		t.Fatalf("New accepted a *sql.DB of %T: %v", db.Driver(), drv)
	}
	for _, want := range []string{"otherDriver", "not pgx/v5's stdlib"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New's error %q does not say %q", err, want)
		}
	}
}

func TestNewRefusesBadListenerConfig(t *testing.T) {
	t.Parallel()
	_, db, opts := openDB(t)
	if _, err := databasesql.New(db, &databasesql.Options{ListenerConfig: &pgx.ConnConfig{}}); err == nil || !strings.Contains(err.Error(), "pgx.ParseConfig") {
		t.Errorf("New with a literal ListenerConfig: %v; want an error naming pgx.ParseConfig", err)
	}
	if _, err := databasesql.New(nil, opts); err == nil {
		t.Error("New without a *sql.DB but with a ListenerConfig succeeded")
	}
}

// migrated returns a migrated schema, its *sql.DB and a poll-only driver.
func migrated(t *testing.T) (string, *sql.DB, *databasesql.Driver) {
	t.Helper()
	schema, db, _ := openDB(t)
	drv, err := databasesql.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.MigrateAll(t.Context(), drv, &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	return schema, db, drv
}

func jobParams() *driver.JobInsertParams {
	return &driver.JobInsertParams{Args: []byte(`{}`), Kind: "k", MaxAttempts: 1, Priority: 1, Queue: "default",
		State: millracetype.JobStateAvailable}
}

func TestPollOnlyByDefault(t *testing.T) {
	t.Parallel()
	_, db, opts := openDB(t)
	drv, err := databasesql.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if drv.SupportsListener() {
		t.Error("a driver without ListenerConfig supports LISTEN")
	}
	if _, err := drv.GetListener(""); err == nil {
		t.Error("GetListener succeeded without ListenerConfig")
	}
	listening, err := databasesql.New(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !listening.SupportsListener() {
		t.Error("a driver with ListenerConfig does not support LISTEN")
	}
}

func TestNilDBAndNilTx(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema, db, _ := migrated(t)
	drv, err := databasesql.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if drv.PoolIsSet() || drv.SupportsListener() {
		t.Error("a driver without a *sql.DB claims a pool or a listener")
	}
	if _, err := drv.GetExecutor().JobGetByID(ctx, &driver.JobGetByIDParams{Schema: schema, ID: 1}); err == nil || !strings.Contains(err.Error(), "no *sql.DB") {
		t.Errorf("JobGetByID without a *sql.DB: %v; want the no-*sql.DB error", err)
	}
	if _, err := drv.GetExecutor().Begin(ctx); err == nil {
		t.Error("Begin without a *sql.DB succeeded")
	}
	if _, err := drv.UnwrapExecutor(nil).JobInsertMany(ctx, &driver.JobInsertManyParams{Schema: schema, Jobs: []*driver.JobInsertParams{jobParams()}}); err == nil || !strings.Contains(err.Error(), "nil *sql.Tx") {
		t.Errorf("JobInsertMany on UnwrapExecutor(nil): %v; want the nil-tx error", err)
	}

	// It works inside the caller's transaction, which it leaves open.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	exec := drv.UnwrapExecutor(tx)
	res, err := exec.JobInsertMany(ctx, &driver.JobInsertManyParams{Schema: schema, Jobs: []*driver.JobInsertParams{jobParams()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := drv.UnwrapTx(exec)
	if err != nil || got != tx {
		t.Fatalf("UnwrapTx: %v, same tx %v", err, got == tx)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("the caller's transaction after the executor's Commit: %v", err)
	}
	other, err := databasesql.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	job, err := other.GetExecutor().JobGetByID(ctx, &driver.JobGetByIDParams{Schema: schema, ID: res[0].Job.ID})
	if err != nil || job.Kind != "k" {
		t.Fatalf("job inserted in the caller's transaction: %v, %+v", err, job)
	}
}

// TestHotStatementsPipelinedOnPool: on the *sql.DB, the fetch and the
// completer's write go out as pgxv5's do, one batch behind enable_seqscan =
// off (local to the batch), and the setting does not outlive them; inside
// a *sql.Tx they run as lone statements.
func TestHotStatementsPipelinedOnPool(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema, pool := testdb.NewSchema(t)
	cfg := pool.Config().ConnConfig
	rec := &batchtrace.Recorder{}
	cfg.Tracer = rec
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(1) // the SHOW below sees the connection the statements ran on
	defer func() { _ = db.Close() }()
	drv, err := databasesql.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.MigrateAll(ctx, drv, &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	exec := drv.GetExecutor()
	if _, err := exec.JobInsertMany(ctx, &driver.JobInsertManyParams{Schema: schema, Jobs: []*driver.JobInsertParams{jobParams(), jobParams()}}); err != nil {
		t.Fatal(err)
	}
	rec.Take()
	jobs, err := exec.JobGetAvailable(ctx, &driver.JobGetAvailableParams{Schema: schema, Queue: "default", Max: 10, ClientID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].State != millracetype.JobStateRunning {
		t.Fatalf("fetched %d jobs; want 2 running", len(jobs))
	}
	wantBatch := func(what, stmt string) {
		t.Helper()
		b := rec.Take()
		if len(b) != 1 || len(b[0]) != 2 || b[0][0] != pgexec.SQLNoSeqScan || !strings.Contains(b[0][1], stmt) {
			t.Fatalf("%s sent batches %q; want one: the setting, then the statement", what, b)
		}
	}
	wantBatch("the fetch", "FOR UPDATE SKIP LOCKED")
	now := jobs[0].AttemptedAt
	if _, err := exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: schema, NoRows: true,
		Jobs: []*driver.JobSetState{{ID: jobs[0].ID, State: millracetype.JobStateCompleted, FinalizedAt: now, Attempt: 1}}}); err != nil {
		t.Fatal(err)
	}
	wantBatch("the completer's write", "UPDATE")
	var setting string
	if err := db.QueryRowContext(ctx, "SHOW enable_seqscan").Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if setting != "on" {
		t.Errorf("enable_seqscan is %q on the connection after the hot statements; want on", setting)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := drv.UnwrapExecutor(tx).JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: schema,
		Jobs: []*driver.JobSetState{{ID: jobs[1].ID, State: millracetype.JobStateCompleted, FinalizedAt: now, Attempt: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].State != millracetype.JobStateCompleted {
		t.Fatalf("the write in a transaction returned %+v; want the job completed", rows)
	}
	if b := rec.Take(); len(b) != 0 {
		t.Errorf("the write in a transaction sent batches %q; want none", b)
	}
}
