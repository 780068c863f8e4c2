package pgexec

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// The clock, the current window counts and the current pauses in one
// statement: row type 0 is the clock, 1 a count, 2 a pause. The clock is
// now(), the transaction's start: the time a fetch in the same
// transaction writes as the jobs' attempted_at, so each job counts in the
// window its attempted_at is in.
var sqlRateStateRead = `
WITH n AS MATERIALIZED (SELECT now() AS now)
SELECT 0, n.now, NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::int, NULL::jsonb FROM n
UNION ALL
SELECT 1, n.now, r.rate_key, r.window_start, r.window_end, r.started, NULL::jsonb
FROM {{schema}}millrace_rate AS r, n WHERE r.queue = $1 AND r.window_end > n.now
UNION ALL
SELECT 2, n.now, p.kind, NULL::timestamptz, p.paused_until, NULL::int, p.args
FROM {{schema}}millrace_pause AS p, n WHERE p.queue = $1 AND p.paused_until > n.now`

func (e *executor) RateStateRead(ctx context.Context, p *driver.RateStateParams) (*driver.RateState, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlRateStateRead), p.Queue)
	if err != nil {
		return nil, err
	}
	st := &driver.RateState{}
	var (
		typ      int32
		now      time.Time
		key      *string
		ws, we   *time.Time
		started  *int32
		argsJSON []byte
	)
	if _, err := pgx.ForEachRow(rows, []any{&typ, &now, &key, &ws, &we, &started, &argsJSON}, func() error {
		st.Now = now.UTC()
		switch typ {
		case 1:
			st.Counts = append(st.Counts, &driver.RateCount{Key: *key, WindowStart: ws.UTC(), WindowEnd: we.UTC(), Started: int(*started)})
		case 2:
			st.Pauses = append(st.Pauses, &millracetype.Pause{Queue: p.Queue, Kind: *key, Args: append([]byte(nil), argsJSON...), Until: we.UTC()})
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if st.Now.IsZero() {
		return nil, fmt.Errorf("read rate state of queue %q: no clock row", p.Queue)
	}
	return st, nil
}

// Adding counts and deleting the queue's ended windows and pauses, in one
// statement (they touch different rows).
var sqlRateCountAdd = `
WITH ended AS (
    DELETE FROM {{schema}}millrace_rate WHERE queue = $1 AND window_end <= $6
), ended_pauses AS (
    DELETE FROM {{schema}}millrace_pause WHERE queue = $1 AND paused_until <= $6
)
INSERT INTO {{schema}}millrace_rate AS r (queue, rate_key, window_start, window_end, started)
SELECT $1, t.k, t.ws, t.we, t.n
FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[]) AS t(k, ws, we, n)
ON CONFLICT (queue, rate_key, window_start) DO UPDATE SET started = r.started + excluded.started`

func (e *executor) RateCountAdd(ctx context.Context, p *driver.RateCountAddParams) error {
	keys := make([]string, len(p.Add))
	ws := make([]time.Time, len(p.Add))
	we := make([]time.Time, len(p.Add))
	n := make([]int32, len(p.Add))
	for i, c := range p.Add {
		if c.Started < 0 || !c.WindowEnd.After(c.WindowStart) {
			return fmt.Errorf("add rate count %q: bad count %d or window %v..%v", c.Key, c.Started, c.WindowStart, c.WindowEnd)
		}
		keys[i], ws[i], we[i], n[i] = c.Key, c.WindowStart, c.WindowEnd, int32(c.Started)
	}
	_, err := e.db.Exec(ctx, e.sql.get(p.Schema, &sqlRateCountAdd), p.Queue, keys, ws, we, n, p.Now)
	return err
}

// The candidates: due available jobs not paused, at most $5 of each group
// of equal kind and part (0: no bound), at most $4 in all, in rounds: the
// first of every group (in fetch order), then the second of every group,
// and so on, so that a few deep groups cannot hide the others from the
// fetch.
// A job's part is the jsonb text of each key's value (an empty string for a missing key
// or a JSON null).
var sqlJobRateScan = `
SELECT id, kind, part FROM (
    SELECT a.*, row_number() OVER (PARTITION BY kind, part ORDER BY priority, scheduled_at, id) AS rn FROM (
        SELECT j.id, j.kind, j.priority, j.scheduled_at,
            ARRAY(SELECT coalesce(nullif(j.args -> k.k, 'null'::jsonb)::text, '')
                  FROM unnest($2::text[]) WITH ORDINALITY AS k(k, o) ORDER BY k.o) AS part
        FROM {{schema}}river_job AS j
        WHERE j.state = 'available' AND j.queue = $1 AND j.scheduled_at <= now()
            AND ($3::text[] IS NULL OR j.kind = ANY($3::text[]))
            AND NOT EXISTS (
                SELECT 1 FROM {{schema}}millrace_pause AS p
                WHERE p.queue = $1 AND p.paused_until > now()
                    AND (p.kind = '' OR p.kind = j.kind) AND j.args @> p.args)
    ) AS a
) AS w
WHERE $5::int = 0 OR rn <= $5::int
ORDER BY rn, priority, scheduled_at, id
LIMIT $4::int`

func (e *executor) JobRateScan(ctx context.Context, p *driver.JobRateScanParams) ([]*driver.JobRateCandidate, error) {
	if p.Max <= 0 {
		return nil, nil
	}
	var kinds []string
	if len(p.Kinds) > 0 {
		kinds = p.Kinds
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobRateScan), p.Queue, nonNilStrings(p.Keys), kinds, p.Max, max(p.PerGroup, 0))
	if err != nil {
		return nil, err
	}
	var out []*driver.JobRateCandidate
	var c driver.JobRateCandidate
	if _, err := pgx.ForEachRow(rows, []any{&c.ID, &c.Kind, &c.Part}, func() error {
		cc := c
		out = append(out, &cc)
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

const pauseCols = `queue, kind, args, paused_until`

func scanPause(row pgx.CollectableRow) (*millracetype.Pause, error) {
	var p millracetype.Pause
	if err := row.Scan(&p.Queue, &p.Kind, &p.Args, &p.Until); err != nil {
		return nil, err
	}
	p.Until = p.Until.UTC()
	return &p, nil
}

var sqlPauseSet = `
INSERT INTO {{schema}}millrace_pause AS p (queue, kind, args, paused_until)
VALUES ($1, $2, $3::jsonb, $4)
ON CONFLICT (queue, kind, args) DO UPDATE SET paused_until = excluded.paused_until
RETURNING ` + pauseCols

// pauseArgs is the JSON of a pause's args: {} when empty.
func pauseArgs(b []byte) string {
	if len(b) == 0 {
		return "{}"
	}
	return string(b)
}

func (e *executor) PauseSet(ctx context.Context, p *driver.PauseSetParams) (*millracetype.Pause, error) {
	ps := p.Pause
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlPauseSet), ps.Queue, ps.Kind, pauseArgs(ps.Args), ps.Until)
	if err != nil {
		return nil, err
	}
	row, err := pgx.CollectExactlyOneRow(rows, scanPause)
	if err != nil {
		return nil, fmt.Errorf("set pause of queue %q: %w", ps.Queue, err)
	}
	return row, nil
}

var sqlPauseGetMany = `
SELECT ` + pauseCols + ` FROM {{schema}}millrace_pause
WHERE ($1 = '' OR queue = $1) AND ($2 OR paused_until > clock_timestamp())
ORDER BY queue, kind, args`

func (e *executor) PauseGetMany(ctx context.Context, p *driver.PauseGetManyParams) ([]*millracetype.Pause, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlPauseGetMany), p.Queue, p.All)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanPause)
}

var sqlPauseDelete = `DELETE FROM {{schema}}millrace_pause WHERE queue = $1 AND kind = $2 AND args = $3::jsonb`

func (e *executor) PauseDelete(ctx context.Context, p *driver.PauseDeleteParams) (bool, error) {
	tag, err := e.db.Exec(ctx, e.sql.get(p.Schema, &sqlPauseDelete), p.Queue, p.Kind, pauseArgs(p.Args))
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() > 0, nil
}
