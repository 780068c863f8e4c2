package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

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
		m, err := migrate.New(pgxv5.New(pool), &migrate.Config{Schema: schema})
		if err != nil {
			return "", err
		}
		if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
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

// preInsert writes n available no-op jobs with one INSERT ... SELECT, the
// same rows whichever system works them (each of them would write these
// very rows), then ANALYZEs the table as autovacuum would soon after such a
// load (this image runs with autovacuum off).
func preInsert(ctx context.Context, pool *pgxpool.Pool, schema string, n int) error {
	table := pgx.Identifier{schema, "river_job"}.Sanitize()
	_, err := pool.Exec(ctx, `INSERT INTO `+table+` (args, kind, max_attempts, priority, queue, state, scheduled_at, created_at)
		SELECT jsonb_build_object('n', g), $1, 25, 1, $2, 'available', now(), now() FROM generate_series(1, $3) g`,
		jobKind, queue, n)
	if err != nil {
		return fmt.Errorf("pre-insert %d jobs: %w", n, err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE "+table); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

// checkpoint flushes dirty pages before a measurement, so that no run pays
// for the writes of the one before it.
func checkpoint(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, "CHECKPOINT")
	return err
}

// serverInfo describes the server and the settings that matter to these
// numbers.
func serverInfo(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var version string
	if err := pool.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return "", err
	}
	var settings []string
	for _, name := range []string{"autovacuum", "fsync", "synchronous_commit", "shared_buffers", "max_wal_size", "max_connections"} {
		var v string
		if err := pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			return "", err
		}
		settings = append(settings, name+"="+v)
	}
	return "PostgreSQL " + version + " (" + strings.Join(settings, ", ") + ")", nil
}
