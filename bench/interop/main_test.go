// Package interop checks millrace against River v0.51.2 itself on one
// Postgres: migrations, jobs inserted by one and worked by the other,
// unique keys, a shared queue, leader election, control notifications and
// resumable jobs resumed by the other system.
// Each test gets a schema of its own, dropped at cleanup.
package interop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"go.uber.org/goleak"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

const defaultTestURL = "postgres://postgres@127.0.0.1:5432/postgres"

func TestMain(m *testing.M) {
	flag.Parse()
	// These tests spend their time waiting on notifications and timers, not
	// on the CPU: run more of them at once than GOMAXPROCS (unless -parallel
	// was given).
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "6")
	}
	goleak.VerifyTestMain(m)
}

// testURL is the server the tests use: TEST_DATABASE_URL, else the local
// default.
func testURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return defaultTestURL
}

// newPool opens a small pool on the test server, closed at cleanup. Each
// client gets its own, as separate processes would have.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to %s: %v", testURL(), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		t.Fatalf("connect to %s (set TEST_DATABASE_URL, or run make test, which starts one): %v", testURL(), err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// newSchema creates an empty schema of a random name, dropped at cleanup.
func newSchema(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	buf := make([]byte, 6)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	schema := "interop_" + hex.EncodeToString(buf)
	if _, err := pool.Exec(context.Background(), "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		// A pool of its own: the test's pools are closed by now.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, testURL())
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// migrateRiver migrates schema to River's latest version with River's
// migrator.
func migrateRiver(t *testing.T, pool *pgxpool.Pool, schema string) {
	t.Helper()
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: schema, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(context.Background(), rivermigrate.DirectionUp, nil); err != nil {
		t.Fatalf("River migrate %s: %v", schema, err)
	}
}

// migrateMillrace migrates schema with millrace's migrator, every line
// (what `millrace migrate up` does).
func migrateMillrace(t *testing.T, pool *pgxpool.Pool, schema string) {
	t.Helper()
	if _, err := migrate.MigrateAll(context.Background(), pgxv5.New(pool), &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
		t.Fatalf("millrace migrate %s: %v", schema, err)
	}
}

// setup gives a test a fresh schema, migrated by River's migrator (half
// the tests: then millrace's adds its own line) or millrace's, and the pool
// that made it.
func setup(t *testing.T, byRiver bool) (*pgxpool.Pool, string) {
	t.Helper()
	pool := newPool(t)
	schema := newSchema(t, pool)
	if byRiver {
		// River's migrator makes line main; a River user switching runs
		// `millrace migrate up`, which adds the millrace line on top.
		migrateRiver(t, pool, schema)
		migrateMillrace(t, pool, schema)
	} else {
		migrateMillrace(t, pool, schema)
	}
	return pool, schema
}

// quietLogger keeps the clients' logs to warnings and up, and only when
// INTEROP_LOG is set.
func quietLogger() *slog.Logger {
	if os.Getenv("INTEROP_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newRiverClient makes a River client on a pool of its own; with cfg.Queues
// set it is started. It is stopped at cleanup.
func newRiverClient(t *testing.T, schema string, cfg *river.Config) *river.Client[pgx.Tx] {
	t.Helper()
	pool := newPool(t)
	if cfg == nil {
		cfg = &river.Config{}
	}
	cfg.Schema = schema
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	c, err := river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		t.Fatalf("River client: %v", err)
	}
	if len(cfg.Queues) > 0 {
		if err := c.Start(context.Background()); err != nil {
			t.Fatalf("start River client: %v", err)
		}
		t.Cleanup(func() { stopWithin(t, "River client", c.Stop) })
	}
	return c
}

// newMillraceClient makes a millrace client on a pool of its own; with
// cfg.Queues set it is started. It is stopped at cleanup.
func newMillraceClient(t *testing.T, schema string, cfg *client.Config) *client.Client[pgx.Tx] {
	t.Helper()
	pool := newPool(t)
	if cfg == nil {
		cfg = &client.Config{}
	}
	cfg.Schema = schema
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	c, err := client.New(pgxv5.New(pool), cfg)
	if err != nil {
		t.Fatalf("millrace client: %v", err)
	}
	if len(cfg.Queues) > 0 {
		if err := c.Start(context.Background()); err != nil {
			t.Fatalf("start millrace client: %v", err)
		}
		t.Cleanup(func() { stopWithin(t, "millrace client", c.Stop) })
	}
	return c
}

// stopWithin stops a client; a second Stop after the test's own is
// harmless for both systems.
func stopWithin(t *testing.T, what string, stop func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		t.Errorf("stop %s: %v", what, err)
	}
}

// eventually polls cond every 20 ms until it holds or within passes; it
// reports whether it held.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jobTable is the schema's job table, quoted.
func jobTable(schema string) string { return pgx.Identifier{schema, "river_job"}.Sanitize() }
