package client

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/migrate"
)

// notMigratedClient makes a working client on schema over pool (nothing
// migrated unless the test did it).
func notMigratedClient(t *testing.T, drv *pgxv5.Driver, schema string) *Client[pgx.Tx] {
	t.Helper()
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { return nil }))
	return newClientOn(t, drv, schema, &Config{Queues: oneQueue(2), Workers: workers})
}

func wantNotMigrated(t *testing.T, what string, err error, schema string, parts ...string) {
	t.Helper()
	if !errors.Is(err, ErrNotMigrated) {
		t.Fatalf("%s: want ErrNotMigrated, got %v", what, err)
	}
	msg := err.Error()
	for _, p := range append([]string{`schema "` + schema + `"`, "millrace migrate up", "--schema " + schema}, parts...) {
		if !strings.Contains(msg, p) {
			t.Fatalf("%s: error does not say %q:\n%s", what, p, msg)
		}
	}
}

// TestNotMigratedStartAndInsert: on a schema without millrace's tables,
// Start and every insert fail with ErrNotMigrated naming the schema and how
// to migrate it, instead of raw SQL errors.
func TestNotMigratedStartAndInsert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool := testdb.NewSchema(t)
	drv := pgxv5.New(pool)
	c := notMigratedClient(t, drv, schema)

	err := c.Start(ctx)
	wantNotMigrated(t, "Start", err, schema, "has no millrace (River) tables")

	_, err = c.Insert(ctx, noopArgs{}, nil)
	wantNotMigrated(t, "Insert", err, schema, "has no millrace (River) tables")
	if strings.Count(err.Error(), "SQLSTATE") != 1 {
		t.Fatalf("Insert: the database error should be kept once as the cause: %v", err)
	}
	_, err = c.InsertMany(ctx, []InsertManyParams{{Args: noopArgs{}}, {Args: noopArgs{N: 1}}})
	wantNotMigrated(t, "InsertMany", err, schema)
	_, err = c.InsertManyFast(ctx, []InsertManyParams{{Args: noopArgs{}}})
	wantNotMigrated(t, "InsertManyFast", err, schema)

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = c.InsertTx(ctx, tx, noopArgs{}, nil)
	wantNotMigrated(t, "InsertTx", err, schema)
}

// TestNotMigratedOlderVersion: a schema migrated to an older version fails
// Start with the missing versions named.
func TestNotMigratedOlderVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool := testdb.NewSchema(t)
	drv := pgxv5.New(pool)
	m, err := migrate.New[pgx.Tx](drv, &migrate.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: 6}); err != nil {
		t.Fatal(err)
	}
	c := notMigratedClient(t, drv, schema)
	err = c.Start(ctx)
	wantNotMigrated(t, "Start at version 6", err, schema, "lacks versions 7, 8 of migration line main")
	var nm *NotMigratedError
	if !errors.As(err, &nm) || len(nm.Missing) != 2 || nm.Missing[0] != 7 || nm.Schema != schema {
		t.Fatalf("NotMigratedError: %+v", nm)
	}

	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	// Line main complete, line millrace missing: a working client needs
	// it (its heartbeat table); inserting does not.
	err = c.Start(ctx)
	all := make([]string, RequiredMillraceMigrationVersion)
	for i := range all {
		all[i] = strconv.Itoa(i + 1)
	}
	wantNotMigrated(t, "Start without the millrace line", err, schema, "lacks versions "+strings.Join(all, ", ")+" of migration line millrace")
	if !errors.As(err, &nm) || len(nm.Missing) != 0 || len(nm.MissingMillrace) != RequiredMillraceMigrationVersion || nm.MissingMillrace[0] != 1 {
		t.Fatalf("NotMigratedError without the millrace line: %+v", nm)
	}
	if _, err := c.Insert(ctx, noopArgs{}, nil); err != nil {
		t.Fatalf("Insert without the millrace line: %v", err)
	}
	if _, err := migrate.MigrateAll[pgx.Tx](ctx, drv, &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start once migrated: %v", err)
	}
}

// TestNotMigratedSchemaMissing: a schema that does not exist is named as
// such, for Start and Insert.
func TestNotMigratedSchemaMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool := testdb.NewSchema(t)
	missing := schema + "_nope"
	c := notMigratedClient(t, pgxv5.New(pool), missing)
	err := c.Start(ctx)
	wantNotMigrated(t, "Start", err, missing, "does not exist; create it (CREATE SCHEMA "+missing+")")
	_, err = c.Insert(ctx, noopArgs{}, nil)
	wantNotMigrated(t, "Insert", err, missing, "does not exist")
}

// TestRequiredMigrationVersionIsLatest keeps the client's required version
// in step with the migrations it ships with.
func TestRequiredMigrationVersionIsLatest(t *testing.T) {
	t.Parallel()
	m, err := migrate.New[pgx.Tx](pgxv5.New(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Latest() != RequiredMigrationVersion {
		t.Fatalf("RequiredMigrationVersion = %d, migrate's latest is %d", RequiredMigrationVersion, m.Latest())
	}
}

// TestNotMigratedInsertOlderVersion: an insert into a schema at version 5
// (before unique_states) fails with ErrNotMigrated naming the missing
// versions, not with the raw "column does not exist".
func TestNotMigratedInsertOlderVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool := testdb.NewSchema(t)
	drv := pgxv5.New(pool)
	m, err := migrate.New[pgx.Tx](drv, &migrate.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: 5}); err != nil {
		t.Fatal(err)
	}
	c := notMigratedClient(t, drv, schema)
	_, err = c.Insert(ctx, noopArgs{}, nil)
	wantNotMigrated(t, "Insert at version 5", err, schema, "lacks versions 6, 7, 8 of migration line main")
	_, err = c.InsertManyFast(ctx, []InsertManyParams{{Args: noopArgs{}}})
	wantNotMigrated(t, "InsertManyFast at version 5", err, schema, "lacks versions 6, 7, 8 of migration line main")
}
