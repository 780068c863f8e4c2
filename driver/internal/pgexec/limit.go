package pgexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

const limitCols = `queue, kind, global_limit, local_limit, partition_limit, partition_by_kind, partition_args, created_at, updated_at`

var sqlLimitGetMany = `
SELECT ` + limitCols + ` FROM {{schema}}millrace_limit
WHERE $1 = '' OR queue = $1
ORDER BY queue, kind`

func scanLimit(row pgx.CollectableRow) (*driver.LimitRow, error) {
	var (
		r                     driver.LimitRow
		global, local, perPar *int32
		created, updated      time.Time
	)
	if err := row.Scan(&r.Queue, &r.Limit.Kind, &global, &local, &perPar, &r.Limit.PartitionByKind,
		&r.Limit.PartitionByArgs, &created, &updated); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		dst *int
		src *int32
	}{{&r.Limit.Global, global}, {&r.Limit.Local, local}, {&r.Limit.PerPartition, perPar}} {
		if f.src != nil {
			*f.dst = int(*f.src)
		}
	}
	if len(r.Limit.PartitionByArgs) == 0 {
		r.Limit.PartitionByArgs = nil
	}
	r.CreatedAt, r.UpdatedAt = created.UTC(), updated.UTC()
	return &r, nil
}

func (e *executor) LimitGetMany(ctx context.Context, p *driver.LimitGetManyParams) ([]*driver.LimitRow, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlLimitGetMany), p.Queue)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanLimit)
}

// The upsert and its notification in one statement.
var sqlLimitSet = `
WITH upserted AS (
    INSERT INTO {{schema}}millrace_limit AS l (queue, kind, global_limit, local_limit, partition_limit, partition_by_kind, partition_args)
    VALUES ($1, $2, nullif($3::int, 0), nullif($4::int, 0), nullif($5::int, 0), $6, $7::text[])
    ON CONFLICT (queue, kind) DO UPDATE SET
        global_limit = excluded.global_limit, local_limit = excluded.local_limit,
        partition_limit = excluded.partition_limit, partition_by_kind = excluded.partition_by_kind,
        partition_args = excluded.partition_args, updated_at = now()
    RETURNING ` + limitCols + `
), unbound AS (
    DELETE FROM {{schema}}millrace_limit_bound WHERE queue = $1
)
SELECT ` + limitCols + ` FROM upserted, (SELECT pg_notify({{control_channel}}, $8)) AS n`

func limitsChangedPayload(queue string) (string, error) {
	b, err := json.Marshal(struct {
		Action string `json:"action"`
		Queue  string `json:"queue"`
	}{driver.ControlActionLimitsChanged, queue})
	return string(b), err
}

func (e *executor) LimitSet(ctx context.Context, p *driver.LimitSetParams) (*driver.LimitRow, error) {
	if p.Queue == "" {
		return nil, errors.New("set limit: empty queue name")
	}
	payload, err := limitsChangedPayload(p.Queue)
	if err != nil {
		return nil, err
	}
	l := p.Limit
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlLimitSet), p.Queue, l.Kind, l.Global, l.Local, l.PerPartition,
		l.PartitionByKind, nonNilStrings(l.PartitionByArgs), payload)
	if err != nil {
		return nil, err
	}
	row, err := pgx.CollectExactlyOneRow(rows, scanLimit)
	if err != nil {
		return nil, fmt.Errorf("set limit of queue %q kind %q: %w", p.Queue, l.Kind, err)
	}
	return row, nil
}

var sqlLimitDelete = `
WITH deleted AS (
    DELETE FROM {{schema}}millrace_limit WHERE queue = $1 AND kind = $2 RETURNING queue
), unbound AS (
    DELETE FROM {{schema}}millrace_limit_bound WHERE queue = $1
)
SELECT count(*), CASE WHEN count(*) > 0 THEN pg_notify({{control_channel}}, $3)::text END FROM deleted`

func (e *executor) LimitDelete(ctx context.Context, p *driver.LimitDeleteParams) (bool, error) {
	payload, err := limitsChangedPayload(p.Queue)
	if err != nil {
		return false, err
	}
	var n int64
	var notified *string
	if err := e.db.QueryRow(ctx, e.sql.get(p.Schema, &sqlLimitDelete), p.Queue, p.Kind, payload).Scan(&n, &notified); err != nil {
		return false, err
	}
	return n > 0, nil
}

// The running jobs grouped, then the candidates, each with its place in
// fetch order (ord); running rows have a NULL id. A job's part is the
// jsonb text of each key's value (” for a missing key or a JSON null).
var sqlJobLimitScan = `
WITH keys AS (
    SELECT k, o FROM unnest($2::text[]) WITH ORDINALITY AS t(k, o)
)
SELECT NULL::bigint AS id, kind, part, count(*)::bigint AS n FROM (
    SELECT j.kind, ARRAY(SELECT coalesce(nullif(j.args -> keys.k, 'null'::jsonb)::text, '') FROM keys ORDER BY keys.o) AS part
    FROM {{schema}}river_job AS j
    WHERE j.state = 'running' AND j.queue = $1
) AS r
GROUP BY kind, part
UNION ALL
SELECT id, kind, part, ord FROM (
    SELECT id, kind, part, row_number() OVER (ORDER BY ($6::int > 0 AND rn > $6::int), priority, scheduled_at, id) AS ord FROM (
        SELECT a.*, row_number() OVER (PARTITION BY kind, part ORDER BY priority, scheduled_at, id) AS rn FROM (
            SELECT j.id, j.kind, j.priority, j.scheduled_at,
                ARRAY(SELECT coalesce(nullif(j.args -> keys.k, 'null'::jsonb)::text, '') FROM keys ORDER BY keys.o) AS part
            FROM {{schema}}river_job AS j
            WHERE $4::int > 0 AND j.state = 'available' AND j.queue = $1 AND j.scheduled_at <= now()
                AND ($3::text[] IS NULL OR j.kind = ANY($3::text[]))
        ) AS a
    ) AS w
    WHERE $5::int = 0 OR rn <= $5::int
    ORDER BY ($6::int > 0 AND rn > $6::int), priority, scheduled_at, id
    LIMIT $4::int
) AS c`

func (e *executor) JobLimitScan(ctx context.Context, p *driver.JobLimitScanParams) (*driver.JobLimitScanResult, error) {
	var kinds []string
	if len(p.Kinds) > 0 {
		kinds = p.Kinds
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobLimitScan), p.Queue, nonNilStrings(p.Keys), kinds,
		max(p.Candidates, 0), max(p.PerGroup, 0), max(p.FirstPerGroup, 0))
	if err != nil {
		return nil, err
	}
	res := &driver.JobLimitScanResult{}
	type cand struct {
		c   *driver.JobLimitCandidate
		ord int64
	}
	var cands []cand
	var (
		id   *int64
		kind string
		part []string
		n    int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &kind, &part, &n}, func() error {
		if id == nil {
			res.Running = append(res.Running, &driver.JobLimitGroup{Kind: kind, Part: part, Count: int(n)})
		} else {
			cands = append(cands, cand{&driver.JobLimitCandidate{ID: *id, Kind: kind, Part: part}, n})
		}
		return nil
	}); err != nil {
		return nil, err
	}
	slices.SortFunc(cands, func(a, b cand) int { return int(a.ord - b.ord) })
	for _, c := range cands {
		res.Available = append(res.Available, c.c)
	}
	return res, nil
}

var sqlJobGetAvailableByID = `
WITH locked AS (
    SELECT id FROM {{schema}}river_job
    WHERE id = ANY($1::bigint[]) AND state = 'available' AND scheduled_at <= now()
    ORDER BY id
    FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE {{schema}}river_job AS j SET
        state = 'running',
        attempt = j.attempt + 1,
        attempted_at = now(),
        attempted_by = ` + sqlAppendAttemptedBy("$2", "            ") + `
    WHERE j.id = ANY(ARRAY(SELECT id FROM locked))
    RETURNING ` + jobColsJ + `
)
SELECT * FROM updated ORDER BY priority, scheduled_at, id`

func (e *executor) JobGetAvailableByID(ctx context.Context, p *driver.JobGetAvailableByIDParams) ([]*millracetype.JobRow, error) {
	if len(p.IDs) == 0 {
		return nil, nil
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobGetAvailableByID), p.IDs, p.ClientID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanJob)
}

var sqlLimitBoundGet = `SELECT bound FROM {{schema}}millrace_limit_bound WHERE queue = $1`

// LimitLockRead implements driver.LimitLockReader: on a Tx that batches
// (pgx), the lock and both reads go in one round trip; on another, they
// are the three statements one after the other.
func (t *executorTx) LimitLockRead(ctx context.Context, p *driver.LimitLockReadParams) (*driver.LimitLockReadResult, error) {
	b, ok := t.tx.(Batcher)
	if !ok {
		return driver.LimitLockReadEach(ctx, t, p)
	}
	var batch pgx.Batch
	batch.Queue(sqlAdvisoryXactLock, p.LockKey)
	batch.Queue(t.sql.get(p.Schema, &sqlLimitGetMany), p.Queue)
	batch.Queue(t.sql.get(p.Schema, &sqlLimitBoundGet), p.Queue)
	br := b.SendBatch(ctx, &batch)
	res, err := readLimitLockBatch(br)
	// Close reports an error the reads did not (one that came after them).
	if cerr := br.Close(); err == nil && cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// readLimitLockBatch reads the three results of LimitLockRead's batch.
func readLimitLockBatch(br pgx.BatchResults) (*driver.LimitLockReadResult, error) {
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	res := &driver.LimitLockReadResult{}
	if res.Limits, err = pgx.CollectRows(rows, scanLimit); err != nil {
		return nil, err
	}
	var bound int64
	switch err := br.QueryRow().Scan(&bound); {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, err
	default:
		res.Bound, res.BoundOK = int(bound), true
	}
	return res, nil
}

func (e *executor) LimitBoundGet(ctx context.Context, p *driver.LimitBoundParams) (int, bool, error) {
	var bound int64
	err := e.db.QueryRow(ctx, e.sql.get(p.Schema, &sqlLimitBoundGet), p.Queue).Scan(&bound)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return int(bound), true, nil
}

var sqlLimitBoundSet = `
INSERT INTO {{schema}}millrace_limit_bound (queue, bound) VALUES ($1, $2)
ON CONFLICT (queue) DO UPDATE SET bound = excluded.bound, updated_at = now()`

func (e *executor) LimitBoundSet(ctx context.Context, p *driver.LimitBoundParams) error {
	_, err := e.db.Exec(ctx, e.sql.get(p.Schema, &sqlLimitBoundSet), p.Queue, int64(p.Bound))
	return err
}
