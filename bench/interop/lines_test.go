package interop

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

// lineArgs is the job River's client works on a schema with both lines.
type lineArgs struct {
	N int `json:"n"`
}

func (lineArgs) Kind() string { return "interop_lines" }

// TestMillraceLineInterop migrates a schema with both of millrace's lines
// (River's main and millrace's own) and checks that River does not notice
// the second: its migrator finds line main complete and nothing to do, and
// its client inserts and works a job there.
func TestMillraceLineInterop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	results, err := migrate.MigrateAll(ctx, pgxv5.New(pool), &migrate.Config{Schema: schema}, migrate.DirectionUp, nil)
	if err != nil {
		t.Fatal(err)
	}
	mill, err := migrate.New(pgxv5.New(pool), &migrate.Config{Schema: schema, Line: migrate.LineMillrace})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[1].Line != migrate.LineMillrace || len(results[1].Versions) != mill.Latest() {
		t.Fatalf("millrace MigrateAll up: %+v", results)
	}
	var millraceRows int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "river_migration"}.Sanitize()+
		" WHERE line = 'millrace'").Scan(&millraceRows); err != nil {
		t.Fatal(err)
	}
	if millraceRows != mill.Latest() {
		t.Fatalf("river_migration has %d rows of line millrace, want %d", millraceRows, mill.Latest())
	}
	// A durable periodic job's row (version 2's millrace_periodic), as a
	// millrace leader writes it: River's migrator and client leave it be.
	periodic := pgx.Identifier{schema, "millrace_periodic"}.Sanitize()
	if _, err := pool.Exec(ctx, "INSERT INTO "+periodic+" (id, next_run_at, next_from) VALUES ('nightly', '2030-01-02T03:00:00Z', '2030-01-01T03:00:00Z')"); err != nil {
		t.Fatal(err)
	}
	// A fair queue's partition row (millrace_fair_partition), likewise.
	fairPart := pgx.Identifier{schema, "millrace_fair_partition"}.Sanitize()
	if _, err := pool.Exec(ctx, "INSERT INTO "+fairPart+` (queue, args) VALUES ('default', '{"tenant":"B"}')`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		var args string
		if err := pool.QueryRow(ctx, "SELECT args::text FROM "+fairPart+" WHERE queue = 'default'").Scan(&args); err != nil {
			t.Errorf("millrace_fair_partition after River's migrator and client: %v", err)
		} else if args != `{"tenant": "B"}` {
			t.Errorf("millrace_fair_partition row changed: %s", args)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		var id string
		var next time.Time
		if err := pool.QueryRow(ctx, "SELECT id, next_run_at FROM "+periodic).Scan(&id, &next); err != nil {
			t.Errorf("millrace_periodic after River's migrator and client: %v", err)
		} else if id != "nightly" || !next.Equal(time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)) {
			t.Errorf("millrace_periodic row changed: %s %s", id, next)
		}
	})

	t.Run("River's migrator", func(t *testing.T) {
		m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: schema, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		existing, err := m.ExistingVersions(ctx)
		if err != nil {
			t.Fatalf("River reads the versions of a schema with line millrace: %v", err)
		}
		var versions []int
		for _, v := range existing {
			versions = append(versions, v.Version)
		}
		if want := []int{1, 2, 3, 4, 5, 6, 7, 8}; !slices.Equal(versions, want) {
			t.Errorf("River reads applied versions %v, want %v", versions, want)
		}
		valid, err := m.Validate(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !valid.OK {
			t.Errorf("River's migrator does not validate a schema with line millrace: %v", valid.Messages)
		}
		res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
		if err != nil {
			t.Fatalf("River migrate up on a schema with line millrace: %v", err)
		}
		if len(res.Versions) != 0 {
			t.Errorf("River applied %d versions on a schema with line millrace", len(res.Versions))
		}
	})

	t.Run("River's client", func(t *testing.T) {
		done := make(chan int64, 1)
		workers := river.NewWorkers()
		river.AddWorker(workers, river.WorkFunc(func(_ context.Context, job *river.Job[lineArgs]) error {
			done <- job.ID
			return nil
		}))
		rc := newRiverClient(t, schema, &river.Config{Workers: workers,
			Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 1}}})
		inserted, err := rc.Insert(ctx, lineArgs{N: 1}, nil)
		if err != nil {
			t.Fatalf("River inserts on a schema with line millrace: %v", err)
		}
		select {
		case id := <-done:
			if id != inserted.Job.ID {
				t.Fatalf("River worked job %d, inserted %d", id, inserted.Job.ID)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("River did not work its job within 15 s")
		}
		if !eventually(10*time.Second, func() bool {
			job, err := rc.JobGet(ctx, inserted.Job.ID)
			return err == nil && job.State == rivertype.JobStateCompleted
		}) {
			t.Fatal("River's job did not reach completed within 10 s")
		}
	})

	t.Run("millrace still sees both lines", func(t *testing.T) {
		for _, line := range migrate.Lines() {
			m, err := migrate.New(pgxv5.New(pool), &migrate.Config{Schema: schema, Line: line})
			if err != nil {
				t.Fatal(err)
			}
			pending, err := m.Pending(ctx)
			if err != nil || len(pending) != 0 {
				t.Errorf("line %s pending after River's migrator and client: %v, %v", line, pending, err)
			}
		}
	})
}

// TestRiverRefusesMainDownUnderMillraceLine checks that River's migrator,
// which knows nothing of line millrace, still refuses to take line main
// below version 5 while river_migration records it (that version's down
// would drop the line column and the millrace line's records with it), so
// that millrace's dependency rule holds whichever migrator is used.
func TestRiverRefusesMainDownUnderMillraceLine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	if _, err := migrate.MigrateAll(ctx, pgxv5.New(pool), &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	rm, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: schema, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rm.Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{TargetVersion: 4}); err == nil {
		t.Fatal("River migrated line main down to 4 under line millrace")
	}
	mill, err := migrate.New(pgxv5.New(pool), &migrate.Config{Schema: schema, Line: migrate.LineMillrace})
	if err != nil {
		t.Fatal(err)
	}
	applied, err := mill.Applied(ctx)
	if err != nil || len(applied) != mill.Latest() {
		t.Fatalf("line millrace after River's refused down: %d versions, %v; want all %d recorded", len(applied), err, mill.Latest())
	}
	// Once line millrace is down, River's migrator goes all the way.
	if _, err := mill.Migrate(ctx, migrate.DirectionDown, &migrate.MigrateOpts{TargetVersion: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := rm.Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{TargetVersion: -1}); err != nil {
		t.Fatalf("River migrate down after line millrace went down: %v", err)
	}
}
