package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/migrate"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// expectedDump is River v0.51.2's schema at version 8, as pg_dump printed it,
// normalized.
func expectedDump(t *testing.T, schema string) []string {
	t.Helper()
	raw, err := os.ReadFile("testdata/river-schema-v8.pgdump.sql")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	var extra []string
	if schema != "public" {
		text = strings.ReplaceAll(text, "public.", schema+".")
		extra = []string{"CREATE SCHEMA " + schema + ";"}
	}
	lines := normalize(text)
	if extra != nil {
		// pg_dump -n prints CREATE SCHEMA after the SET preamble.
		at := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "CREATE ") })
		lines = slices.Insert(lines, at, extra...)
	}
	return lines
}

// normalize drops what differs between pg_dump versions: blank lines,
// comments and \restrict lines.
func normalize(dump string) []string {
	var out []string
	for line := range strings.Lines(dump) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "--") ||
			strings.HasPrefix(line, `\restrict`) || strings.HasPrefix(line, `\unrestrict`) {
			continue
		}
		out = append(out, line)
	}
	return out
}

// pgDump dumps one schema of a database, normalized. public is dumped as
// River's reference was, without -n: the whole (otherwise empty) database.
func pgDump(t *testing.T, url, schema string) []string {
	t.Helper()
	path, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Fatalf("pg_dump is needed by the schema tests: install postgresql-client (scripts/ensure-postgres.sh does): %v", err)
	}
	args := []string{"--schema-only", "--no-owner", "--no-privileges", "--dbname", url}
	if schema != "public" {
		args = append(args, "-n", schema)
	}
	out, err := exec.Command(path, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("pg_dump: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("pg_dump: %v", err)
	}
	return normalize(string(out))
}

// freshDatabase returns a new empty database and a pool on it.
func freshDatabase(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	url := testdb.NewDatabase(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return url, pool
}

func newMigrator(t *testing.T, pool *pgxpool.Pool, schema string) *migrate.Migrator[pgx.Tx] {
	t.Helper()
	m, err := migrate.New(pgxv5.New(pool), &migrate.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func diffLines(want, got []string) string {
	var b strings.Builder
	for i := 0; i < max(len(want), len(got)); i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i+1, w, g)
			if b.Len() > 4000 {
				break
			}
		}
	}
	return b.String()
}

func assertDump(t *testing.T, want, got []string) {
	t.Helper()
	if !slices.Equal(want, got) {
		t.Fatalf("schema dump differs from River's:\n%s", diffLines(want, got))
	}
}

func TestUpMatchesRiverDump(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := freshDatabase(t)
	m := newMigrator(t, pool, "")
	res, err := m.Migrate(ctx, migrate.DirectionUp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Versions) != 8 || res.Versions[0].Version != 1 || res.Versions[7].Version != 8 {
		t.Fatalf("applied %+v, want versions 1..8", res.Versions)
	}
	assertDump(t, expectedDump(t, "public"), pgDump(t, url, "public"))

	var rows []string
	r, err := pool.Query(ctx, "SELECT line || ':' || version FROM river_migration ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	rows, err = pgx.CollectRows(r, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"main:1", "main:2", "main:3", "main:4", "main:5", "main:6", "main:7", "main:8"}; !slices.Equal(rows, want) {
		t.Fatalf("river_migration rows %v, want %v", rows, want)
	}

	// A second run has nothing to do.
	res, err = m.Migrate(ctx, migrate.DirectionUp, nil)
	if err != nil || len(res.Versions) != 0 {
		t.Fatalf("second up: %+v, %v; want nothing applied", res, err)
	}
	pending, err := m.Pending(ctx)
	if err != nil || len(pending) != 0 {
		t.Fatalf("pending after up: %v, %v", pending, err)
	}
}

func TestUpInCustomSchemaMatchesRiverDump(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := freshDatabase(t)
	const schema = "jobs_custom"
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	m := newMigrator(t, pool, schema)
	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	assertDump(t, expectedDump(t, schema), pgDump(t, url, schema))

	// Nothing at all landed in public.
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	var types int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname = 'public'`).Scan(&types); err != nil {
		t.Fatal(err)
	}
	var funcs int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'public'`).Scan(&funcs); err != nil {
		t.Fatal(err)
	}
	if n+types+funcs != 0 {
		t.Fatalf("public holds %d relations, %d types, %d functions; want none", n, types, funcs)
	}
}

// TestDownAndUpAgain checks every version's down against the state its up
// left: going up one version at a time, the dump at each version is kept;
// going down, the dump at each version must equal it; going up again must
// give River's dump.
func TestDownAndUpAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const schema = "mr"
	url, pool := freshDatabase(t)
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	m := newMigrator(t, pool, schema)
	dumps := map[int][]string{0: pgDump(t, url, schema)}
	for v := 1; v <= m.Latest(); v++ {
		res, err := m.Migrate(ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: v})
		if err != nil {
			t.Fatalf("up to %d: %v", v, err)
		}
		if len(res.Versions) != 1 || res.Versions[0].Version != v {
			t.Fatalf("up to %d ran %+v", v, res.Versions)
		}
		dumps[v] = pgDump(t, url, schema)
	}
	// Jobs survive a round trip where their columns do.
	if _, err := pool.Exec(ctx, `INSERT INTO mr.river_job (kind, args, tags) VALUES ('k', '{}', '{a}')`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM mr.river_job`); err != nil {
		t.Fatal(err)
	}
	pendingLine := regexp.MustCompile(`^\s*'pending',$`)
	withoutPending := func(lines []string) []string {
		return slices.DeleteFunc(slices.Clone(lines), pendingLine.MatchString)
	}
	for v := m.Latest() - 1; v >= 0; v-- {
		res, err := m.Migrate(ctx, migrate.DirectionDown, nil) // one step
		if err != nil {
			t.Fatalf("down to %d: %v", v, err)
		}
		if len(res.Versions) != 1 || res.Versions[0].Version != v+1 {
			t.Fatalf("down to %d ran %+v", v, res.Versions)
		}
		got := pgDump(t, url, schema)
		want := dumps[v]
		if v < 4 && v >= 2 {
			// Postgres cannot drop an enum value: 'pending' stays.
			got = withoutPending(got)
		}
		if !slices.Equal(want, got) {
			t.Fatalf("after down to %d the schema differs from the one up left:\n%s", v, diffLines(want, got))
		}
		applied, err := m.Applied(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != v {
			t.Fatalf("after down to %d, %d versions recorded", v, len(applied))
		}
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	assertDump(t, expectedDump(t, schema), pgDump(t, url, schema))

	// All the way down in one call, and up again.
	res, err := m.Migrate(ctx, migrate.DirectionDown, &migrate.MigrateOpts{TargetVersion: -1})
	if err != nil || len(res.Versions) != 8 {
		t.Fatalf("down to nothing: %+v, %v", res, err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	assertDump(t, expectedDump(t, schema), pgDump(t, url, schema))
}

func TestConcurrentMigrators(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := freshDatabase(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	applied := make([][]int, n)
	for i := range n {
		// Each migrator has its own pool, like separate processes.
		p, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		m := newMigrator(t, p, "")
		wg.Go(func() {
			res, err := m.Migrate(ctx, migrate.DirectionUp, nil)
			errs[i] = err
			if res != nil {
				for _, v := range res.Versions {
					applied[i] = append(applied[i], v.Version)
				}
			}
		})
	}
	wg.Wait()
	count := map[int]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("migrator %d: %v", i, errs[i])
		}
		for _, v := range applied[i] {
			count[v]++
		}
	}
	for v := 1; v <= 8; v++ {
		if count[v] != 1 {
			t.Fatalf("version %d applied %d times across migrators (%v)", v, count[v], applied)
		}
	}
	assertDump(t, expectedDump(t, "public"), pgDump(t, url, "public"))
	var rows int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM river_migration").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 8 {
		t.Fatalf("river_migration has %d rows, want 8", rows)
	}
}

// TestPrintedSQL applies the SQL printed for users' own tools with psql and
// checks it gives the same schema and bookkeeping.
func TestPrintedSQL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := freshDatabase(t)
	m := newMigrator(t, pool, "")
	sql, err := m.SQL(0, m.Latest())
	if err != nil {
		t.Fatal(err)
	}
	psql(t, url, sql)
	assertDump(t, expectedDump(t, "public"), pgDump(t, url, "public"))
	pending, err := m.Pending(ctx)
	if err != nil || len(pending) != 0 {
		t.Fatalf("pending after printed SQL: %v, %v", pending, err)
	}
	down, err := m.SQL(m.Latest(), 0)
	if err != nil {
		t.Fatal(err)
	}
	psql(t, url, down)
	assertDump(t, normalize(preambleOnly), pgDump(t, url, "public"))
}

// preambleOnly is what pg_dump prints for an empty database, normalized.
const preambleOnly = `SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;
`

func psql(t *testing.T, url, sql string) {
	t.Helper()
	path, err := exec.LookPath("psql")
	if err != nil {
		t.Fatalf("psql is needed by this test: install postgresql-client: %v", err)
	}
	cmd := exec.Command(path, "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--quiet", "--dbname", url)
	cmd.Stdin = strings.NewReader(sql)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql: %v: %s", err, out)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := freshDatabase(t)

	if _, err := migrate.New[pgx.Tx](nil, nil); err == nil {
		t.Fatal("nil driver accepted")
	}
	for _, bad := range []string{"1abc", "has space", "quote\"", strings.Repeat("s", 47), "public.x"} {
		_, err := migrate.New(pgxv5.New(pool), &migrate.Config{Schema: bad})
		if !errors.Is(err, migrate.ErrInvalidSchema) {
			t.Errorf("schema %q: err %v, want ErrInvalidSchema", bad, err)
		}
	}
	if _, err := migrate.New(pgxv5.New(pool), &migrate.Config{Line: "nope"}); err == nil {
		t.Error("unknown line accepted")
	}

	missing := newMigrator(t, pool, "no_such_schema")
	if _, err := missing.Migrate(ctx, migrate.DirectionUp, nil); err == nil || !strings.Contains(err.Error(), `schema "no_such_schema" does not exist`) {
		t.Errorf("missing schema: %v", err)
	}

	m := newMigrator(t, pool, "")
	for _, target := range []int{9, -2} {
		if _, err := m.Migrate(ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: target}); !errors.Is(err, migrate.ErrUnknownVersion) {
			t.Errorf("target %d: %v, want ErrUnknownVersion", target, err)
		}
	}
	if _, err := m.Migrate(ctx, "sideways", nil); err == nil {
		t.Error("unknown direction accepted")
	}
	if _, err := m.SQL(0, 99); !errors.Is(err, migrate.ErrUnknownVersion) {
		t.Errorf("SQL to 99: %v", err)
	}

	if _, err := m.Migrate(ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: 2}); err == nil {
		t.Error("up to a version below the current one accepted")
	}
	if _, err := m.Migrate(ctx, migrate.DirectionDown, &migrate.MigrateOpts{TargetVersion: 5}); err == nil {
		t.Error("down to a version above the current one accepted")
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}

	// A database migrated by a newer River: refuse, change nothing.
	if _, err := pool.Exec(ctx, "INSERT INTO river_migration (line, version) VALUES ('main', 9)"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionDown, nil); !errors.Is(err, migrate.ErrDatabaseNewer) {
		t.Errorf("down on a newer database: %v, want ErrDatabaseNewer", err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); !errors.Is(err, migrate.ErrDatabaseNewer) {
		t.Errorf("up on a newer database: %v, want ErrDatabaseNewer", err)
	}
}

// TestFailedVersionRollsBack makes version 5 fail half way and checks that
// nothing of it stays and the next run completes.
func TestFailedVersionRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := freshDatabase(t)
	m := newMigrator(t, pool, "")
	if _, err := m.Migrate(ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: 4}); err != nil {
		t.Fatal(err)
	}
	// river_client already existing makes version 5's CREATE TABLE fail
	// after it rebuilt river_migration and added unique_key.
	if _, err := pool.Exec(ctx, "CREATE TABLE river_client (x int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err == nil {
		t.Fatal("version 5 succeeded on top of a conflicting table")
	}
	applied, err := m.Applied(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 4 {
		t.Fatalf("%d versions recorded after a failed version 5, want 4", len(applied))
	}
	var hasKey bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_name = 'river_job' AND column_name = 'unique_key')`).Scan(&hasKey); err != nil {
		t.Fatal(err)
	}
	if hasKey {
		t.Fatal("half of version 5 stayed applied")
	}
	if _, err := pool.Exec(ctx, "DROP TABLE river_client"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	assertDump(t, expectedDump(t, "public"), pgDump(t, url, "public"))
}
