package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

// freshSchema creates a schema of a new name and migrates it to the latest
// version with the migrator of the system about to use it (River's for
// River and for the SQL loop, millrace's for millrace).
func freshSchema(ctx context.Context, pool *pgxpool.Pool, system string) (string, error) {
	buf := make([]byte, 5)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	schema := "bench_" + system + "_" + hex.EncodeToString(buf)
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return "", fmt.Errorf("create schema %s: %w", schema, err)
	}
	if system == "millrace" {
		if _, err := migrate.MigrateAll(ctx, pgxv5.New(pool), &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
			return "", fmt.Errorf("millrace migrate %s: %w", schema, err)
		}
		return schema, nil
	}
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: schema})
	if err != nil {
		return "", err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return "", fmt.Errorf("river migrate %s: %w", schema, err)
	}
	return schema, nil
}

func dropSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	_, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	return err
}

// prefill is what the parent writes into a fresh schema before a run.
type prefill struct {
	// Available no-op jobs, due now, in Queue (queue when empty).
	Available int
	Queue     string
	// PauseQueue creates Queue's river_queue row paused, so that no
	// producer fetches from it until the child resumes it.
	PauseQueue bool
	// Finalized completed rows written before the available ones (with
	// lower IDs), as the history of a busy deployment.
	Finalized int
}

func (p prefill) empty() bool { return p.Available == 0 && p.Finalized == 0 }

// preInsert writes p with INSERT ... SELECT, the same rows whichever system
// works them (each of them would write these very rows), then ANALYZEs the
// table as autovacuum would soon after such a load (this image runs with
// autovacuum off). With finalized rows, it also VACUUMs the table when
// autovacuum is off, since a server with it on would have. When there are
// finalized rows it says what it did (what, for a note under the table)
// and how long it took (took).
func preInsert(ctx context.Context, pool *pgxpool.Pool, schema string, p prefill, autovacuumOn bool) (what, took string, err error) {
	table := pgx.Identifier{schema, "river_job"}.Sanitize()
	q := p.Queue
	if q == "" {
		q = queue
	}
	var times []string
	if p.Finalized > 0 {
		start := time.Now()
		if _, err := pool.Exec(ctx, finalizedSQL(table), jobKind, queue, p.Finalized); err != nil {
			return "", "", fmt.Errorf("pre-insert %d finalized jobs: %w", p.Finalized, err)
		}
		times = append(times, fmt.Sprintf("%.1f s to write the completed rows", time.Since(start).Seconds()))
	}
	if p.PauseQueue {
		if _, err := pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "river_queue"}.Sanitize()+
			` (name, created_at, metadata, paused_at, updated_at) VALUES ($1, now(), '{}', now(), now())`, q); err != nil {
			return "", "", fmt.Errorf("create paused queue %s: %w", q, err)
		}
	}
	if p.Available > 0 {
		_, err := pool.Exec(ctx, `INSERT INTO `+table+` (args, kind, max_attempts, priority, queue, state, scheduled_at, created_at)
		SELECT jsonb_build_object('n', g), $1, 25, 1, $2, 'available', now(), now() FROM generate_series(1, $3) g`,
			jobKind, q, p.Available)
		if err != nil {
			return "", "", fmt.Errorf("pre-insert %d jobs: %w", p.Available, err)
		}
	}
	start := time.Now()
	maintenance := "ANALYZE"
	if p.Finalized > 0 && !autovacuumOn {
		maintenance = "VACUUM (ANALYZE)"
	}
	if _, err := pool.Exec(ctx, maintenance+" "+table); err != nil {
		return "", "", fmt.Errorf("%s: %w", maintenance, err)
	}
	if p.Finalized == 0 {
		return "", "", nil
	}
	times = append(times, fmt.Sprintf("%.1f s for %s", time.Since(start).Seconds(), maintenance))
	why := "autovacuum is off, so nothing else would have"
	if autovacuumOn {
		why = "no VACUUM: autovacuum is on and does that"
	}
	what = fmt.Sprintf("wrote %s completed rows (one INSERT ... SELECT generate_series; args '{}', one attempt, finalized over the last 12 h), "+
		"then %s available jobs, then ran %s on the table (%s)", thousands(float64(p.Finalized)), thousands(float64(p.Available)), maintenance, why)
	return what, strings.Join(times, ", "), nil
}

// finalizedSQL writes $3 completed jobs of kind $1 in queue $2, as a busy
// deployment keeps them until its cleaner deletes them: args '{}', one
// attempt by a client, created, scheduled, attempted and finalized moments
// spread over the last 12 hours (within the default retention of 24 h, so
// neither system's cleaner deletes them during the run), default metadata,
// tags, no errors.
func finalizedSQL(table string) string {
	return `INSERT INTO ` + table + ` (args, attempt, attempted_at, attempted_by, created_at, finalized_at,
		kind, max_attempts, priority, queue, scheduled_at, state)
	SELECT '{}', 1, t + interval '5 ms', '{bench_history}', t, t + interval '6 ms',
		$1, 25, 1, $2, t, 'completed'
	FROM (SELECT now() - interval '12 hours' + g * (interval '12 hours' / $3::int) AS t FROM generate_series(1, $3::int) g) s`
}

// checkpoint flushes dirty pages before a measurement, so that no run pays
// for the writes of the one before it.
func checkpoint(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, "CHECKPOINT")
	return err
}
