package pgxv5_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
	"github.com/millrace/millrace/riverdrivertest"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func TestConformance(t *testing.T) {
	t.Parallel()
	riverdrivertest.Exercise(t.Context(), t, func(ctx context.Context, t *testing.T) (driver.Driver[pgx.Tx], string) {
		schema, pool := testdb.NewSchema(t)
		return pgxv5.New(pool), schema
	})
}

// foreignTx is an ExecutorTx that the pgx driver did not make.
type foreignTx struct{ driver.ExecutorTx }

func TestUnwrapTxForeignExecutor(t *testing.T) {
	t.Parallel()
	_, pool := testdb.NewSchema(t)
	if _, err := pgxv5.New(pool).UnwrapTx(foreignTx{}); err == nil {
		t.Fatal("UnwrapTx of an executor made elsewhere succeeded")
	}
}

func TestNilPool(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	drv := pgxv5.New(nil)
	if drv.PoolIsSet() {
		t.Fatal("PoolIsSet is true without a pool")
	}
	if drv.SupportsListener() {
		t.Fatal("SupportsListener is true without a pool")
	}
	if _, err := drv.GetListener(""); err == nil {
		t.Fatal("GetListener succeeded without a pool")
	}

	// The pool executor fails cleanly instead of panicking.
	exec := drv.GetExecutor()
	if _, err := exec.Begin(ctx); err == nil {
		t.Fatal("Begin succeeded without a pool")
	}
	if err := exec.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("Exec succeeded without a pool")
	}
	if _, err := exec.JobGetByID(ctx, &driver.JobGetByIDParams{ID: 1}); err == nil {
		t.Fatal("JobGetByID succeeded without a pool")
	}
	if _, err := exec.LeaderGetElected(ctx, ""); err == nil {
		t.Fatal("LeaderGetElected succeeded without a pool")
	}
	if _, err := exec.JobInsertCopy(ctx, &driver.JobInsertManyParams{Jobs: []*driver.JobInsertParams{{
		Args: []byte(`{}`), Kind: "k", MaxAttempts: 1, Priority: 1, Queue: "default", State: millracetype.JobStateAvailable,
	}}}); err == nil {
		t.Fatal("JobInsertCopy succeeded without a pool")
	}

	// It still works inside a transaction of the caller's.
	schema, pool := testdb.NewSchema(t)
	m, err := migrate.New(pgxv5.New(pool), &migrate.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	res, err := drv.UnwrapExecutor(tx).JobInsertMany(ctx, &driver.JobInsertManyParams{Schema: schema, Jobs: []*driver.JobInsertParams{{
		Args: []byte(`{}`), Kind: "k", MaxAttempts: 1, Priority: 1, Queue: "default", State: millracetype.JobStateAvailable,
	}}})
	if err != nil {
		t.Fatalf("JobInsertMany through a nil-pool driver in a transaction: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	job, err := pgxv5.New(pool).GetExecutor().JobGetByID(ctx, &driver.JobGetByIDParams{Schema: schema, ID: res[0].Job.ID})
	if err != nil {
		t.Fatalf("job inserted through the nil-pool driver: %v", err)
	}
	if job.Kind != "k" {
		t.Fatalf("kind %q", job.Kind)
	}
	got, err := drv.UnwrapTx(drv.UnwrapExecutor(tx))
	if err != nil || got != tx {
		t.Fatalf("UnwrapTx of an unwrapped executor: %v, same tx %v", err, got == tx)
	}
}
