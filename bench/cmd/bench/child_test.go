package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// These tests run the children's measurements in the test process, tiny,
// on a real Postgres: TEST_DATABASE_URL, else the bench's default.

func testURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return defaultURL
}

func adminPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, testURL())
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		t.Fatalf("connect to %s (set TEST_DATABASE_URL, or run make test, which starts one): %v", testURL(), err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// testSchema makes a fresh schema migrated by system's migrator, dropped at
// cleanup.
func testSchema(t *testing.T, pool *pgxpool.Pool, system string) string {
	t.Helper()
	schema, err := freshSchema(context.Background(), pool, system)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dropSchema(context.Background(), pool, schema); err != nil {
			t.Errorf("drop %s: %v", schema, err)
		}
	})
	return schema
}

func TestPreInsert(t *testing.T) {
	ctx := context.Background()
	pool := adminPool(t)
	for _, autovacuumOn := range []bool{false, true} {
		schema := testSchema(t, pool, "river")
		what, took, err := preInsert(ctx, pool, schema, prefill{Available: 50, Finalized: 200, Queue: bulkQueue, PauseQueue: true}, autovacuumOn)
		if err != nil {
			t.Fatal(err)
		}
		wantMaint := map[bool]string{false: "ran VACUUM (ANALYZE)", true: "ran ANALYZE"}[autovacuumOn]
		if !strings.Contains(what, "wrote 200 completed rows") || !strings.Contains(what, wantMaint) || took == "" {
			t.Errorf("autovacuum on %v: what = %q, took = %q", autovacuumOn, what, took)
		}
		table := pgx.Identifier{schema, "river_job"}.Sanitize()
		var (
			completed, available, badHistory int
			maxCompletedID, minAvailableID   int64
			paused                           bool
		)
		err = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'completed'),
			count(*) FILTER (WHERE state = 'available' AND queue = $1),
			count(*) FILTER (WHERE state = 'completed' AND NOT (args = '{}' AND attempt = 1 AND queue = 'default'
				AND finalized_at > now() - interval '13 hours' AND finalized_at < now() + interval '1 minute'
				AND attempted_at IS NOT NULL AND attempted_by = '{bench_history}')),
			max(id) FILTER (WHERE state = 'completed'), min(id) FILTER (WHERE state = 'available')
			FROM `+table, bulkQueue).Scan(&completed, &available, &badHistory, &maxCompletedID, &minAvailableID)
		if err != nil {
			t.Fatal(err)
		}
		if completed != 200 || available != 50 || badHistory != 0 || maxCompletedID >= minAvailableID {
			t.Errorf("%d completed (%d unlike the history), %d available; completed IDs up to %d, available from %d",
				completed, badHistory, available, maxCompletedID, minAvailableID)
		}
		if err := pool.QueryRow(ctx, "SELECT paused_at IS NOT NULL FROM "+pgx.Identifier{schema, "river_queue"}.Sanitize()+
			" WHERE name = $1", bulkQueue).Scan(&paused); err != nil || !paused {
			t.Errorf("queue %s paused: %v, %v", bulkQueue, paused, err)
		}
	}
	// Available jobs alone say nothing.
	schema := testSchema(t, pool, "millrace")
	if what, _, err := preInsert(ctx, pool, schema, prefill{Available: 10}, false); err != nil || what != "" {
		t.Errorf("available only: %q, %v", what, err)
	}
}

func TestReadPGSettings(t *testing.T) {
	settings, err := readPGSettings(context.Background(), adminPool(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(settings) != len(reportedSettings)+1 {
		t.Fatalf("%d settings, want %d", len(settings), len(reportedSettings)+1)
	}
	for i, name := range reportedSettings {
		// shared_preload_libraries may well be empty.
		if settings[i].Name != name || (settings[i].Value == "" && name != "shared_preload_libraries") {
			t.Errorf("setting %d = %+v, want %s with a value", i, settings[i], name)
		}
	}
	if v := settingValue(settings, "fsync"); v != "on" && v != "off" {
		t.Errorf("fsync = %q", v)
	}
	if v := settingValue(settings, connectionSSLSetting); v != "on" && v != "off" {
		t.Errorf("%s = %q", connectionSSLSetting, v)
	}
}

// runChild writes pre into a fresh schema of c.system's, then runs spec
// there as a child process would.
func runChild(t *testing.T, name string, c contender, pre prefill, spec runSpec) *runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool := adminPool(t)
	schema := testSchema(t, pool, c.system)
	if _, _, err := preInsert(ctx, pool, schema, pre, false); err != nil {
		t.Fatal(err)
	}
	spec.Scenario, spec.System, spec.Variant = name, c.system, c.variant
	spec.Schema, spec.URL, spec.PoolConns, spec.MillraceWorkers = schema, testURL(), 8, 50
	spec.Label = t.Name()
	res, err := childRun(ctx, &spec)
	if err != nil {
		t.Fatalf("%s %s: %v", name, c.label, err)
	}
	return res
}

// checkCost makes sure a burndown-like run measured its cost.
func checkCost(t *testing.T, res *runResult, jobs int) {
	t.Helper()
	c := res.Cost
	if c == nil {
		t.Fatal("no cost measured")
	}
	if c.RoundTripsPerJob <= 0 || c.StatementsPerJob < c.RoundTripsPerJob || c.WALBytesPerJob <= 0 || c.CommitsPerJob <= 0 {
		t.Errorf("cost = %+v: want round trips, statements, WAL and commits", *c)
	}
	if res.Count != jobs || res.JobsPerS <= 0 {
		t.Errorf("count %d, %v jobs/s; want %d", res.Count, res.JobsPerS, jobs)
	}
}

func TestChildBurndown(t *testing.T) {
	const n = 300
	for _, c := range []contender{millraceDefaults, riverTuned, millraceDatabaseSQL} {
		t.Run(c.label, func(t *testing.T) {
			dir := t.TempDir()
			res := runChild(t, "burndown", c, prefill{Available: n}, runSpec{Jobs: n, ProfileDir: dir, ProfileName: "p"})
			checkCost(t, res, n)
			if res.AllocsPerJob <= 0 || res.PeakRSSMB <= 0 {
				t.Errorf("memory figures: %+v", res)
			}
			for _, f := range []string{"p.cpu.pprof", "p.allocs.pprof"} {
				if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
					t.Errorf("profile %s: %v", f, err)
				}
			}
		})
	}
}

// TestChildEphemeral: the ephemeral burndown works every job once and
// leaves no row behind (the child checks both).
func TestChildEphemeral(t *testing.T) {
	const n = 300
	if err := ephemeralSupported(); err != nil {
		t.Fatal(err)
	}
	res := runChild(t, "ephemeral", millraceEphemeral, prefill{Available: n}, runSpec{Jobs: n})
	checkCost(t, res, n)
}

func TestChildScaleWithHistory(t *testing.T) {
	const n, finalized = 200, 1000
	res := runChild(t, "scale", millraceDefaults, prefill{Available: n, Finalized: finalized},
		runSpec{Jobs: n, Finalized: finalized, Point: scalePoint{n, finalized}.key()})
	checkCost(t, res, n)
}

func TestChildCeiling(t *testing.T) {
	const n, batch = 1000, 100
	for _, tc := range []struct {
		name string
		c    contender
	}{{"sql_ceiling", sqlLoop}, {"sql_ceiling_delete", sqlDeleteLoop}} {
		t.Run(tc.name, func(t *testing.T) {
			res := runChild(t, tc.name, tc.c, prefill{Available: n}, runSpec{Jobs: n, Loops: 2, Batch: batch})
			checkCost(t, res, n)
			c := res.Cost
			// Every loop statement fetches at most batch jobs, and the
			// last of each loop fetches none.
			if rt := c.RoundTripsPerJob * n; rt < n/batch+2 || c.RoundTripsPerJob != c.StatementsPerJob {
				t.Errorf("%v round trips, %v statements per job", c.RoundTripsPerJob, c.StatementsPerJob)
			}
			// The loop sends single statements, each a transaction of its
			// own, so xact_commit sees at least as many (other sessions on
			// the database only add to it). This holds only if the
			// statistics of the loop's backends were flushed before the
			// read.
			if c.CommitsPerJob < c.StatementsPerJob {
				t.Errorf("%v commits per job, fewer than the %v statements", c.CommitsPerJob, c.StatementsPerJob)
			}
		})
	}
}

func TestChildMixed(t *testing.T) {
	const bulk = 2000
	for _, c := range []contender{millraceDefaults, riverTuned} {
		t.Run(c.label, func(t *testing.T) {
			res := runChild(t, "mixed", c, prefill{Available: bulk, Queue: bulkQueue, PauseQueue: true},
				runSpec{Rate: 200, Duration: time.Second, WorkFor: time.Millisecond, Inserter: "separate", BulkJobs: bulk})
			if res.Count != 200 || res.BulkJobsPerS <= 0 || res.BulkSeconds <= 0 || res.LoadCount > res.Count {
				t.Errorf("result %+v", res)
			}
			if res.LoadCount > 0 && res.LoadMax > res.Max {
				t.Errorf("the jobs during the burndown are a subset: their max %v > overall max %v", res.LoadMax, res.Max)
			}
		})
	}
}

// TestChildLatencyFloor: the SQL floor works the latency scenario's stream
// from either inserter (the child checks every job completed once) and
// refuses mixed's two queues.
func TestChildLatencyFloor(t *testing.T) {
	for _, ins := range []string{"separate", "same"} {
		t.Run(ins, func(t *testing.T) {
			res := runChild(t, "latency", sqlFloor, prefill{}, runSpec{Rate: 200, Duration: time.Second, Inserter: ins})
			if res.Count != 200 || res.P50 < 0 || res.P99 < res.P50 || res.Max < res.P99 || res.Max <= 0 || res.JobsPerS <= 0 {
				t.Errorf("result %+v", res)
			}
		})
	}
	pool := adminPool(t)
	schema := testSchema(t, pool, "sql")
	_, err := childRun(context.Background(), &runSpec{Scenario: "mixed", System: "sql", Variant: variantFloor, Schema: schema,
		URL: testURL(), PoolConns: 4, Rate: 10, Duration: time.Second, BulkJobs: 10, Label: t.Name()})
	if err == nil || !strings.Contains(err.Error(), "works one queue") {
		t.Errorf("mixed on the floor: %v", err)
	}
}

// TestChildBurndownSQLite: the SQLite variant inserts its jobs into a file
// of its own, works every one (the child checks them completed) and
// reports no Postgres cost; other scenarios are refused.
func TestChildBurndownSQLite(t *testing.T) {
	const n = 300
	res, err := childRun(context.Background(), &runSpec{Scenario: "burndown", System: "millrace", Variant: variantSQLite,
		Jobs: n, MillraceWorkers: 50, Label: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != n || res.JobsPerS <= 0 || res.AllocsPerJob <= 0 || res.Cost != nil {
		t.Fatalf("result %+v: want %d jobs, a rate, allocations and no Postgres cost", res, n)
	}
	if _, err := childRun(context.Background(), &runSpec{Scenario: "latency", System: "millrace", Variant: variantSQLite}); err == nil {
		t.Fatal("the SQLite variant ran the latency scenario")
	}
}
