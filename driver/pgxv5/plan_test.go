package pgxv5

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/migrate"
)

// The fetch is a prepared statement, so after a few runs Postgres may use
// its generic plan, which cannot see LIMIT's value and assumes a tenth of
// the table. The plan must still find the locked rows by index lookups, not
// by a join that walks a whole index or the table on every fetch (which is
// what made a queue of a million jobs ten times slower).
func TestFetchGenericPlanIsIndexLookups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool := testdb.NewSchema(t)
	drv := New(pool)
	m, err := migrate.New[pgx.Tx](drv, &migrate.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	table := pgx.Identifier{schema, "river_job"}.Sanitize()
	if _, err := pool.Exec(ctx, `INSERT INTO `+table+` (kind, args, queue) SELECT 'k', '{}', 'default' FROM generate_series(1, 50000);
		ANALYZE `+table); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// Leave no prepared statement or setting behind on a pooled connection.
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "DEALLOCATE ALL; RESET plan_cache_mode") }()
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Conn().Prepare(ctx, "fetch_plan_test", drv.sql.get(schema, &sqlJobGetAvailable)); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `EXPLAIN EXECUTE fetch_plan_test('default', NULL, 200, 'test', '{k}')`, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	for _, bad := range []string{"Join", "Seq Scan"} {
		if strings.Contains(plan, bad) {
			t.Fatalf("the fetch's generic plan has a %s:\n%s", bad, plan)
		}
	}
}
