package testdb

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeHelperEnv) != "" {
		os.Exit(fakeHelper())
	}
	Main(m)
}

// validName is what the package promises about schema and database names.
var validName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctxFor(t), url)
	if err != nil {
		t.Fatalf("connect to %s: %v", describe(url), err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestUniqueName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		testName   string
		wantPrefix string
	}{
		{"TestFoo", "t_testfoo_"},
		{"TestFoo/sub_case#01", "t_testfoo_sub_case_01_"},
		{"Test Ünïcode/ÄÖ--x", "t_test_n_code_x_"},
		{"///", "t_"},
		{"", "t_"},
		{strings.Repeat("TestAVeryLongName/", 10), "t_testaverylongname_testaverylongna_"},
		{"TestX" + strings.Repeat("_", 40) + "y", "t_testx_y_"},
	}
	for _, tt := range tests {
		t.Run(tt.testName, func(t *testing.T) {
			t.Parallel()
			got := uniqueName(tt.testName)
			if !strings.HasPrefix(got, tt.wantPrefix) {
				t.Errorf("uniqueName(%q) = %q, want prefix %q", tt.testName, got, tt.wantPrefix)
			}
			if len(got) > maxNameLen || !validName.MatchString(got) {
				t.Errorf("uniqueName(%q) = %q (%d bytes), want at most %d bytes matching %s", tt.testName, got, len(got), maxNameLen, validName)
			}
			if len(got) != len(tt.wantPrefix)+randomHexLen {
				t.Errorf("uniqueName(%q) = %q, want %q followed by %d random hex digits", tt.testName, got, tt.wantPrefix, randomHexLen)
			}
			if other := uniqueName(tt.testName); other == got {
				t.Errorf("uniqueName(%q) returned %q twice", tt.testName, got)
			}
		})
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/t_x?sslmode=disable"},
		{"postgresql://u:p%40ss@h/db", "postgresql://u:p%40ss@h/t_x"},
		{"postgres://u@h:1", "postgres://u@h:1/t_x"},
		{"host=h user=u dbname=db", "host=h user=u dbname=db dbname=t_x"},
	}
	for _, tt := range tests {
		got, err := withDatabase(tt.in, "t_x")
		if err != nil || got != tt.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestChooseServerErrors(t *testing.T) {
	// Not parallel: it sets environment variables.
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, mode, url string
		wantErr         []string
	}{
		{"unknown mode", "bogus", "", []string{`MILLRACE_TESTDB="bogus" is not one of url, local, initdb, container`}},
		{"url forced but unset", "url", "", []string{"MILLRACE_TESTDB=url", "TEST_DATABASE_URL is not set"}},
		{"url does not answer", "", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
			[]string{"TEST_DATABASE_URL is set", fmt.Sprintf("postgres@127.0.0.1:%d/postgres", port), "does not answer", "unset it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envMode, tt.mode)
			t.Setenv(envURL, tt.url)
			srv, err := chooseServer()
			if err == nil {
				srv.close()
				t.Fatalf("chooseServer() chose %s, want an error", srv.display)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("chooseServer() error = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestAdminURL(t *testing.T) {
	t.Parallel()
	conn := connect(t, AdminURL(t))
	var super bool
	if err := conn.QueryRow(ctxFor(t), "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		t.Fatal(err)
	}
	if !super {
		t.Logf("AdminURL connects as a non-superuser; NewSchema and NewDatabase still need CREATE rights")
	}
}

func TestNewSchemaIsolated(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	schemaA, poolA := NewSchema(t)
	schemaB, poolB := NewSchema(t)
	if schemaA == schemaB {
		t.Fatalf("two calls returned the same schema %s", schemaA)
	}
	for _, s := range []string{schemaA, schemaB} {
		if len(s) > maxNameLen || !validName.MatchString(s) || !strings.HasPrefix(s, "t_testnewschemaisolated_") {
			t.Errorf("schema name %q: want t_testnewschemaisolated_<random>, at most %d bytes, matching %s", s, maxNameLen, validName)
		}
	}

	var current string
	if err := poolA.QueryRow(ctx, "SELECT current_schema()").Scan(&current); err != nil || current != schemaA {
		t.Fatalf("current_schema() in pool A = %q, %v; want %q", current, err, schemaA)
	}

	// The same unqualified name in both schemas: each pool sees its own.
	if _, err := poolA.Exec(ctx, "CREATE TABLE widget (id int); INSERT INTO widget VALUES (1), (2)"); err != nil {
		t.Fatalf("create table in schema A: %v", err)
	}
	var inB *string
	if err := poolB.QueryRow(ctx, "SELECT to_regclass('widget')::text").Scan(&inB); err != nil {
		t.Fatal(err)
	}
	if inB != nil {
		t.Fatalf("table widget of schema %s is visible from schema %s as %s", schemaA, schemaB, *inB)
	}
	if _, err := poolB.Exec(ctx, "CREATE TABLE widget (id int)"); err != nil {
		t.Fatalf("create table of the same name in schema B: %v", err)
	}
	var countA, countB int
	if err := poolA.QueryRow(ctx, "SELECT count(*) FROM widget").Scan(&countA); err != nil {
		t.Fatal(err)
	}
	if err := poolB.QueryRow(ctx, "SELECT count(*) FROM widget").Scan(&countB); err != nil {
		t.Fatal(err)
	}
	if countA != 2 || countB != 0 {
		t.Fatalf("rows in widget: schema A %d, schema B %d; want 2 and 0", countA, countB)
	}
}

func TestNewSchemaDroppedAtCleanup(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	var schema string
	var poolClosed func() error
	t.Run("user", func(t *testing.T) {
		s, pool := NewSchema(t)
		schema = s
		if _, err := pool.Exec(ctx, "CREATE TABLE widget (id int PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		poolClosed = func() error { return pool.Ping(ctx) }
	})

	if err := poolClosed(); err == nil {
		t.Errorf("the pool of schema %s still works after its test ended; want it closed", schema)
	}
	conn := connect(t, AdminURL(t))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("schema %s still exists after its test ended", schema)
	}
}

func TestNewSchemaManyParallel(t *testing.T) {
	t.Parallel()
	for i := range 16 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t)
			_, pool := NewSchema(t)
			if _, err := pool.Exec(ctx, "CREATE TABLE n (v int)"); err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec(ctx, "INSERT INTO n SELECT generate_series(1, $1)", i); err != nil {
				t.Fatal(err)
			}
			var count int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM n").Scan(&count); err != nil {
				t.Fatal(err)
			}
			if count != i {
				t.Fatalf("count = %d, want %d: schemas are not isolated", count, i)
			}
		})
	}
}

func TestNewDatabase(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	var name string
	var leftOpen *pgx.Conn
	t.Run("user", func(t *testing.T) {
		url := NewDatabase(t)
		conn := connect(t, url)
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if len(name) > maxNameLen || !validName.MatchString(name) || !strings.HasPrefix(name, "t_testnewdatabase_user_") {
			t.Errorf("database name %q: want t_testnewdatabase_user_<random>, at most %d bytes, matching %s", name, maxNameLen, validName)
		}
		var tables int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Errorf("new database has %d tables in public, want 0", tables)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE public.widget (id int)"); err != nil {
			t.Fatal(err)
		}
		// A connection the test forgets must not stop the drop.
		leftOpen, _ = pgx.Connect(ctx, url)
	})
	if leftOpen != nil {
		defer leftOpen.Close(context.Background())
	}

	conn := connect(t, AdminURL(t))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

// TestRestart runs only on the throwaway cluster (MILLRACE_TESTDB=initdb,
// and always in TestInitdbPathInSubprocess's child). Not parallel: a restart
// cuts every connection on the server.
func TestRestart(t *testing.T) {
	checkRestart(t)
}

// checkRestart restarts the server under a pool and checks the pool recovers
// and the data survives.
func checkRestart(t *testing.T) {
	t.Helper()
	ctx := ctxFor(t)
	_, pool := NewSchema(t)
	if _, err := pool.Exec(ctx, "CREATE TABLE survivor (id int); INSERT INTO survivor VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	Restart(t)

	// Connections made before the restart are dead; the pool drops each one
	// as it fails, so a few attempts get a fresh one.
	var id int
	var err error
	for range 20 {
		if err = pool.QueryRow(ctx, "SELECT id FROM survivor").Scan(&id); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || id != 42 {
		t.Fatalf("after Restart: SELECT id FROM survivor = %d, %v; want 42", id, err)
	}
}
