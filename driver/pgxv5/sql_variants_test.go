package pgxv5

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

	if n := strings.Count(sqlJobSetStateUpdate, "(j.state = 'running' AND (u.attempt = 0 OR j.attempt = u.attempt))"); n != 8 {
		t.Errorf("the completer's ours condition is written %d times, want 8 (one changed without the others?)", n)
	}
}
