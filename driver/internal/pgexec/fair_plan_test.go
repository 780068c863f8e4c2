package pgexec

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/migrate"
)

// fairLockPlan explains the fair lock of shares (partition args) on a
// queue of 50,000 jobs of tenant A and 10 of tenant B, in a transaction
// under the setting JobFairLock makes, and returns the plan's text.
func fairLockPlan(t *testing.T, setting string, shares ...string) string {
	t.Helper()
	ctx := context.Background()
	schema, pool := testdb.NewSchema(t)
	if _, err := migrate.MigrateAll[pgx.Tx](ctx, newTestDriver(pool), &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	table := pgx.Identifier{schema, "river_job"}.Sanitize()
	if _, err := pool.Exec(ctx, `INSERT INTO `+table+` (kind, args, queue) SELECT 'k', jsonb_build_object('tenant', 'A', 'i', i), 'q' FROM generate_series(1, 200000) i;
		INSERT INTO `+table+` (kind, args, queue) SELECT 'k', jsonb_build_object('tenant', 'B', 'i', i), 'q' FROM generate_series(1, 10) i;
		ANALYZE `+table); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, setting); err != nil {
		t.Fatal(err)
	}
	// The statement prepared, as pgx prepares it, and explained as
	// executed with the shares' values (written as literals).
	if _, err := tx.Exec(ctx, "PREPARE fair_lock_plan AS "+renderSchema(schema, sqlJobFairLock[len(shares)])); err != nil {
		t.Fatal(err)
	}
	vals := []string{"'q'", "NULL", "20"}
	for _, s := range shares {
		filter, missing, err := fairFilter([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, "''", quoteLiteral(filter), quoteLiteral("{"+strings.Join(missing, ",")+"}"), "10")
	}
	execute := "EXECUTE fair_lock_plan(" + strings.Join(vals, ", ") + ")"
	for range 6 { // a generic plan, if chosen, comes after five runs
		if _, err := tx.Exec(ctx, execute); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.Query(ctx, "EXPLAIN (COSTS OFF) "+execute, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestFairLockPlans: each share is planned with its own values, so the
// big partition (A) is read in queue order by the fetch index and the
// small one (B) through the GIN index on args, and nothing reads the
// table through. Under a generic plan (what a prepared statement gets
// without the setting) the shares cannot tell, which is what the setting
// is for: the check catches it.
func TestFairLockPlans(t *testing.T) {
	t.Parallel()
	check := func(plan string) []string {
		var bad []string
		if strings.Contains(plan, "Seq Scan on river_job") {
			bad = append(bad, "a sequential scan of river_job")
		}
		if strings.Count(plan, "river_job_prioritized_fetching_index") < 2 { // A's share and plain order
			bad = append(bad, "A's share not by the fetch index")
		}
		if !strings.Contains(plan, "Bitmap Index Scan on river_job_args_index") {
			bad = append(bad, "B's share not through the GIN index")
		}
		return bad
	}
	t.Run("Custom", func(t *testing.T) {
		t.Parallel()
		plan := fairLockPlan(t, "SET LOCAL plan_cache_mode = force_custom_plan", `{"tenant":"A"}`, `{"tenant":"B"}`, `{"tenant":null}`)
		if bad := check(plan); len(bad) > 0 {
			t.Fatalf("fair lock plan has %v:\n%s", bad, plan)
		}
	})
	t.Run("GenericControl", func(t *testing.T) {
		t.Parallel()
		plan := fairLockPlan(t, "SET LOCAL plan_cache_mode = force_generic_plan", `{"tenant":"A"}`, `{"tenant":"B"}`, `{"tenant":null}`)
		if bad := check(plan); len(bad) == 0 {
			t.Fatalf("the check passes a generic plan too, so it cannot tell:\n%s", plan)
		}
	})
}
