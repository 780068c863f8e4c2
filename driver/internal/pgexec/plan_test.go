package pgexec

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/migrate"
)

// migratedSchema is a fresh schema at the latest migration, with its pool
// and a driver on it.
func migratedSchema(t *testing.T) (string, *pgxpool.Pool, *testDriver) {
	t.Helper()
	schema, pool := testdb.NewSchema(t)
	drv := newTestDriver(pool)
	m, err := migrate.New[pgx.Tx](drv, &migrate.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(context.Background(), migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	return schema, pool, drv
}

// planConn acquires a connection of pool for plan tests; at cleanup it
// drops what they prepared and resets plan_cache_mode, so nothing is left
// behind on a pooled connection, and goes back to the pool.
func planConn(t *testing.T, pool *pgxpool.Pool) *pgxpool.Conn {
	t.Helper()
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DEALLOCATE ALL; RESET plan_cache_mode")
		conn.Release()
	})
	return conn
}

// explain runs an EXPLAIN statement on q and returns the plan's text.
func explain(t *testing.T, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string) string {
	t.Helper()
	rows, err := q.Query(context.Background(), sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// The fetch is a prepared statement, so after a few runs Postgres may use
// its generic plan, which cannot see LIMIT's value and assumes a tenth of
// the table. The plan must still find the locked rows by index lookups, not
// by a join that walks a whole index or the table on every fetch (which is
// what made a queue of a million jobs ten times slower).
func TestFetchGenericPlanIsIndexLookups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool, drv := migratedSchema(t)
	table := pgx.Identifier{schema, "river_job"}.Sanitize()
	if _, err := pool.Exec(ctx, `INSERT INTO `+table+` (kind, args, queue) SELECT 'k', '{}', 'default' FROM generate_series(1, 50000);
		ANALYZE `+table); err != nil {
		t.Fatal(err)
	}
	conn := planConn(t, pool)
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Conn().Prepare(ctx, "fetch_plan_test", drv.sql.get(schema, &sqlJobGetAvailable)); err != nil {
		t.Fatal(err)
	}
	plan := explain(t, conn, `EXPLAIN EXECUTE fetch_plan_test('default', NULL, 200, 'test', '{k}')`)
	for _, bad := range []string{"Join", "Seq Scan"} {
		if strings.Contains(plan, bad) {
			t.Fatalf("the fetch's generic plan has a %s:\n%s", bad, plan)
		}
	}

	// The fetch continuing after a key starts its index scan at the key:
	// the row comparison is part of the index condition, not a filter.
	if _, err := conn.Conn().Prepare(ctx, "fetch_after_plan_test", drv.sql.get(schema, &sqlJobGetAvailableAfter)); err != nil {
		t.Fatal(err)
	}
	plan = explain(t, conn, `EXPLAIN EXECUTE fetch_after_plan_test('default', NULL, 200, 'test', '{k}', 1, now(), 25000)`)
	if strings.Contains(plan, "Join") || strings.Contains(plan, "Seq Scan") ||
		!regexp.MustCompile(`Index Cond: .*ROW\(priority, scheduled_at, id\) >`).MatchString(plan) {
		t.Fatalf("the continued fetch's generic plan does not start at the key:\n%s", plan)
	}
}

// The completer's statements, plain, with deletes and of deletes alone
// (ephemeral jobs), must find their rows by primary key whatever plan Postgres picks: a
// scan of the state index's running range (which, until a vacuum, holds an
// entry for every job that ever ran) or a join that compares every outcome
// with every row makes each batch cost more than the last.
func TestCompleterPlansAreKeyLookups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool, drv := migratedSchema(t)
	// 50,000 jobs ran and were deleted (their dead index entries remain),
	// 200 run now, 50,000 wait.
	table := pgx.Identifier{schema, "river_job"}.Sanitize()
	if _, err := pool.Exec(ctx, `INSERT INTO `+table+` (kind, args, queue) SELECT 'k', '{}', 'default' FROM generate_series(1, 100000);
		ANALYZE `+table+`;
		UPDATE `+table+` SET state = 'running', attempt = 1 WHERE id <= 50000;
		DELETE FROM `+table+` WHERE id <= 49800`); err != nil {
		t.Fatal(err)
	}
	conn := planConn(t, pool)

	const n = 200
	cols := make([][]string, 11)
	for i := range n {
		for c, v := range []string{fmt.Sprint(49801 + i), "completed", `"2026-01-01T00:00:00Z"`, "NULL", "NULL", "f", "f", "NULL", "1", "f", "t"} {
			cols[c] = append(cols[c], v)
		}
	}
	args := make([]string, len(cols))
	for c := range cols {
		args[c] = "'{" + strings.Join(cols[c], ",") + "}'"
	}
	for _, st := range []struct {
		name string
		sql  *string
		cols []int // the columns above passed, in order
	}{
		{"plain", &sqlJobSetStateIfRunningMany, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"deleting", &sqlJobSetStateDeleting, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"deletes_alone", &sqlJobDeleteAll, []int{0, 8}},
		{"deletes_alone_rows", &sqlJobDeleteAllRows, []int{0, 8, 2, 7}},
		{"completions_alone", &sqlJobCompleteAll, []int{0, 8, 2}},
	} {
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			t.Run(st.name+"_"+mode, func(t *testing.T) {
				if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
					t.Fatal(err)
				}
				name := "completer_plan_" + st.name + "_" + mode
				if _, err := conn.Conn().Prepare(ctx, name, drv.sql.get(schema, st.sql)); err != nil {
					t.Fatal(err)
				}
				// Run for real in a transaction rolled back afterwards.
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
				var params []string
				for _, c := range st.cols {
					params = append(params, args[c])
				}
				plan := explain(t, tx, "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE "+name+"("+strings.Join(params, ", ")+")")
				for _, bad := range []string{"prioritized_fetching_index", "Seq Scan on river_job", "Rows Removed by Join Filter"} {
					if strings.Contains(plan, bad) {
						t.Fatalf("plan has %q:\n%s", bad, plan)
					}
				}
				if !strings.Contains(plan, "river_job_pkey") {
					t.Fatalf("plan does not use the primary key:\n%s", plan)
				}
			})
		}
	}
}
