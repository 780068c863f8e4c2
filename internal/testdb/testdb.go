package testdb

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"
)

const (
	// ddlTimeout bounds one CREATE or DROP of a schema or database,
	// including the connection it needs.
	ddlTimeout = 60 * time.Second

	// poolCloseTimeout bounds how long a test's pool may take to close at
	// cleanup. pgxpool's Close waits for every acquired connection, so a
	// test that forgets to release one would otherwise hang the binary.
	poolCloseTimeout = 15 * time.Second

	// schemaPoolMaxConns is the size of the pool NewSchema returns, unless
	// the server URL sets pool_max_conns. It is fixed rather than derived
	// from the CPU count so that many parallel tests on a many-core machine
	// do not exhaust the server's max_connections.
	schemaPoolMaxConns = 10
)

var (
	// mainActive is set while Main runs the tests. Provisioning refuses to
	// run without it, because only Main stops a throwaway cluster.
	mainActive atomic.Bool

	provisionOnce sync.Once
	current       *server // the chosen server, set by provisionOnce
	provisionErr  error   // why no server could be chosen, set by provisionOnce

	// serverMu is held for reading while a helper creates or drops a schema
	// or database, and for writing by Restart and by the teardown in Main,
	// so that a restart never cuts a helper's statement in half.
	serverMu sync.RWMutex
)

// Main runs the tests of a package and is meant to be its whole TestMain:
//
//	func TestMain(m *testing.M) { testdb.Main(m) }
//
// It runs m.Run, then stops and deletes the throwaway cluster or container
// if this binary started one, then, if every test passed, fails the binary
// when goroutines are still running (goleak.Find, which waits a little for
// goroutines that are about to exit). It ends the process with the right
// exit code and never returns.
func Main(m *testing.M) {
	mainActive.Store(true)
	code := m.Run()
	mainActive.Store(false)

	if err := teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "testdb: teardown failed: %v\n", err)
		if code == 0 {
			code = 1
		}
	}

	// Like goleak.VerifyTestMain, look for leaks only when the tests
	// passed: a failed test often leaves goroutines behind, and reporting
	// them would only bury the real failure.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "testdb: goroutines leaked by the tests of this package (goleak):\n%v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// AdminURL returns the connection string of the test server, choosing and if
// need be starting the server on first use. It connects as a superuser to the
// server's maintenance database (postgres, unless TEST_DATABASE_URL names
// another). Tests that want isolation should use [NewSchema] or [NewDatabase]
// instead of writing through it.
func AdminURL(tb testing.TB) string {
	tb.Helper()
	return serverFor(tb).url
}

// NewSchema creates a schema with a fresh name on the test server and returns
// the name and a pool whose connections have search_path set to that schema
// alone, so unqualified names land in it. The name looks like
// t_<test name prefix>_<random>, is at most 46 bytes and matches
// ^[a-z_][a-z0-9_]*$, so it can be used unquoted.
//
// The pool has at most 10 connections unless the server URL sets
// pool_max_conns. Tests that need another pool build one from [AdminURL]
// with search_path set to the returned schema.
//
// At cleanup the pool is closed and the schema dropped with CASCADE; a
// failure to do either fails the test. Schemas of parallel tests share the
// server but never see each other's tables.
func NewSchema(tb testing.TB) (schema string, pool *pgxpool.Pool) {
	tb.Helper()
	srv := serverFor(tb)
	schema = uniqueName(tb.Name())
	ident := pgx.Identifier{schema}.Sanitize()

	if err := srv.ddl("CREATE SCHEMA " + ident); err != nil {
		tb.Fatalf("testdb: create schema %s on %s: %v", schema, srv.display, err)
	}
	// Registered before the pool exists so that the schema is dropped even
	// when making the pool fails below. Cleanups run last-in first-out, so
	// anything the test registers later (stopping a client that uses the
	// pool, say) runs before this.
	tb.Cleanup(func() {
		if pool != nil {
			closePool(tb, pool, schema)
		}
		if err := srv.ddl("DROP SCHEMA IF EXISTS " + ident + " CASCADE"); err != nil {
			tb.Errorf("testdb: drop schema %s on %s at cleanup: %v", schema, srv.display, err)
		}
	})

	cfg, err := pgxpool.ParseConfig(srv.url)
	if err != nil {
		tb.Fatalf("testdb: parse connection string of %s: %v", srv.display, err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	if !hasPoolMaxConns(srv.url) {
		cfg.MaxConns = schemaPoolMaxConns
	}
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("testdb: create pool for schema %s on %s: %v", schema, srv.display, err)
	}
	pool = p

	ctx, cancel := context.WithTimeout(context.Background(), ddlTimeout)
	defer cancel()
	if err := pool.Ping(ctx); err != nil {
		tb.Fatalf("testdb: connect pool for schema %s on %s: %v", schema, srv.display, err)
	}
	return schema, pool
}

// NewDatabase creates a database with a fresh name (same form as NewSchema's)
// from template0 on the test server and returns a connection string for it,
// as the same superuser as [AdminURL]. Its public schema is empty and its
// own. At cleanup it is dropped WITH (FORCE), which ends connections the test
// left open; a failure to drop it fails the test. It needs PostgreSQL 13 or
// newer.
func NewDatabase(tb testing.TB) (url string) {
	tb.Helper()
	srv := serverFor(tb)
	name := uniqueName(tb.Name())
	ident := pgx.Identifier{name}.Sanitize()

	url, err := withDatabase(srv.url, name)
	if err != nil {
		tb.Fatalf("testdb: build connection string for database %s on %s: %v", name, srv.display, err)
	}
	if err := srv.ddl("CREATE DATABASE " + ident + " TEMPLATE template0"); err != nil {
		tb.Fatalf("testdb: create database %s on %s: %v", name, srv.display, err)
	}
	tb.Cleanup(func() {
		if err := srv.ddl("DROP DATABASE IF EXISTS " + ident + " WITH (FORCE)"); err != nil {
			tb.Errorf("testdb: drop database %s on %s at cleanup: %v", name, srv.display, err)
		}
	})
	return url
}

// Restart restarts the throwaway cluster (pg_ctl restart, fast mode) and
// returns once it accepts connections again on the same port. Every open
// connection to the server is cut, including those of other tests running at
// the same time, so a test that calls Restart should not call t.Parallel:
// Go runs parallel top-level tests only after the sequential ones finish.
//
// When the server is not this binary's throwaway cluster, Restart skips the
// test (t.Skip); run the tests with MILLRACE_TESTDB=initdb to exercise it.
func Restart(tb testing.TB) {
	tb.Helper()
	srv := serverFor(tb)
	if srv.cluster == nil {
		tb.Skipf("testdb: Restart needs this binary's throwaway cluster, but the server is %s (%s); run with MILLRACE_TESTDB=initdb to exercise restarts", srv.display, srv.kind)
	}

	serverMu.Lock()
	defer serverMu.Unlock()
	start := time.Now()
	if err := srv.cluster.restart(); err != nil {
		tb.Fatalf("testdb: restart throwaway cluster %s: %v", srv.display, err)
	}
	tb.Logf("testdb: restarted throwaway cluster %s in %v", srv.display, time.Since(start).Round(time.Millisecond))
}

// IsThrowaway reports whether the test server is a throwaway cluster that
// this test binary started (and so may restart with [Restart]). It chooses
// the server if that has not happened yet, and reports false when Main is not
// running or no server could be had.
func IsThrowaway() bool {
	if !mainActive.Load() {
		return false
	}
	provisionOnce.Do(provision)
	return current != nil && current.cluster != nil
}

// serverFor returns the test server, choosing it on first use, and fails tb
// when there is none or when Main is not running.
func serverFor(tb testing.TB) *server {
	tb.Helper()
	if !mainActive.Load() {
		tb.Fatalf("testdb: testdb.Main is not running; add\n\tfunc TestMain(m *testing.M) { testdb.Main(m) }\nto this package's tests (it stops throwaway servers and checks for goroutine leaks)")
	}
	provisionOnce.Do(provision)
	if provisionErr != nil {
		tb.Fatal(provisionErr)
	}
	return current
}

// provision chooses the server; it runs once per binary.
func provision() {
	current, provisionErr = chooseServer()
}

// teardown stops the throwaway cluster or container, if any.
func teardown() error {
	serverMu.Lock()
	defer serverMu.Unlock()
	if current == nil {
		return nil
	}
	return current.close()
}

// closePool closes pool, failing tb if that takes longer than
// poolCloseTimeout (some connection was never released).
func closePool(tb testing.TB, pool *pgxpool.Pool, schema string) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		pool.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(poolCloseTimeout):
		tb.Errorf("testdb: the pool of schema %s did not close within %v: a connection is still acquired (an unreleased Conn, unclosed Rows, or an open Tx?)", schema, poolCloseTimeout)
	}
}
