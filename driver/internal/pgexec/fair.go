package pgexec

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
)

// Fairness within a queue: the partitions table and the fair fetch's lock.

// A partition's Args as text for a jsonb parameter ({} when empty).
func fairArgs(b []byte) string {
	if len(b) == 0 {
		return "{}"
	}
	return string(b)
}

// fairFilter splits a partition's Args into the object its jobs' args
// contain (the non-null values) and the keys they lack (the nulls).
func fairFilter(args []byte) (filter string, missing []string, err error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(fairArgs(args)), &m); err != nil {
		return "", nil, fmt.Errorf("partition args %q: %w", args, err)
	}
	present := map[string]json.RawMessage{}
	missing = []string{}
	for k, v := range m {
		if string(v) == "null" {
			missing = append(missing, k)
		} else {
			present[k] = v
		}
	}
	slices.Sort(missing)
	b, err := json.Marshal(present)
	if err != nil {
		return "", nil, fmt.Errorf("partition args %q: %w", args, err)
	}
	return string(b), missing, nil
}

// The rows after the cursor in (kind, args) order: the rest of a turn of
// the round robin.
var sqlFairPartitionList = `
SELECT kind, args, empty_since FROM {{schema}}millrace_fair_partition
WHERE queue = $1 AND ($2::text IS NULL OR (kind, args) > ($2::text, $3::jsonb))
    AND ($5::text[] IS NULL OR kind = '' OR kind = ANY($5::text[]))
ORDER BY kind, args LIMIT $4`

func (e *executor) FairPartitionList(ctx context.Context, p *driver.FairPartitionListParams) ([]*driver.FairPartition, error) {
	if p.Limit <= 0 {
		return nil, nil
	}
	var afterKind, afterArgs *string
	if p.After != nil {
		k, a := p.After.Kind, fairArgs(p.After.Args)
		afterKind, afterArgs = &k, &a
	}
	var kinds []string
	if len(p.Kinds) > 0 {
		kinds = p.Kinds
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlFairPartitionList), p.Queue, afterKind, afterArgs, p.Limit, kinds)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanFairPartition)
}

func scanFairPartition(row pgx.CollectableRow) (*driver.FairPartition, error) {
	var (
		fp    driver.FairPartition
		args  string
		since *time.Time
	)
	if err := row.Scan(&fp.Kind, &args, &since); err != nil {
		return nil, err
	}
	fp.Args = []byte(args)
	if since != nil {
		t := since.UTC()
		fp.EmptySince = &t
	}
	return &fp, nil
}

// A job's partition: its kind (or ”) and the object of the keys' values,
// JSON null for a key the job lacks or has null (or whose args are not an
// object). A partition whose object is over 1,000 bytes is not registered
// (a btree entry has a size limit, and a failed insert would fail every
// fetch): its jobs are fetched in plain order.
var sqlFairPartitionDiscover = `
WITH keys AS (
    SELECT k FROM unnest($2::text[]) AS t(k)
), src AS (
    SELECT kind, args, row_number() OVER (ORDER BY priority DESC, scheduled_at DESC, id DESC) AS rn FROM (
        SELECT kind, args, priority, scheduled_at, id FROM {{schema}}river_job
        WHERE state = 'available' AND queue = $1
        ORDER BY priority DESC, scheduled_at DESC, id DESC
        LIMIT $4
    ) AS newest
    UNION ALL
    SELECT kind, args, $4 + 1 AS rn FROM {{schema}}river_job WHERE id = ANY($5::bigint[]) AND queue = $1
), parts AS (
    SELECT CASE WHEN $3::boolean THEN src.kind ELSE '' END AS kind,
        (SELECT coalesce(jsonb_object_agg(keys.k, coalesce(src.args -> keys.k, 'null'::jsonb)), '{}'::jsonb) FROM keys) AS args,
        rn
    FROM src
), firsts AS (
    SELECT kind, args, min(rn) AS rn FROM parts GROUP BY kind, args
), added AS (
    INSERT INTO {{schema}}millrace_fair_partition (queue, kind, args)
    SELECT $1, kind, args FROM firsts WHERE octet_length(args::text) <= 1000 ORDER BY kind, args
    ON CONFLICT DO NOTHING
    RETURNING kind, args, empty_since
)
SELECT added.kind, added.args, added.empty_since FROM added
JOIN firsts ON firsts.kind = added.kind AND firsts.args = added.args
ORDER BY firsts.rn, added.kind, added.args`

func (e *executor) FairPartitionDiscover(ctx context.Context, p *driver.FairPartitionDiscoverParams) ([]*driver.FairPartition, error) {
	if p.Newest <= 0 && len(p.IDs) == 0 {
		return nil, nil
	}
	ids := p.IDs
	if ids == nil {
		ids = []int64{}
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlFairPartitionDiscover), p.Queue, nonNilStrings(p.Keys), p.ByKind, max(p.Newest, 0), ids)
	if err != nil {
		return nil, err
	}
	added, err := pgx.CollectRows(rows, scanFairPartition)
	if err != nil {
		return nil, err
	}
	return added, nil
}

// sqlJobFairLock[k] locks the jobs of a fair fetch of k shares: one CTE
// per share (its values are parameters, planned as constants under
// force_custom_plan), then the rest in plain fetch order. A share's
// conditions fold away where they do not apply (no kind, no missing key):
// a subquery there (an anti-join over the missing keys) made the planner
// expect one row of a 200,000-job partition and read it all, 100 ms a
// fetch. A job lacks a key when jsonb_strip_nulls drops it (missing or
// null at the top level). A row locked by
// one share is not skipped by another (the locks are this transaction's),
// so plain order excludes the shares' rows, and JobFairLock drops a row
// two overlapping shares both took.
var sqlJobFairLock [driver.MaxFairShares + 1]string

func init() {
	for k := range sqlJobFairLock {
		sqlJobFairLock[k] = buildFairLock(k)
	}
}

func buildFairLock(k int) string {
	const due = `state = 'available' AND queue = $1 AND scheduled_at <= now()
            AND ($2::text[] IS NULL OR kind = ANY($2::text[]))`
	var b strings.Builder
	b.WriteString("WITH ")
	for i := range k {
		n := func(j int) string { return "$" + strconv.Itoa(4+4*i+j) }
		fmt.Fprintf(&b, `s%d AS (
    SELECT id, priority, row_number() OVER (ORDER BY priority, scheduled_at, id) - 1 AS rank FROM (
        SELECT id, priority, scheduled_at FROM {{schema}}river_job AS j
        WHERE %s
            AND (%s::text = '' OR kind = %s::text) AND args @> %s::jsonb
            AND (cardinality(%s::text[]) = 0 OR NOT (jsonb_strip_nulls(j.args) ?| %s::text[]))
        ORDER BY priority, scheduled_at, id
        LIMIT %s
        FOR UPDATE SKIP LOCKED
    ) AS x
), `, i, due, n(0), n(0), n(1), n(2), n(2), n(3))
	}
	b.WriteString("picked AS (\n    SELECT NULL::int AS share, NULL::bigint AS id, NULL::smallint AS priority, NULL::bigint AS rank WHERE false")
	for i := range k {
		fmt.Fprintf(&b, "\n    UNION ALL SELECT %d, id, priority, rank FROM s%d", i, i)
	}
	fmt.Fprintf(&b, `
), plain AS (
    SELECT id, priority, row_number() OVER (ORDER BY priority, scheduled_at, id) - 1 AS rank FROM (
        SELECT id, priority, scheduled_at FROM {{schema}}river_job
        WHERE %s
            AND id <> ALL(ARRAY(SELECT id FROM picked))
        ORDER BY priority, scheduled_at, id
        LIMIT greatest($3::int - (SELECT count(*) FROM picked), 0)
        FOR UPDATE SKIP LOCKED
    ) AS x
)
SELECT share, id, priority, rank FROM picked
UNION ALL
SELECT -1, id, priority, rank FROM plain`, due)
	return b.String()
}

func (e *executor) JobFairLock(ctx context.Context, p *driver.JobFairLockParams) ([]*driver.FairLocked, error) {
	if len(p.Shares) > driver.MaxFairShares {
		return nil, fmt.Errorf("fair lock: %d shares, at most %d", len(p.Shares), driver.MaxFairShares)
	}
	if p.Max <= 0 {
		return nil, nil
	}
	var kinds []string
	if len(p.Kinds) > 0 {
		kinds = p.Kinds
	}
	args := []any{p.Queue, kinds, p.Max}
	for _, s := range p.Shares {
		filter, missing, err := fairFilter(s.Args)
		if err != nil {
			return nil, fmt.Errorf("fair lock: %w", err)
		}
		args = append(args, s.Kind, filter, missing, max(s.Max, 0))
	}
	// Every share's read planned with its own values: a generic plan
	// reads a small partition through the whole queue.
	if _, err := e.db.Exec(ctx, "SET LOCAL plan_cache_mode = force_custom_plan"); err != nil {
		return nil, err
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobFairLock[len(p.Shares)]), args...)
	if err != nil {
		return nil, err
	}
	var out []*driver.FairLocked
	seen := map[int64]bool{}
	var (
		share    int32
		id       int64
		priority int16
		rank     int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&share, &id, &priority, &rank}, func() error {
		if !seen[id] {
			seen[id] = true
			out = append(out, &driver.FairLocked{ID: id, Priority: int(priority), Share: int(share), Rank: int(rank)})
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// The partition's jobs as the fair lock reads them, for row l.
const sqlFairPartitionJobs = `j.queue = $1 AND (l.kind = '' OR j.kind = l.kind) AND j.args @> jsonb_strip_nulls(l.args)
                AND NOT (jsonb_strip_nulls(j.args) ?| ARRAY(SELECT e.key FROM jsonb_each(l.args) AS e WHERE e.value = 'null'::jsonb))`

// The rows to change are locked first, skipping those another fetch
// holds (what it records is as good), so that this statement never waits:
// two fetches updating rows in different orders, or one waiting here on a
// row the other holds while the other waits on this one's new partition
// row, would deadlock.
var sqlFairPartitionUpdate = `
WITH found AS (
    SELECT kind, args::jsonb AS args FROM unnest($2::text[], $3::text[]) AS t(kind, args)
), empty AS (
    SELECT kind, args::jsonb AS args FROM unnest($4::text[], $5::text[]) AS t(kind, args)
), locked AS (
    SELECT p.kind, p.args, p.empty_since, f.kind IS NOT NULL AS found
    FROM {{schema}}millrace_fair_partition AS p
    LEFT JOIN found AS f ON f.kind = p.kind AND f.args = p.args
    LEFT JOIN empty AS e ON e.kind = p.kind AND e.args = p.args
    WHERE p.queue = $1 AND (f.kind IS NOT NULL OR e.kind IS NOT NULL)
    FOR UPDATE OF p SKIP LOCKED
), cleared AS (
    UPDATE {{schema}}millrace_fair_partition AS p SET empty_since = NULL
    FROM locked AS l
    WHERE p.queue = $1 AND p.kind = l.kind AND p.args = l.args AND l.found AND l.empty_since IS NOT NULL
), marked AS (
    UPDATE {{schema}}millrace_fair_partition AS p SET empty_since = now()
    FROM locked AS l
    WHERE p.queue = $1 AND p.kind = l.kind AND p.args = l.args AND NOT l.found AND l.empty_since IS NULL
), deleted AS (
    DELETE FROM {{schema}}millrace_fair_partition AS p
    USING locked AS l
    WHERE p.queue = $1 AND p.kind = l.kind AND p.args = l.args AND NOT l.found
        AND l.empty_since < now() - $6::bigint * interval '1 microsecond'
        AND NOT EXISTS (
            SELECT 1 FROM {{schema}}river_job AS j
            WHERE j.state IN ('available', 'scheduled', 'retryable', 'running', 'pending')
                AND ` + sqlFairPartitionJobs + `)
    RETURNING 1
)
SELECT count(*) FROM deleted`

func (e *executor) FairPartitionUpdate(ctx context.Context, p *driver.FairPartitionUpdateParams) (int, error) {
	if len(p.Found) == 0 && len(p.Empty) == 0 {
		return 0, nil
	}
	cols := func(ps []*driver.FairPartition) (kinds, args []string) {
		kinds, args = []string{}, []string{}
		for _, fp := range ps {
			kinds = append(kinds, fp.Kind)
			args = append(args, fairArgs(fp.Args))
		}
		return kinds, args
	}
	fk, fa := cols(p.Found)
	ek, ea := cols(p.Empty)
	var n int64
	err := e.db.QueryRow(ctx, e.sql.get(p.Schema, &sqlFairPartitionUpdate), p.Queue, fk, fa, ek, ea, p.Grace.Microseconds()).Scan(&n)
	return int(n), err
}
