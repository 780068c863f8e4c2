package pgexec

import (
	"context"
	"crypto/sha256"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The replacing insert passes each row's flags to its conflict's update
// through the unique key (IN (SELECT unique_key FROM input WHERE flag)).
// Each of those subqueries must run once per statement (hashed), not once
// per conflicting row: that would make a batch cost grow with its square.
func TestInsertReplaceFlagsAreReadOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool, drv := migratedSchema(t)
	const n = 2000
	table := pgx.Identifier{schema, "river_job"}.Sanitize()
	if _, err := pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (kind, args, queue, unique_key, unique_states)
		SELECT 'k', '{}', 'default', sha256(i::text::bytea), B'11110101' FROM generate_series(1, %d) AS i;
		ANALYZE %s`, table, n, table)); err != nil {
		t.Fatal(err)
	}
	args, kinds, queues, states, tags := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	times, metadata := make([]*time.Time, n), make([]*string, n)
	small, keys, masks, flags := make([]int16, n), make([][]byte, n), make([]int32, n), make([]bool, n)
	for i := range n {
		args[i], kinds[i], queues[i], states[i], small[i], masks[i] = "{}", "k", "default", "available", 1, 0xF5
		key := sha256.Sum256([]byte(fmt.Sprint(i + 1)))
		keys[i], flags[i] = key[:], i%2 == 0
	}
	scanLoops := regexp.MustCompile(`CTE Scan on input\b.*\bloops=(\d+)\)`)
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		t.Run(mode, func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
			if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = "+mode); err != nil {
				t.Fatal(err)
			}
			rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF) "+drv.sql.get(schema, &sqlJobInsertManyReplace),
				args, times, kinds, small, metadata, small, queues, times, states, tags, keys, masks, []string{}, flags, flags)
			if err != nil {
				t.Fatal(err)
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			plan := strings.Join(lines, "\n")
			if !strings.Contains(plan, fmt.Sprintf("Conflicting Tuples: %d", n)) {
				t.Fatalf("want %d conflicts:\n%s", n, plan)
			}
			subplans := 0
			for i, l := range lines {
				if !strings.Contains(l, "SubPlan") || i+1 == len(lines) {
					continue
				}
				m := scanLoops.FindStringSubmatch(lines[i+1])
				if m == nil {
					continue
				}
				subplans++
				if m[1] != "1" {
					t.Errorf("a subquery on the flags ran %s times for %d conflicts:\n%s", m[1], n, plan)
				}
			}
			if subplans != 3 {
				t.Fatalf("found %d subqueries on the flags, want 3:\n%s", subplans, plan)
			}
		})
	}
}
