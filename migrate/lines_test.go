package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

func lineMigrator(t *testing.T, pool *pgxpool.Pool, schema, line string) *migrate.Migrator[pgx.Tx] {
	t.Helper()
	m, err := migrate.New(pgxv5.New(pool), &migrate.Config{Schema: schema, Line: line})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func versionsOf(t *testing.T, m *migrate.Migrator[pgx.Tx]) []int {
	t.Helper()
	applied, err := m.Applied(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var vs []int
	for _, a := range applied {
		vs = append(vs, a.Version)
	}
	return vs
}

func migrationRows(t *testing.T, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT line || ':' || version FROM "+
		pgx.Identifier{schema, "river_migration"}.Sanitize()+" ORDER BY line, version")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// ownObjects lists the schema's relations not named river_*, with their
// kind (r table, i index, S sequence, v view).
func ownObjects(t *testing.T, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT c.relkind::text || ' ' || c.relname FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname NOT LIKE 'river\_%' ORDER BY c.relname`, schema)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// millraceObjects are the objects of line millrace at its latest version,
// as ownObjects lists them.
var millraceObjects = []string{"r millrace_client", "i millrace_client_pkey", "r millrace_fair_partition", "i millrace_fair_partition_pkey", "r millrace_leader", "i millrace_leader_pkey",
	"r millrace_limit", "r millrace_limit_bound", "i millrace_limit_bound_pkey", "i millrace_limit_pkey", "r millrace_pause", "i millrace_pause_pkey", "r millrace_periodic", "i millrace_periodic_pkey", "r millrace_rate", "i millrace_rate_pkey",
	"r millrace_sequence", "i millrace_sequence_head_id_index", "r millrace_sequence_job", "i millrace_sequence_job_pkey", "i millrace_sequence_pkey"}

// columns describes a table's columns: name, type, nullable, default.
func columns(t *testing.T, pool *pgxpool.Pool, schema, table string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '-')
		FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, schema, table)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

func newSchemaDB(t *testing.T, schema string) (string, *pgxpool.Pool) {
	t.Helper()
	url, pool := freshDatabase(t)
	if _, err := pool.Exec(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	return url, pool
}

// millraceVersions are the versions of line millrace, in order.
var millraceVersions = []int{1, 2, 3, 4, 5, 6, 7, 8}

// millraceRows are they as river_migration rows.
func millraceRows() []string {
	rows := make([]string, len(millraceVersions))
	for i, v := range millraceVersions {
		rows[i] = fmt.Sprintf("millrace:%d", v)
	}
	return rows
}

// TestMillraceLineSchema applies both lines with MigrateAll and checks that
// line millrace adds exactly millraceObjects, recorded as millrace:1..,
// and that its down leaves River's schema exactly as River's dump has it.
func TestMillraceLineSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const schema = "mr"
	url, pool := newSchemaDB(t, schema)
	empty := pgDump(t, url, schema)

	results, err := migrate.MigrateAll(ctx, pgxv5.New(pool), &migrate.Config{Schema: schema}, migrate.DirectionUp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].Line != migrate.LineMain || len(results[0].Versions) != 8 ||
		results[1].Line != migrate.LineMillrace || len(results[1].Versions) != len(millraceVersions) || results[1].Versions[0].Name != "millrace_client" {
		t.Fatalf("MigrateAll up ran %+v, %+v; want main 1..8 then millrace %v", results[0], results[len(results)-1], millraceVersions)
	}
	want := append([]string{"main:1", "main:2", "main:3", "main:4", "main:5", "main:6", "main:7", "main:8"}, millraceRows()...)
	if got := migrationRows(t, pool, schema); !slices.Equal(got, want) {
		t.Fatalf("river_migration rows %v, want %v", got, want)
	}
	if got, want := ownObjects(t, pool, schema), millraceObjects; !slices.Equal(got, want) {
		t.Fatalf("objects beyond River's after line millrace: %v, want %v", got, want)
	}
	cols := columns(t, pool, schema, "millrace_client")
	wantCols := []string{
		"client_id text NO -",
		"started_at timestamp with time zone NO now()",
		"heartbeat_at timestamp with time zone NO now()",
		"metadata jsonb NO '{}'::jsonb",
		"heartbeat_timeout interval NO '00:00:05'::interval",
	}
	if !slices.Equal(cols, wantCols) {
		t.Fatalf("millrace_client columns\n%v\nwant\n%v", cols, wantCols)
	}
	// The table takes a heartbeat row with its defaults and refuses
	// nonsense.
	if _, err := pool.Exec(ctx, `INSERT INTO mr.millrace_client (client_id) VALUES ('c1')`); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`INSERT INTO mr.millrace_client (client_id) VALUES ('')`,
		`INSERT INTO mr.millrace_client (client_id) VALUES ('c1')`,
		`INSERT INTO mr.millrace_client (client_id, metadata) VALUES ('c2', '[1]')`,
		`INSERT INTO mr.millrace_client (client_id, heartbeat_timeout) VALUES ('c3', interval '0')`,
	} {
		if _, err := pool.Exec(ctx, bad); err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}
	// millrace_leader: one term per domain, domains named as
	// client.Config.Domain allows.
	if _, err := pool.Exec(ctx, `INSERT INTO mr.millrace_leader (domain, leader_id, elected_at, expires_at)
		VALUES ('svc-a', 'c1', now(), now() + interval '15 seconds'), ('svc_b', 'c1', now(), now() + interval '15 seconds')`); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`INSERT INTO mr.millrace_leader (domain, leader_id, elected_at, expires_at) VALUES ('svc-a', 'c2', now(), now())`,
		`INSERT INTO mr.millrace_leader (domain, leader_id, elected_at, expires_at) VALUES ('', 'c2', now(), now())`,
		`INSERT INTO mr.millrace_leader (domain, leader_id, elected_at, expires_at) VALUES ('Svc', 'c2', now(), now())`,
		`INSERT INTO mr.millrace_leader (domain, leader_id, elected_at, expires_at) VALUES ('a b', 'c2', now(), now())`,
		`INSERT INTO mr.millrace_leader (domain, leader_id, elected_at, expires_at) VALUES ('` + strings.Repeat("x", 65) + `', 'c2', now(), now())`,
		`INSERT INTO mr.millrace_leader (domain, leader_id, elected_at, expires_at) VALUES ('c', '', now(), now())`,
		`INSERT INTO mr.millrace_leader (domain, leader_id, elected_at, expires_at) VALUES ('c', 'c2', NULL, now())`,
	} {
		if _, err := pool.Exec(ctx, bad); err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}

	periodicCols := columns(t, pool, schema, "millrace_periodic")
	wantPeriodicCols := []string{
		"id text NO -",
		"next_run_at timestamp with time zone NO -",
		"next_from timestamp with time zone NO -",
		"last_run_at timestamp with time zone YES -",
		"created_at timestamp with time zone NO now()",
		"updated_at timestamp with time zone NO now()",
	}
	if !slices.Equal(periodicCols, wantPeriodicCols) {
		t.Fatalf("millrace_periodic columns\n%v\nwant\n%v", periodicCols, wantPeriodicCols)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO mr.millrace_periodic (id, next_run_at, next_from) VALUES ('p1', now(), now() - interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`INSERT INTO mr.millrace_periodic (id, next_run_at, next_from) VALUES ('', now(), now() - interval '1 hour')`,
		`INSERT INTO mr.millrace_periodic (id, next_run_at, next_from) VALUES (repeat('x', 129), now(), now() - interval '1 hour')`,
		`INSERT INTO mr.millrace_periodic (id, next_run_at, next_from) VALUES ('p1', now(), now() - interval '1 hour')`,
		`INSERT INTO mr.millrace_periodic (id, next_run_at, next_from) VALUES ('p2', now(), now())`,
	} {
		if _, err := pool.Exec(ctx, bad); err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}

	if _, err := pool.Exec(ctx, `INSERT INTO mr.millrace_rate (queue, rate_key, window_start, window_end, started) VALUES ('q', 'k', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z', 3)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO mr.millrace_pause (queue, kind, args, paused_until) VALUES ('q', '', '{"token":"a"}', now())`); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`INSERT INTO mr.millrace_rate (queue, rate_key, window_start, window_end, started) VALUES ('q', 'k', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z', 1)`,
		`INSERT INTO mr.millrace_rate (queue, rate_key, window_start, window_end, started) VALUES ('q', 'k2', now(), now(), 1)`,
		`INSERT INTO mr.millrace_rate (queue, rate_key, window_start, window_end, started) VALUES ('q', 'k3', now(), now() + interval '1 minute', -1)`,
		`INSERT INTO mr.millrace_pause (queue, kind, args, paused_until) VALUES ('q', '', '{"token":"a"}', now())`,
		`INSERT INTO mr.millrace_pause (queue, kind, args, paused_until) VALUES ('', '', '{}', now())`,
		`INSERT INTO mr.millrace_pause (queue, kind, args, paused_until) VALUES (repeat('x', 129), '', '{}', now())`,
		`INSERT INTO mr.millrace_pause (queue, kind, args, paused_until) VALUES ('q', repeat('x', 129), '{}', now())`,
		`INSERT INTO mr.millrace_pause (queue, kind, args, paused_until) VALUES ('q', '', '[1]', now())`,
	} {
		if _, err := pool.Exec(ctx, bad); err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}

	// Line millrace down leaves River's schema exactly.
	mill := lineMigrator(t, pool, schema, migrate.LineMillrace)
	res, err := mill.Migrate(ctx, migrate.DirectionDown, &migrate.MigrateOpts{TargetVersion: -1})
	if err != nil || len(res.Versions) != len(millraceVersions) || res.Line != migrate.LineMillrace {
		t.Fatalf("millrace down: %+v, %v", res, err)
	}
	assertDump(t, expectedDump(t, schema), pgDump(t, url, schema))
	if got := versionsOf(t, lineMigrator(t, pool, schema, migrate.LineMain)); len(got) != 8 {
		t.Fatalf("line main after millrace down: %v", got)
	}

	// Up again, and everything down in order.
	if _, err := mill.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	results, err = migrate.MigrateAll(ctx, pgxv5.New(pool), &migrate.Config{Schema: schema}, migrate.DirectionDown, &migrate.MigrateOpts{TargetVersion: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].Line != migrate.LineMillrace || len(results[0].Versions) != len(millraceVersions) ||
		results[1].Line != migrate.LineMain || len(results[1].Versions) != 8 {
		t.Fatalf("MigrateAll down ran %+v; want millrace %v then main 8..1", results, millraceVersions)
	}
	assertDump(t, empty, pgDump(t, url, schema))
}

// TestLinesIndependent checks that each line's Applied and Pending see only
// its own versions.
func TestLinesIndependent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := freshDatabase(t)
	main := lineMigrator(t, pool, "", migrate.LineMain)
	mill := lineMigrator(t, pool, "", migrate.LineMillrace)
	if main.Line() != migrate.LineMain || mill.Line() != migrate.LineMillrace || main.Latest() != 8 || mill.Latest() != len(millraceVersions) {
		t.Fatalf("lines %s/%d and %s/%d", main.Line(), main.Latest(), mill.Line(), mill.Latest())
	}
	if v := mill.Versions(); len(v) != len(millraceVersions) || v[0].Line != migrate.LineMillrace || v[0].Version != 1 {
		t.Fatalf("millrace versions %+v", v)
	}
	pending := func(m *migrate.Migrator[pgx.Tx]) int {
		p, err := m.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(p)
	}
	if pending(main) != 8 || pending(mill) != len(millraceVersions) {
		t.Fatalf("fresh database: pending main %d, millrace %d", pending(main), pending(mill))
	}
	// Before main's version 5 river_migration has no line column; line
	// millrace reads as nothing applied.
	if _, err := main.Migrate(ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: 3}); err != nil {
		t.Fatal(err)
	}
	if got := versionsOf(t, mill); len(got) != 0 || pending(mill) != len(millraceVersions) || pending(main) != 5 {
		t.Fatalf("main at 3: millrace applied %v, pending main %d millrace %d", got, pending(main), pending(mill))
	}
	if _, err := main.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	if pending(main) != 0 || pending(mill) != len(millraceVersions) {
		t.Fatalf("main at 8: pending main %d, millrace %d", pending(main), pending(mill))
	}
	if _, err := mill.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	if got := versionsOf(t, main); !slices.Equal(got, []int{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("line main reads %v with millrace applied", got)
	}
	if got := versionsOf(t, mill); !slices.Equal(got, millraceVersions) {
		t.Fatalf("line millrace reads %v", got)
	}
	// Line main's one-step down is its own business.
	res, err := main.Migrate(ctx, migrate.DirectionDown, nil)
	if err != nil || len(res.Versions) != 1 || res.Versions[0].Version != 8 {
		t.Fatalf("main one step down with millrace applied: %+v, %v", res, err)
	}
	if got := versionsOf(t, mill); !slices.Equal(got, millraceVersions) {
		t.Fatalf("line millrace after main 8 down: %v", got)
	}
}

// TestLineDependency checks that line millrace refuses to go up before line
// main is at version 5, and line main refuses to go below 5 while line
// millrace has versions, changing nothing, and that MigrateAll goes in
// order.
func TestLineDependency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const schema = "dep"
	_, pool := newSchemaDB(t, schema)
	main := lineMigrator(t, pool, schema, migrate.LineMain)
	mill := lineMigrator(t, pool, schema, migrate.LineMillrace)

	_, err := mill.Migrate(ctx, migrate.DirectionUp, nil)
	if !errors.Is(err, migrate.ErrLineDependency) || !strings.Contains(err.Error(), "line millrace needs line main at version 5 or later, the database has it at version 0; migrate line main up first") {
		t.Fatalf("millrace up on an empty schema: %v", err)
	}
	if got := ownObjects(t, pool, schema); len(got) != 0 {
		t.Fatalf("refused millrace up left %v", got)
	}
	if _, err := main.Migrate(ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := mill.Migrate(ctx, migrate.DirectionUp, nil); !errors.Is(err, migrate.ErrLineDependency) || !strings.Contains(err.Error(), "at version 4") {
		t.Fatalf("millrace up with main at 4: %v", err)
	}
	if _, err := main.Migrate(ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := mill.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatalf("millrace up with main at 5: %v", err)
	}
	if _, err := main.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}

	for _, target := range []int{-1, 4, 1} {
		_, err := main.Migrate(ctx, migrate.DirectionDown, &migrate.MigrateOpts{TargetVersion: target})
		if !errors.Is(err, migrate.ErrLineDependency) ||
			!strings.Contains(err.Error(), fmt.Sprintf("line main cannot go below version 5 while line millrace has versions applied (up to %d); migrate line millrace down first",
				len(millraceVersions))) {
			t.Fatalf("main down to %d with millrace applied: %v", target, err)
		}
		if got := versionsOf(t, main); len(got) != 8 {
			t.Fatalf("refused main down to %d reverted versions: %v left", target, got)
		}
	}
	// Down to 5 keeps what millrace needs.
	if _, err := main.Migrate(ctx, migrate.DirectionDown, &migrate.MigrateOpts{TargetVersion: 5}); err != nil {
		t.Fatalf("main down to 5 with millrace applied: %v", err)
	}
	// One step of MigrateAll down undoes the last line's last version.
	drv := pgxv5.New(pool)
	for i := len(millraceVersions) - 1; i >= 0; i-- {
		results, err := migrate.MigrateAll(ctx, drv, &migrate.Config{Schema: schema}, migrate.DirectionDown, nil)
		if err != nil || len(results) != 1 || results[0].Line != migrate.LineMillrace || len(results[0].Versions) != 1 ||
			results[0].Versions[0].Version != millraceVersions[i] {
			t.Fatalf("MigrateAll one step down (millrace %d): %+v, %v", millraceVersions[i], results, err)
		}
	}
	results, err := migrate.MigrateAll(ctx, drv, &migrate.Config{Schema: schema}, migrate.DirectionDown, nil)
	if err != nil || len(results) != 1 || results[0].Line != migrate.LineMain || results[0].Versions[0].Version != 5 {
		t.Fatalf("MigrateAll second step down: %+v, %v", results, err)
	}
	// With line millrace gone, main goes all the way down.
	if _, err := main.Migrate(ctx, migrate.DirectionDown, &migrate.MigrateOpts{TargetVersion: -1}); err != nil {
		t.Fatal(err)
	}
	results, err = migrate.MigrateAll(ctx, drv, &migrate.Config{Schema: schema}, migrate.DirectionDown, nil)
	if err != nil || len(results) != 1 || len(results[0].Versions) != 0 {
		t.Fatalf("MigrateAll down on an empty schema: %+v, %v", results, err)
	}
}

// TestPrintedSQLBothLines applies the printed SQL of both lines with psql,
// and checks that the printed SQL enforces the dependency between lines as
// Migrate does.
func TestPrintedSQLBothLines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := freshDatabase(t)
	main := lineMigrator(t, pool, "", migrate.LineMain)
	mill := lineMigrator(t, pool, "", migrate.LineMillrace)
	sqlOf := func(m *migrate.Migrator[pgx.Tx], from, to int) string {
		t.Helper()
		s, err := m.SQL(from, to)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	last := len(millraceVersions)
	millUp, millDown := sqlOf(mill, 0, last), sqlOf(mill, last, 0)
	for _, want := range []string{"line millrace version 001 millrace_client (up)", "CREATE TABLE millrace_client (",
		"INSERT INTO river_migration (line, version) VALUES ('millrace', 1);",
		"line millrace version 002 millrace_client_timeout (up)", "ADD COLUMN heartbeat_timeout interval",
		"line millrace version 003 millrace_leader (up)", "CREATE UNLOGGED TABLE millrace_leader (",
		"line millrace version 004 millrace_periodic (up)", "CREATE TABLE millrace_periodic (",
		"line millrace version 005 millrace_limit (up)", "CREATE TABLE millrace_limit (",
		"line millrace version 006 millrace_rate (up)", "CREATE TABLE millrace_rate (", "CREATE TABLE millrace_pause (",
		"line millrace version 007 millrace_sequence (up)", "CREATE TABLE millrace_sequence (", "CREATE TABLE millrace_sequence_job (",
		"line millrace version 008 millrace_fair (up)", "CREATE TABLE millrace_fair_partition (",
		"INSERT INTO river_migration (line, version) VALUES ('millrace', 8);"} {
		if !strings.Contains(millUp, want) {
			t.Fatalf("millrace up SQL lacks %q:\n%s", want, millUp)
		}
	}

	// Without line main, and with main before version 5, line millrace's
	// SQL fails with the dependency message.
	wantMsg := "migration line millrace needs line main at version 5 or later: migrate line main up first"
	if out, err := psqlErr(url, millUp); err == nil || !strings.Contains(out, wantMsg) {
		t.Fatalf("millrace SQL on an empty database: %v\n%s", err, out)
	}
	psql(t, url, sqlOf(main, 0, 4))
	if out, err := psqlErr(url, millUp); err == nil || !strings.Contains(out, wantMsg) {
		t.Fatalf("millrace SQL with main at 4: %v\n%s", err, out)
	}
	psql(t, url, sqlOf(main, 4, 8))
	psql(t, url, millUp)
	if p, err := mill.Pending(ctx); err != nil || len(p) != 0 {
		t.Fatalf("millrace pending after its printed SQL: %v, %v", p, err)
	}
	if got := ownObjects(t, pool, "public"); !slices.Equal(got, millraceObjects) {
		t.Fatalf("objects beyond River's: %v", got)
	}
	// Main's printed down refuses to cross version 5 while millrace is
	// recorded, and the refused transaction changes nothing.
	out, err := psqlErr(url, sqlOf(main, 8, 0))
	if err == nil || !strings.Contains(out, "line main cannot go below version 5 while line millrace has versions applied: migrate line millrace down first") {
		t.Fatalf("main down SQL with millrace applied: %v\n%s", err, out)
	}
	if got := versionsOf(t, main); !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("main after the refused printed down: %v, want 1..5 (8..6 commit before the guard)", got)
	}
	psql(t, url, millDown)
	psql(t, url, sqlOf(main, 5, 0))
	assertDump(t, normalize(preambleOnly), pgDump(t, url, "public"))
}

// psqlErr runs SQL with psql, stopping at the first error, and returns its
// output.
func psqlErr(url, sql string) (string, error) {
	path, err := exec.LookPath("psql")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(path, "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--quiet", "--dbname", url)
	cmd.Stdin = strings.NewReader(sql)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestConcurrentMigrateAll runs MigrateAll up from several pools at once:
// every version of each line is applied exactly once.
func TestConcurrentMigrateAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := freshDatabase(t)
	const n = 5
	var wg sync.WaitGroup
	errs := make([]error, n)
	ran := make([][]string, n)
	for i := range n {
		p, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		wg.Go(func() {
			results, err := migrate.MigrateAll(ctx, pgxv5.New(p), nil, migrate.DirectionUp, nil)
			errs[i] = err
			for _, r := range results {
				for _, v := range r.Versions {
					ran[i] = append(ran[i], fmt.Sprintf("%s:%d", r.Line, v.Version))
				}
			}
		})
	}
	wg.Wait()
	count := map[string]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("migrator %d: %v", i, errs[i])
		}
		for _, v := range ran[i] {
			count[v]++
		}
	}
	if len(count) != 8+len(millraceVersions) {
		t.Fatalf("versions run: %v", count)
	}
	for v, c := range count {
		if c != 1 {
			t.Fatalf("%s ran %d times (%v)", v, c, ran)
		}
	}
	if got := migrationRows(t, pool, "public"); len(got) != 8+len(millraceVersions) {
		t.Fatalf("river_migration rows %v", got)
	}
}

func TestLineBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := freshDatabase(t)
	drv := pgxv5.New(pool)
	_, err := migrate.New(drv, &migrate.Config{Line: "nope"})
	if err == nil || !strings.Contains(err.Error(), `unknown migration line "nope" (known: main, millrace)`) {
		t.Errorf("unknown line: %v", err)
	}
	if _, err := migrate.MigrateAll(ctx, drv, &migrate.Config{Line: migrate.LineMain}, migrate.DirectionUp, nil); err == nil {
		t.Error("MigrateAll with a line accepted")
	}
	if _, err := migrate.MigrateAll(ctx, drv, nil, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: 3}); !errors.Is(err, migrate.ErrUnknownVersion) {
		t.Errorf("MigrateAll up to 3: %v", err)
	}
	if _, err := migrate.MigrateAll(ctx, drv, nil, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: -1}); !errors.Is(err, migrate.ErrUnknownVersion) {
		t.Errorf("MigrateAll up to -1: %v", err)
	}
	if _, err := migrate.MigrateAll(ctx, drv, nil, "sideways", nil); err == nil {
		t.Error("MigrateAll sideways accepted")
	}
	if _, err := migrate.MigrateAll[pgx.Tx](ctx, nil, nil, migrate.DirectionUp, nil); err == nil {
		t.Error("MigrateAll without a driver accepted")
	}
	mill := lineMigrator(t, pool, "", migrate.LineMillrace)
	beyond := len(millraceVersions) + 1
	if _, err := mill.Migrate(ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: beyond}); !errors.Is(err, migrate.ErrUnknownVersion) {
		t.Errorf("millrace up to %d: %v", beyond, err)
	}
	if _, err := mill.SQL(0, beyond); !errors.Is(err, migrate.ErrUnknownVersion) {
		t.Errorf("millrace SQL to %d: %v", beyond, err)
	}
	if got := migrate.Lines(); !slices.Equal(got, []string{"main", "millrace"}) {
		t.Errorf("Lines() = %v", got)
	}
	// A database a newer millrace migrated: refuse.
	if _, err := migrate.MigrateAll(ctx, drv, nil, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO river_migration (line, version) VALUES ('millrace', $1)", beyond); err != nil {
		t.Fatal(err)
	}
	if _, err := mill.Migrate(ctx, migrate.DirectionUp, nil); !errors.Is(err, migrate.ErrDatabaseNewer) {
		t.Errorf("millrace up on a newer database: %v", err)
	}
}

// TestMainDownKeepsOtherLines records a line millrace does not know and
// checks that line main's version 5 down refuses to drop its records (as
// River's does), leaving main at 5, and goes through once they are gone.
func TestMainDownKeepsOtherLines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := freshDatabase(t)
	main := lineMigrator(t, pool, "", migrate.LineMain)
	if _, err := main.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO river_migration (line, version) VALUES ('workflow', 1)"); err != nil {
		t.Fatal(err)
	}
	_, err := main.Migrate(ctx, migrate.DirectionDown, &migrate.MigrateOpts{TargetVersion: -1})
	if err == nil || !strings.Contains(err.Error(), "line main version 5 cannot be reverted while river_migration records other lines (workflow)") {
		t.Fatalf("main down to 0 with line workflow recorded: %v", err)
	}
	if got := versionsOf(t, main); !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("main after the refused version 5 down: %v", got)
	}
	if got := migrationRows(t, pool, "public"); !slices.Contains(got, "workflow:1") {
		t.Fatalf("line workflow's record is gone: %v", got)
	}
	if _, err := pool.Exec(ctx, "DELETE FROM river_migration WHERE line = 'workflow'"); err != nil {
		t.Fatal(err)
	}
	if _, err := main.Migrate(ctx, migrate.DirectionDown, &migrate.MigrateOpts{TargetVersion: -1}); err != nil {
		t.Fatal(err)
	}
}
