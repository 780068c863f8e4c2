package pgxv5_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/riverdrivertest"
)

// poolWithMode returns a pool on the test schema's server whose
// connections use mode, with search_path set to schema.
func poolWithMode(t *testing.T, schema string, mode pgx.QueryExecMode) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testdb.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.ConnConfig.DefaultQueryExecMode = mode
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestConformanceQueryModes runs the conformance suite with the query modes
// that work behind a pooler in transaction mode (they prepare nothing in
// the server session), so that every query of the driver is known to work
// with them: the exec protocol encodes arguments as text from their Go
// types alone, which a query that relied on the server's parameter types
// would not survive.
func TestConformanceQueryModes(t *testing.T) {
	t.Parallel()
	// The simple protocol, which encodes arguments as the exec protocol
	// does, runs through PgBouncer in TestPgBouncerTransactionMode; the
	// whole suite twice more would double this package's time.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			riverdrivertest.Exercise(t.Context(), t, func(ctx context.Context, t *testing.T) (driver.Driver[pgx.Tx], string) {
				schema, _ := testdb.NewSchema(t)
				drv, err := pgxv5.NewWithOptions(poolWithMode(t, schema, mode), &pgxv5.Options{Pooler: true, PollOnly: true})
				if err != nil {
					t.Fatal(err)
				}
				return drv, schema
			})
		})
	}
}

// TestNewWithOptions checks the options' validation: contradictions and a
// pooled pool that would keep prepared statements or listen through the
// pooler are refused with errors that say what to do.
func TestNewWithOptions(t *testing.T) {
	t.Parallel()
	schema, _ := testdb.NewSchema(t)
	cached := poolWithMode(t, schema, pgx.QueryExecModeCacheStatement)
	exec := poolWithMode(t, schema, pgx.QueryExecModeExec)
	direct, err := pgx.ParseConfig(testdb.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		pool    *pgxpool.Pool
		opts    *pgxv5.Options
		wantErr string
	}{
		{"nil pool", nil, &pgxv5.Options{}, "needs a pool"},
		{"pooler with pgx's default mode", cached, &pgxv5.Options{Pooler: true, PollOnly: true}, "cache_statement (pgx's default)"},
		{"pooler with describe_exec", poolWithMode(t, schema, pgx.QueryExecModeDescribeExec), &pgxv5.Options{Pooler: true, PollOnly: true}, "describe_exec"},
		{"pooler listening through the pooler", exec, &pgxv5.Options{Pooler: true}, "set Options.ListenerConfig to a direct connection"},
		{"poll only with a listener", exec, &pgxv5.Options{PollOnly: true, ListenerConfig: direct}, "contradict"},
		{"listener config not parsed", exec, &pgxv5.Options{ListenerConfig: &pgx.ConnConfig{}}, "pgx.ParseConfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drv, err := pgxv5.NewWithOptions(tc.pool, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewWithOptions: driver %v, error %v; want an error containing %q", drv != nil, err, tc.wantErr)
			}
		})
	}

	for _, tc := range []struct {
		name   string
		pool   *pgxpool.Pool
		opts   *pgxv5.Options
		listen bool
	}{
		{"nil options", cached, nil, true},
		{"direct pool", cached, &pgxv5.Options{ListenerConfig: direct}, true},
		{"pooler with a direct listener", exec, &pgxv5.Options{Pooler: true, ListenerConfig: direct}, true},
		{"pooler polling", exec, &pgxv5.Options{Pooler: true, PollOnly: true}, false},
		{"cache_describe polling", poolWithMode(t, schema, pgx.QueryExecModeCacheDescribe), &pgxv5.Options{Pooler: true, PollOnly: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drv, err := pgxv5.NewWithOptions(tc.pool, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if drv.SupportsListener() != tc.listen {
				t.Fatalf("SupportsListener %v, want %v", drv.SupportsListener(), tc.listen)
			}
			l, err := drv.GetListener(schema)
			if !tc.listen {
				if err == nil {
					t.Fatal("GetListener of a poll-only driver succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Connect(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer l.Close(context.Background())
			if err := l.Ping(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	}
}
