package pgexec

import (
	"strings"
	"testing"
)

// The statements' variants are written out in full; these checks keep
// each one the same as the statement it varies, but for its difference.
func TestSQLVariantsDifferOnlyAsDocumented(t *testing.T) {
	const kinds = "\n        AND ($5::text[] IS NULL OR kind = ANY($5::text[]))"
	const after = "\n        AND (priority, scheduled_at, id) > ($6::smallint, $7::timestamptz, $8::bigint)"
	if strings.Count(sqlJobGetAvailable, kinds) != 1 {
		t.Fatal("the fetch's kinds condition is not where the check expects it")
	}
	if want := strings.Replace(sqlJobGetAvailable, kinds, kinds+after, 1); sqlJobGetAvailableAfter != want {
		t.Errorf("sqlJobGetAvailableAfter is not the fetch plus the cursor condition:\n%s\nwant:\n%s", sqlJobGetAvailableAfter, want)
	}

	const returningIDs = "\n    RETURNING j.id\n)"
	if !strings.HasSuffix(sqlJobSetStateDeleteCTE, returningIDs) {
		t.Fatal("the delete CTE does not end as the check expects")
	}
	want := strings.TrimSuffix(sqlJobSetStateDeleteCTE, returningIDs) + "\n    RETURNING " + deletedJobCols + "\n)"
	if sqlJobSetStateDeleteCTERows != want {
		t.Errorf("sqlJobSetStateDeleteCTERows is not the delete CTE returning rows:\n%s\nwant:\n%s", sqlJobSetStateDeleteCTERows, want)
	}

	const skipLive = `
    AND NOT EXISTS (SELECT 1 FROM {{schema}}millrace_client AS c
        WHERE c.client_id = attempted_by[cardinality(attempted_by)] AND c.heartbeat_at >= now() - c.heartbeat_timeout)`
	const stuckAfter = " AND id > $3"
	if strings.Count(sqlJobGetStuck, stuckAfter) != 1 {
		t.Fatal("the stuck page's id condition is not where the check expects it")
	}
	if want := strings.Replace(strings.Replace(sqlJobGetStuck, stuckAfter, stuckAfter+skipLive, 1), skipLive+" ORDER BY", skipLive+"\nORDER BY", 1); sqlJobGetStuckSkipLive != want {
		t.Errorf("sqlJobGetStuckSkipLive is not the stuck page plus the live-client condition:\n%s\nwant:\n%s", sqlJobGetStuckSkipLive, want)
	}

	// The replacing insert: the hot insert plus two flag columns and the
	// conflict's update.
	want = sqlJobInsertMany
	for _, d := range []struct{ from, to string }{
		{"nullif(u.unique_states, 0)::bit(8) AS unique_states\n",
			"nullif(u.unique_states, 0)::bit(8) AS unique_states, u.replace_args, u.replace_scheduled_at\n"},
		{"$12::integer[])", "$12::integer[],\n        $14::boolean[], $15::boolean[])"},
		{"unique_key, unique_states, ord)", "unique_key, unique_states, replace_args, replace_scheduled_at, ord)"},
		{"DO UPDATE SET kind = j.kind\n", "DO UPDATE SET\n" + replaceUpdate},
	} {
		if strings.Count(want, d.from) != 1 {
			t.Fatalf("the insert does not contain %q once, as the check expects", d.from)
		}
		want = strings.Replace(want, d.from, d.to, 1)
	}
	if sqlJobInsertManyReplace != want {
		t.Errorf("sqlJobInsertManyReplace is not the insert plus the replacement:\n%s\nwant:\n%s", sqlJobInsertManyReplace, want)
	}

	if n := strings.Count(sqlJobSetStateUpdate, "(j.state = 'running' AND (u.attempt = 0 OR j.attempt = u.attempt))"); n != 8 {
		t.Errorf("the completer's ours condition is written %d times, want 8 (one changed without the others?)", n)
	}
}

// replaceUpdate is the conflict's update of sqlJobInsertManyReplace.
const replaceUpdate = `            args = CASE
                WHEN j.state IN ('available', 'pending', 'retryable', 'scheduled')
                    AND excluded.unique_key IN (SELECT unique_key FROM input WHERE replace_args)
                THEN excluded.args ELSE j.args END,
            scheduled_at = CASE
                WHEN j.state IN ('available', 'pending', 'retryable', 'scheduled')
                    AND excluded.unique_key IN (SELECT unique_key FROM input WHERE replace_scheduled_at)
                THEN excluded.scheduled_at ELSE j.scheduled_at END,
            state = CASE
                WHEN j.state IN ('available', 'retryable', 'scheduled')
                    AND excluded.unique_key IN (SELECT unique_key FROM input WHERE replace_scheduled_at)
                THEN excluded.state ELSE j.state END
`

// TestInsertPlainIsInsertManyWithoutConflict: the statement of JobInsertCopy
// on a DB without COPY is the batch insert with its conflict clause taken
// out, and nothing else.
func TestInsertPlainIsInsertManyWithoutConflict(t *testing.T) {
	if strings.Count(sqlJobInsertMany, sqlInsertConflict) != 1 {
		t.Fatalf("the conflict clause is not in sqlJobInsertMany once")
	}
	if strings.Contains(sqlJobInsertPlain, "ON CONFLICT") {
		t.Fatalf("sqlJobInsertPlain still has a conflict clause:\n%s", sqlJobInsertPlain)
	}
	if got := len(sqlJobInsertMany) - len(sqlJobInsertPlain); got != len(sqlInsertConflict) {
		t.Fatalf("sqlJobInsertPlain is %d bytes shorter than sqlJobInsertMany; want %d", got, len(sqlInsertConflict))
	}
}
