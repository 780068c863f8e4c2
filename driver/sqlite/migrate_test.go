package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/migrate"
)

// The driver migrates with its own SQL, and refuses to print Postgres'.
func TestMigrateAllAndSQL(t *testing.T) {
	ctx := context.Background()
	drv := New(mustOpen(t))
	res, err := migrate.MigrateAll(ctx, drv, nil, migrate.DirectionUp, nil)
	if err != nil {
		t.Fatalf("MigrateAll up: %v", err)
	}
	if len(res) != 2 || len(res[0].Versions) != 8 {
		t.Fatalf("MigrateAll up: %+v", res)
	}
	m, err := migrate.New(drv, &migrate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.SQL(0, 8); !errors.Is(err, migrate.ErrDialectLine) {
		t.Fatalf("SQL: got %v, want ErrDialectLine", err)
	}
	if _, err := migrate.MigrateAll(ctx, drv, nil, migrate.DirectionDown, &migrate.MigrateOpts{TargetVersion: -1}); err != nil {
		t.Fatalf("MigrateAll down: %v", err)
	}
	ok, err := drv.GetExecutor().TableExists(ctx, &driver.TableExistsParams{Table: "river_job"})
	if err != nil || ok {
		t.Fatalf("river_job after migrating down: exists %v, %v", ok, err)
	}
}

func mustOpen(t *testing.T) *sql.DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// A schema the SQLite database does not have fails clearly, without the
// Postgres hint (CREATE SCHEMA).
func TestMigrateUnknownSchema(t *testing.T) {
	ctx := context.Background()
	m, err := migrate.New(New(mustOpen(t)), &migrate.Config{Schema: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Migrate(ctx, migrate.DirectionUp, nil)
	if err == nil || !strings.Contains(err.Error(), `schema "nope" does not exist in the driver's database`) || strings.Contains(err.Error(), "CREATE SCHEMA") {
		t.Fatalf("Migrate of an unknown schema: %v", err)
	}
}

// A driver without a *sql.DB, and an executor on a nil transaction, fail
// every call with an error, never a panic.
func TestNoPool(t *testing.T) {
	ctx := context.Background()
	drv := New(nil)
	if drv.PoolIsSet() {
		t.Fatal("PoolIsSet of a driver without a *sql.DB")
	}
	for name, exec := range map[string]driver.Executor{"no pool": drv.GetExecutor(), "nil tx": drv.UnwrapExecutor(nil)} {
		if _, err := exec.JobGetByID(ctx, &driver.JobGetByIDParams{ID: 1}); err == nil {
			t.Errorf("%s: JobGetByID succeeded", name)
		}
		if _, err := exec.JobInsertMany(ctx, &driver.JobInsertManyParams{Jobs: []*driver.JobInsertParams{{
			Args: []byte(`{}`), Kind: "k", MaxAttempts: 1, Priority: 1, Queue: "q", State: "available"}}}); err == nil {
			t.Errorf("%s: JobInsertMany succeeded", name)
		}
		if _, err := exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Jobs: []*driver.JobSetState{{ID: 1, State: "running"}}}); err == nil {
			t.Errorf("%s: JobSetStateIfRunningMany succeeded", name)
		}
		if _, err := exec.Begin(ctx); err == nil {
			t.Errorf("%s: Begin succeeded", name)
		}
		if err := exec.Exec(ctx, "SELECT 1"); err == nil {
			t.Errorf("%s: Exec succeeded", name)
		}
		if _, err := exec.TableExists(ctx, &driver.TableExistsParams{Table: "river_job"}); err == nil {
			t.Errorf("%s: TableExists succeeded", name)
		}
	}
	if _, err := drv.UnwrapTx(nil); err == nil {
		t.Error("UnwrapTx(nil) succeeded")
	}
}
