package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/cmd/internal/demo"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/driver/sqlite"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

// newDemoCmd is the first thing a new user runs (make demo): migrate a
// dedicated schema, insert jobs of a few kinds, work them with progress
// output, stop gracefully under load half way, start again, and report
// (package internal/demo).
func newDemoCmd(g *globalFlags) *cobra.Command {
	var jobs, workers int
	var keep bool
	var drvName, path string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Insert and work jobs in a demo schema, with a graceful stop under load",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch drvName {
			case "postgres", "pgxv5":
				if path != "" {
					return usagef("--path is the SQLite file of --driver sqlite")
				}
			case "sqlite":
				if cmd.Flags().Changed("schema") || cmd.Flags().Changed("database-url") {
					return usagef("--driver sqlite works on a file (--path), not on a --schema or --database-url")
				}
			default:
				return usagef("--driver %q: want postgres or sqlite", drvName)
			}
			if jobs < 10 || jobs > 10_000_000 {
				return usagef("--jobs %d out of range 10..10000000", jobs)
			}
			if workers < 1 || workers > client.MaxQueueWorkers {
				return usagef("--workers %d out of range 1..%d", workers, client.MaxQueueWorkers)
			}
			if drvName == "sqlite" {
				cfg := &demo.Config{Jobs: jobs, Workers: workers, Out: cmd.OutOrStdout()}
				if err := cfg.Validate(); err != nil { // before any file is created
					return &usageError{err}
				}
				err := runSQLiteDemo(cmd.Context(), path, keep, cfg, cmd.OutOrStdout())
				if errors.Is(err, demo.ErrInvalidConfig) || errors.Is(err, sqlite.ErrInvalidPath) {
					return &usageError{err}
				}
				return err
			}
			schema := g.schema
			if schema == "" {
				schema = "millrace_demo"
			}
			if err := migrate.ValidateSchema(schema); err != nil {
				return &usageError{err}
			}
			return runDemo(cmd, g, schema, keep, &demo.Config{Schema: schema, Jobs: jobs, Workers: workers, Out: cmd.OutOrStdout()})
		},
	}
	cmd.Flags().IntVar(&jobs, "jobs", 20000, "how many jobs to insert")
	cmd.Flags().IntVar(&workers, "workers", 200, "workers of the demo queue")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the demo schema afterwards")
	cmd.Flags().StringVar(&drvName, "driver", "postgres", "database: postgres, or sqlite (a file, no server)")
	cmd.Flags().StringVar(&path, "path", "", "with --driver sqlite: the database file (default: a new file in a temporary directory)")
	return cmd
}

// runDemo prepares an empty schema of its own on Postgres, runs the demo
// in it and drops it (unless keep).
func runDemo(cmd *cobra.Command, g *globalFlags, schema string, keep bool, cfg *demo.Config) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	pool, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer pool.Close()
	ident := pgx.Identifier{schema}.Sanitize()
	// The demo drops its schema at the end: it must not be one holding
	// anything else, such as a demo kept with --keep or an app's tables.
	var relations int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1`, schema).Scan(&relations); err != nil {
		return fmt.Errorf("look at schema %s: %w", schema, err)
	}
	if relations > 0 {
		return fmt.Errorf("schema %s already holds tables (a demo kept with --keep?); the demo needs an empty schema of its own: "+
			"drop it (DROP SCHEMA %s CASCADE) or pass another --schema", schema, schema)
	}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	if keep {
		// Registered first, so printed last, after the client stopped.
		defer fmt.Fprintf(out, "kept schema %s: look at its jobs with `millrace jobs list --database-url \"$DATABASE_URL\" --schema %s`; DROP SCHEMA %s CASCADE removes it\n",
			schema, schema, schema)
	} else {
		defer func() {
			if _, err := pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+ident+" CASCADE"); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "millrace: drop demo schema %s: %v\n", schema, err)
				return
			}
			fmt.Fprintf(out, "dropped schema %s (use --keep to keep it)\n", schema)
		}()
	}
	drv := pgxv5.New(pool)
	return demo.Run(ctx, drv, &pgStore{pool: pool, schema: schema, exec: drv.GetExecutor()}, cfg)
}

// pgStore reads the demo's counts from Postgres.
type pgStore struct {
	pool   *pgxpool.Pool
	schema string
	exec   driver.Executor
}

func (s *pgStore) KindCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, "SELECT kind, count(*) FROM "+pgx.Identifier{s.schema, "river_job"}.Sanitize()+" GROUP BY 1")
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	var kind string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&kind, &n}, func() error {
		counts[kind] = n
		return nil
	})
	return counts, err
}

func (s *pgStore) StateCounts(ctx context.Context) (map[millracetype.JobState]int, error) {
	rows, err := s.pool.Query(ctx, "SELECT state::text, count(*) FROM "+pgx.Identifier{s.schema, "river_job"}.Sanitize()+" GROUP BY 1")
	if err != nil {
		return nil, err
	}
	counts := map[millracetype.JobState]int{}
	var state string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
		counts[millracetype.JobState(state)] = n
		return nil
	})
	return counts, err
}

func (s *pgStore) Job(ctx context.Context, id int64) (*millracetype.JobRow, error) {
	return s.exec.JobGetByID(ctx, &driver.JobGetByIDParams{Schema: s.schema, ID: id})
}

// noopArgs is the bench's job (kind demo_noop, as the demo's no-op jobs).
type noopArgs struct{ N int }

func (noopArgs) Kind() string { return "demo_noop" }
