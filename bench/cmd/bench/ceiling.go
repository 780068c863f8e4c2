package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// ceilingSQL is one round trip of the hand-written loop on table: it
// completes the batch the loop fetched last time ($1) and fetches the next
// one (loopFetchSQL on queue $2, at most $3 jobs, for client $4), with
// River's semantics on both sides (complete: only rows still running, to
// completed with finalized_at). The data-modifying CTE runs even though
// nothing reads it, and both parts see one snapshot, so a row being
// completed is never fetched again. With deleting (sql_ceiling_delete)
// the first part deletes the finished batch (still only rows in running)
// instead of marking it completed.
func ceilingSQL(table string, deleting bool) string {
	finish := "UPDATE " + table + " SET state = 'completed', finalized_at = now()"
	if deleting {
		finish = "DELETE FROM " + table
	}
	return `
WITH completed AS (
	` + finish + `
	WHERE id = ANY($1::bigint[]) AND state = 'running'
	RETURNING id
), ` + loopFetchSQL(table, "$2", "$3", "$4")
}

// loopFetchSQL is the loop's fetch, the part of a WITH clause after its
// first CTE (or after WITH): lock the queue's available and due jobs by
// priority, scheduled_at and id, SKIP LOCKED, and set them running with
// attempt + 1, attempted_at and attempted_by (queue, limit and clientID
// are the statement's parameters for them). It filters by
// id = ANY(ARRAY(subquery)) rather than joining the locked rows: the join
// plans a hash join over the whole table at these batch sizes. It returns
// only what a worker needs.
func loopFetchSQL(table, queue, limit, clientID string) string {
	return `locked AS (
	SELECT id FROM ` + table + `
	WHERE state = 'available' AND queue = ` + queue + ` AND scheduled_at <= now()
	ORDER BY priority, scheduled_at, id
	LIMIT ` + limit + `
	FOR UPDATE SKIP LOCKED
)
UPDATE ` + table + ` SET state = 'running', attempt = attempt + 1, attempted_at = now(),
	attempted_by = array_append(attempted_by, ` + clientID + `::text)
WHERE id = ANY(ARRAY(SELECT id FROM locked))
RETURNING id, kind, args, attempt`
}

// childCeiling runs spec.Loops concurrent fetch/complete loops, each
// fetching spec.Batch jobs per round trip, over the jobs the parent
// inserted, and times them to the last completion. sql_ceiling_delete
// deletes the finished jobs instead of completing them.
func childCeiling(ctx context.Context, spec *runSpec, db *childDB, prof *profiler) (*runResult, error) {
	pool := db.sys
	deleting := spec.Scenario == "sql_ceiling_delete"
	q := ceilingSQL(pgx.Identifier{spec.Schema, "river_job"}.Sanitize(), deleting)
	window := db.costWindow()
	if err := window.begin(ctx); err != nil {
		return nil, err
	}
	var worked atomic.Int64
	start := time.Now()
	stopProgress := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				progressf(spec, "%d/%d worked (%.0f s)", worked.Load(), spec.Jobs, time.Since(start).Seconds())
			}
		}
	})
	g, gctx := errgroup.WithContext(ctx)
	for loop := range spec.Loops {
		clientID := fmt.Sprintf("sql_loop_%d", loop)
		g.Go(func() error {
			var pending []int64
			for {
				rows, err := pool.Query(gctx, q, pending, queue, spec.Batch, clientID)
				if err != nil {
					return fmt.Errorf("loop %d: %w", loop, err)
				}
				next := make([]int64, 0, spec.Batch)
				var (
					id      int64
					kind    string
					args    []byte
					attempt int
				)
				_, err = pgx.ForEachRow(rows, []any{&id, &kind, &args, &attempt}, func() error {
					// The "work" of a no-op job: nothing but taking its row.
					next = append(next, id)
					return nil
				})
				if err != nil {
					return fmt.Errorf("loop %d: %w", loop, err)
				}
				worked.Add(int64(len(next)))
				if len(next) == 0 && len(pending) == 0 {
					return nil
				}
				pending = next
			}
		})
	}
	err := g.Wait()
	elapsed := time.Since(start)
	close(stopProgress)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if err := prof.stop(); err != nil {
		return nil, err
	}
	pool.Close()
	if deleting {
		// A job fetched twice would have been counted twice.
		var left int
		if err := db.monitor.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{spec.Schema, "river_job"}.Sanitize()).Scan(&left); err != nil {
			return nil, fmt.Errorf("check outcome: %w", err)
		}
		if w := worked.Load(); w != int64(spec.Jobs) || left != 0 {
			return nil, fmt.Errorf("check outcome: %d jobs fetched and %d rows left; want %d and 0", w, left, spec.Jobs)
		}
	} else if err := checkCompleted(ctx, db.monitor, spec.Schema, spec.Jobs, 0); err != nil {
		return nil, err
	}
	cost, err := window.end(ctx, spec.Jobs)
	if err != nil {
		return nil, err
	}
	return &runResult{JobsPerS: float64(spec.Jobs) / elapsed.Seconds(), Seconds: elapsed.Seconds(), Count: spec.Jobs, Cost: cost}, nil
}
