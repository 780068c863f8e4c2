package migrate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
)

// TestEmbeddedLinesLoad checks that both embedded lines pass the checks
// loadLine makes.
func TestEmbeddedLinesLoad(t *testing.T) {
	t.Parallel()
	for _, spec := range lineSpecs {
		versions, err := loadLine(embedded, spec)
		if err != nil {
			t.Fatalf("line %s: %v", spec.name, err)
		}
		for i, v := range versions {
			if v.Version != i+1 || v.Line != spec.name || v.sqlUp == "" || v.sqlDown == "" {
				t.Fatalf("line %s version %d: %+v", spec.name, i+1, v)
			}
		}
	}
}

// TestLoadLineRejects feeds loadLine broken lines: each must fail with a
// message naming the problem.
func TestLoadLineRejects(t *testing.T) {
	t.Parallel()
	const table = "CREATE TABLE {{schema}}millrace_t (id int, CONSTRAINT millrace_t_pkey PRIMARY KEY (id));"
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	good := func() fstest.MapFS {
		return fstest.MapFS{
			"l/001_first.up.sql":    file(table),
			"l/001_first.down.sql":  file("DROP TABLE {{schema}}millrace_t;"),
			"l/002_second.up.sql":   file("-- nothing on Postgres"),
			"l/002_second.down.sql": file("-- nothing on Postgres"),
		}
	}
	spec := lineSpec{name: "l", dir: "l", ownPrefix: "millrace_"}
	if vs, err := loadLine(good(), spec); err != nil || len(vs) != 2 || vs[1].Name != "second" {
		t.Fatalf("good line: %+v, %v", vs, err)
	}
	cases := []struct {
		name   string
		change func(fstest.MapFS)
		want   string
	}{
		{"missing down", func(f fstest.MapFS) { delete(f, "l/002_second.down.sql") }, "line l: version 2 (second) has no down file"},
		{"missing up", func(f fstest.MapFS) { delete(f, "l/001_first.up.sql") }, "line l: version 1 (first) has no up file"},
		{"gap", func(f fstest.MapFS) {
			f["l/004_fourth.up.sql"], f["l/004_fourth.down.sql"] = file("SELECT 1;"), file("SELECT 1;")
		}, "line l: migrations skip version 3"},
		{"version zero", func(f fstest.MapFS) { f["l/000_zero.up.sql"] = file("SELECT 1;") }, `"000_zero.up.sql": versions start at 001`},
		{"bad name", func(f fstest.MapFS) { f["l/3_third.up.sql"] = file("SELECT 1;") }, `migration file "3_third.up.sql" is not named NNN_name.up.sql`},
		{"two names", func(f fstest.MapFS) { f["l/002_other.up.sql"] = file("SELECT 1;") }, `version 2 has files of two names`},
		{"empty", func(f fstest.MapFS) { f["l/002_second.down.sql"] = file(" \n") }, `"002_second.down.sql" is empty`},
		{"no files", func(f fstest.MapFS) {
			for k := range f {
				delete(f, k)
			}
			f["l"] = &fstest.MapFile{Mode: 0o755 | 1<<31} // an empty directory
		}, "line l: no migration files"},
		{"River's table", func(f fstest.MapFS) {
			f["l/002_second.up.sql"] = file("ALTER TABLE {{schema}}river_job ADD COLUMN millrace_x int;")
		}, `"002_second.up.sql": names River's river_job`},
		{"unprefixed table", func(f fstest.MapFS) { f["l/002_second.up.sql"] = file("CREATE TABLE {{schema}}heartbeat (x int);") },
			"CREATE TABLE {{schema}}heartbeat: the name must start with {{schema}}millrace_"},
		{"table outside the schema", func(f fstest.MapFS) {
			f["l/002_second.up.sql"] = file("CREATE UNLOGGED TABLE IF NOT EXISTS millrace_x (x int);")
		}, "CREATE TABLE millrace_x: the name must start with {{schema}}millrace_"},
		{"unprefixed index", func(f fstest.MapFS) {
			f["l/002_second.up.sql"] = file("CREATE UNIQUE INDEX CONCURRENTLY t_idx ON {{schema}}millrace_t (id);")
		}, "CREATE INDEX t_idx: the name must start with millrace_"},
		{"unprefixed constraint", func(f fstest.MapFS) {
			f["l/002_second.up.sql"] = file("ALTER TABLE {{schema}}millrace_t ADD CONSTRAINT positive CHECK (id > 0);")
		}, "CONSTRAINT positive: the name must start with millrace_"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := good()
			c.change(f)
			_, err := loadLine(f, spec)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to say %q", err, c.want)
			}
		})
	}
	// Comments may mention anything; line main may name River's tables.
	f := good()
	f["l/002_second.up.sql"] = file("-- unlike river_job, CREATE TABLE foo is only mentioned here\nSELECT 1;")
	if _, err := loadLine(f, spec); err != nil {
		t.Fatalf("names in comments: %v", err)
	}
	f["l/002_second.up.sql"] = file("ALTER TABLE {{schema}}river_job ADD COLUMN x int;")
	if _, err := loadLine(f, lineSpec{name: "main", dir: "l"}); err != nil {
		t.Fatalf("a line without a prefix naming river_job: %v", err)
	}
}

// TestDependencyCheckedUnderLock reverts line main's version 5 with
// runVersion directly, past Migrate's early check, as a migrator racing
// a concurrent line millrace up would: the check under the lock must
// refuse it and leave version 5 applied.
func TestDependencyCheckedUnderLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testdb.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	drv := pgxv5.New(pool)
	if _, err := MigrateAll(ctx, drv, nil, DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	main, err := New(drv, &Config{Line: LineMain})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := main.Migrate(ctx, DirectionDown, &MigrateOpts{TargetVersion: 5}); err != nil {
		t.Fatal(err)
	}
	_, _, err = main.runVersion(ctx, 5, DirectionDown)
	if !errors.Is(err, ErrLineDependency) {
		t.Fatalf("main version 5 down under the lock with millrace applied: %v", err)
	}
	applied, err := main.Applied(ctx)
	if err != nil || len(applied) != 5 {
		t.Fatalf("main after the refused down: %d versions, %v", len(applied), err)
	}

	// And the other way: line millrace up with main at 4.
	mill, err := New(drv, &Config{Line: LineMillrace})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mill.Migrate(ctx, DirectionDown, &MigrateOpts{TargetVersion: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := main.Migrate(ctx, DirectionDown, &MigrateOpts{TargetVersion: 4}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mill.runVersion(ctx, 1, DirectionUp); !errors.Is(err, ErrLineDependency) {
		t.Fatalf("millrace version 1 up under the lock with main at 4: %v", err)
	}
}
