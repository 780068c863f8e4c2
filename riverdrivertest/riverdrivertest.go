// Package riverdrivertest is the conformance suite every millrace driver
// must pass. It checks each method of driver.Driver, driver.Executor,
// driver.ExecutorTx and driver.Listener against the contract written in
// package driver and against the River compatibility facts (the data each
// query writes is read by River clients too, so a driver that is merely
// "close" corrupts a mixed deployment).
//
// A driver's own tests run the suite with one call, giving a factory that
// returns a driver on a pool and the name of a fresh, empty schema:
//
//	func TestMain(m *testing.M) { testdb.Main(m) }
//
//	func TestConformance(t *testing.T) {
//		riverdrivertest.Exercise(context.Background(), t,
//			func(ctx context.Context, t *testing.T) (driver.Driver[pgx.Tx], string) {
//				schema, pool := testdb.NewSchema(t)
//				return pgxv5.New(pool), schema
//			})
//	}
//
// Every subtest calls the factory for its own schema, migrates it with
// package migrate and runs in parallel with the others, so the factory is
// called many times concurrently and must clean up after itself (through
// t.Cleanup, as testdb.NewSchema does). What the factory must provide:
//
//   - A driver whose PoolIsSet is true, working on the test database.
//   - A schema that exists, is empty and belongs to this call alone.
//   - Connections (pool and listener) whose search_path is that schema, so
//     that the empty schema "" (unqualified names) resolves to it; the
//     suite checks that drivers honour the empty schema this way.
//
// A new driver on Postgres (database/sql with pgx's stdlib or lib/pq, say)
// passes its own transaction type as TTx and needs nothing else. The suite
// reaches native transactions only through the driver itself (Begin, then
// UnwrapTx, then UnwrapExecutor), never through a database library.
//
// A few checks read or write rows with raw SQL through Executor.Exec (the
// JSON shape of a stored error, an expired leader row, the bit order of
// unique_states). They are written for Postgres and all go through the
// helpers rawExec and rawValue in helpers.go: rawValue reads a value by
// having a small PL/pgSQL function, created in each test schema, raise it
// as an error, because Executor has no query method. A driver for another
// database (SQLite) will need a dialect for those two helpers and the
// statements passed to them; everything else talks to the driver only.
//
// A driver for another database runs the suite with ExerciseWith and
// Options: Dialect DialectSQLite switches rawExec and rawValue (and the
// statements given to them) to SQLite, and Groups names the groups the
// driver runs so far, the others being reported, by name, as not run.
// On SQLite the factory's connections must have the scalar function
// millrace_test_probe(v) registered, which fails with the error
// "millrace-probe[" + JSON of v (null for NULL) + "]millrace-probe"; the
// schema it returns is "main" (a SQLite database has one schema), and
// the subtests' cases about a second schema are skipped when the factory
// returns the same name twice.
//
// A driver without LISTEN/NOTIFY (SupportsListener false) must refuse
// GetListener; the subtests' notification checks are then skipped (the
// rest of a subtest that reads a notification's content, the whole of one
// about the listener itself), with a message saying so. A driver that
// declares itself a single writer (driver.SingleWriter) skips the
// subtests about row locks the same way.
package riverdrivertest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/migrate"
)

// testTimeout bounds each subtest, so that a driver that deadlocks fails
// the test instead of hanging the binary.
const testTimeout = 30 * time.Second

// Exercise runs the conformance suite against the drivers factory makes.
// factory is called once per subtest, concurrently; it returns a driver on
// a pool and the name of a fresh, empty schema that the pool's search_path
// points at (see the package documentation). ctx bounds the whole run.
func Exercise[TTx any](ctx context.Context, t *testing.T, factory func(ctx context.Context, t *testing.T) (drv driver.Driver[TTx], schema string)) {
	t.Helper()
	ExerciseWith(ctx, t, nil, factory)
}

// Dialect is the SQL of the database under the driver, for the suite's
// own raw statements.
type Dialect int

// The dialects.
const (
	// DialectPostgres is the default.
	DialectPostgres Dialect = iota
	// DialectSQLite is SQLite's (see the package documentation for what
	// the factory must provide).
	DialectSQLite
)

// Options configure ExerciseWith. The zero value (or nil) is Exercise: the
// Postgres dialect and every group.
type Options struct {
	// Dialect of the raw SQL.
	Dialect Dialect
	// Groups, when not empty, are the only groups run (a driver that
	// implements part of the contract so far). A name that is no group
	// fails the test; the groups left out are logged by name.
	Groups []string
}

// ExerciseWith is Exercise with options.
func ExerciseWith[TTx any](ctx context.Context, t *testing.T, opts *Options, factory func(ctx context.Context, t *testing.T) (drv driver.Driver[TTx], schema string)) {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	s := &suite[TTx]{ctx: ctx, factory: factory, dialect: opts.Dialect}
	groups := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"Driver", s.testDriver},
		{"ExecutorTx", s.testExecutorTx},
		{"EmptySchema", s.testEmptySchema},
		{"Exec", s.testExec},
		{"Exists", s.testExists},
		{"PGAdvisoryXactLock", s.testAdvisoryLock},
		{"Migration", s.testMigration},
		{"NotifyMany", s.testNotifyMany},
		{"Listener", s.testListener},
		{"JobInsertFull", s.testJobInsertFull},
		{"JobInsertMany", s.testJobInsertMany},
		{"JobInsertManyReplace", s.testJobInsertManyReplace},
		{"JobInsertCopy", s.testJobInsertCopy},
		{"JobGetAvailable", s.testJobGetAvailable},
		{"JobReturnUnstarted", s.testJobReturnUnstarted},
		{"JobSetStateIfRunningMany", s.testJobSetStateIfRunningMany},
		{"JobGetByID", s.testJobGetByID},
		{"JobList", s.testJobList},
		{"JobCancel", s.testJobCancel},
		{"JobRetry", s.testJobRetry},
		{"JobDelete", s.testJobDelete},
		{"AdminRace", s.testAdminRace},
		{"AdminManyRace", s.testAdminManyRace},
		{"JobSchedule", s.testJobSchedule},
		{"JobGetStuck", s.testJobGetStuck},
		{"JobRescueMany", s.testJobRescueMany},
		{"JobDeleteBefore", s.testJobDeleteBefore},
		{"PendingListClean", s.testPendingListClean},
		{"Leader", s.testLeader},
		{"DomainLeader", s.testDomainLeader},
		{"Queue", s.testQueue},
		{"JobListMoreFilters", s.testJobListMoreFilters},
		{"JobDeleteMany", s.testJobDeleteMany},
		{"JobCancelMany", s.testJobCancelMany},
		{"JobRetryMany", s.testJobRetryMany},
		{"JobUpdate", s.testJobUpdate},
		{"JobSetStateOnlyIfRunning", s.testJobSetStateOnlyIfRunning},
		{"QueueAdmin", s.testQueueAdmin},
		{"ClientLiveness", s.testClientLiveness},
		{"JobMarkRunning", s.testJobMarkRunning},
		{"PeriodicJob", s.testPeriodicJob},
		{"Limit", s.testLimit},
		{"Rate", s.testRate},
		{"Sequence", s.testSequence},
		{"Fair", s.testFair},
	}
	if len(opts.Groups) > 0 {
		var names, left []string
		for _, g := range groups {
			names = append(names, g.name)
		}
		for _, want := range opts.Groups {
			if !slices.Contains(names, want) {
				t.Fatalf("riverdrivertest: no group %q (groups: %s)", want, strings.Join(names, ", "))
			}
		}
		kept := groups[:0:0]
		for _, g := range groups {
			if slices.Contains(opts.Groups, g.name) {
				kept = append(kept, g)
			} else {
				left = append(left, g.name)
			}
		}
		groups = kept
		if len(left) > 0 {
			t.Logf("riverdrivertest: %d groups not run for this driver: %s", len(left), strings.Join(left, ", "))
		}
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.run(t)
		})
	}
}

// suite holds what every subtest needs to make its environment.
type suite[TTx any] struct {
	ctx     context.Context
	factory func(ctx context.Context, t *testing.T) (driver.Driver[TTx], string)
	dialect Dialect
}

// env is one subtest's world: a driver, its pool executor and a schema of
// its own.
type env[TTx any] struct {
	ctx  context.Context
	drv  driver.Driver[TTx]
	exec driver.Executor
	// schema is what the subtest passes in params: the schema's name, or ""
	// for the subtests of unqualified names.
	schema string
	// name is the schema's real name, for raw SQL and other schemas.
	name string
	// dialect of the raw SQL.
	dialect Dialect
}

// run runs fn as a parallel subtest with a freshly migrated schema.
func (s *suite[TTx]) run(t *testing.T, name string, fn func(t *testing.T, e *env[TTx])) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		fn(t, s.setup(t, true))
	})
}

// runBare runs fn as a parallel subtest with an empty, unmigrated schema.
func (s *suite[TTx]) runBare(t *testing.T, name string, fn func(t *testing.T, e *env[TTx])) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		fn(t, s.setup(t, false))
	})
}

// setup calls the factory and, when migrated, migrates the schema up to the
// latest version and installs the rawValue helper function.
func (s *suite[TTx]) setup(t *testing.T, migrated bool) *env[TTx] {
	t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, testTimeout)
	t.Cleanup(cancel)
	drv, schema := s.factory(ctx, t)
	if drv == nil {
		t.Fatal("riverdrivertest: factory returned a nil driver")
	}
	if schema == "" {
		t.Fatal("riverdrivertest: factory must return the name of a fresh schema, not \"\"")
	}
	e := &env[TTx]{ctx: ctx, drv: drv, exec: drv.GetExecutor(), schema: schema, name: schema, dialect: s.dialect}
	if migrated {
		e.migrate(t, 0)
		e.migrateLine(t, migrate.LineMillrace)
		e.installProbe(t)
	}
	return e
}

// migrateLine migrates another line of the env's schema to its latest
// version.
func (e *env[TTx]) migrateLine(t *testing.T, line string) {
	t.Helper()
	m, err := migrate.New(e.drv, &migrate.Config{Schema: e.name, Line: line})
	if err != nil {
		t.Fatalf("migrate.New line %s: %v", line, err)
	}
	if _, err := m.Migrate(e.ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatalf("migrate line %s of schema %s: %v", line, e.name, err)
	}
}

// migrate migrates the env's schema up to target (0 = latest).
func (e *env[TTx]) migrate(t *testing.T, target int) {
	t.Helper()
	m, err := migrate.New(e.drv, &migrate.Config{Schema: e.name})
	if err != nil {
		t.Fatalf("migrate.New: %v", err)
	}
	if _, err := m.Migrate(e.ctx, migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: target}); err != nil {
		t.Fatalf("migrate schema %s up to %d: %v", e.name, target, err)
	}
}
