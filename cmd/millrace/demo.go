package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

// newDemoCmd is the first thing a new user runs (make demo). Until the
// client lands it shows the database side: migrate a dedicated schema,
// insert jobs the way the client will, fetch and complete them through the
// driver, and report what it did.
func newDemoCmd(g *globalFlags) *cobra.Command {
	var jobs int
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Migrate a demo schema, insert and work jobs, print what happened",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jobs < 1 || jobs > 10_000_000 {
				return usagef("--jobs %d out of range 1..10000000", jobs)
			}
			schema := g.schema
			if schema == "" {
				schema = "millrace_demo"
			}
			if err := migrate.ValidateSchema(schema); err != nil {
				return &usageError{err}
			}
			return runDemo(cmd, g, schema, jobs, keep)
		},
	}
	cmd.Flags().IntVar(&jobs, "jobs", 20000, "how many jobs to insert")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the demo schema afterwards")
	return cmd
}

func runDemo(cmd *cobra.Command, g *globalFlags, schema string, n int, keep bool) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	pool, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer pool.Close()
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	if !keep {
		defer func() {
			if _, err := pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+ident+" CASCADE"); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "millrace: drop demo schema %s: %v\n", schema, err)
				return
			}
			fmt.Fprintf(out, "dropped schema %s (use --keep to keep it)\n", schema)
		}()
	}
	drv := pgxv5.New(pool)
	m, err := migrate.New[pgx.Tx](drv, &migrate.Config{Schema: schema})
	if err != nil {
		return err
	}
	res, err := m.Migrate(ctx, migrate.DirectionUp, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "migrated schema %s: %d version(s) applied, now at version %d (River-compatible)\n", schema, len(res.Versions), m.Latest())

	exec := drv.GetExecutor()
	params := make([]*driver.JobInsertParams, n)
	for i := range params {
		params[i] = &driver.JobInsertParams{Args: fmt.Appendf(nil, `{"n":%d}`, i), Kind: "demo_noop", MaxAttempts: 25,
			Priority: 1 + i%4, Queue: "default", State: millracetype.JobStateAvailable}
	}
	start := time.Now()
	inserted, err := exec.JobInsertCopy(ctx, &driver.JobInsertManyParams{Schema: schema, Jobs: params})
	if err != nil {
		return fmt.Errorf("insert demo jobs: %w", err)
	}
	took := time.Since(start)
	fmt.Fprintf(out, "inserted %d jobs with COPY in %s (%.0f jobs/s)\n", inserted, took.Round(time.Millisecond), float64(inserted)/took.Seconds())

	start = time.Now()
	done := 0
	for done < inserted {
		fetched, err := exec.JobGetAvailable(ctx, &driver.JobGetAvailableParams{Schema: schema, Queue: "default", Max: 1000, ClientID: "millrace-demo"})
		if err != nil {
			return fmt.Errorf("fetch demo jobs: %w", err)
		}
		if len(fetched) == 0 {
			break
		}
		now := time.Now()
		outcomes := make([]*driver.JobSetState, len(fetched))
		for i, j := range fetched {
			outcomes[i] = &driver.JobSetState{ID: j.ID, State: millracetype.JobStateCompleted, FinalizedAt: &now}
		}
		if _, err := exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: schema, Jobs: outcomes}); err != nil {
			return fmt.Errorf("complete demo jobs: %w", err)
		}
		done += len(fetched)
		fmt.Fprintf(out, "\rworked %d/%d", done, inserted)
	}
	took = time.Since(start)
	fmt.Fprintf(out, "\nfetched and completed %d jobs in batches of 1000 in %s (%.0f jobs/s)\n", done, took.Round(time.Millisecond), float64(done)/took.Seconds())

	rows, err := pool.Query(ctx, "SELECT state::text, count(*) FROM "+ident+".river_job GROUP BY 1 ORDER BY 1")
	if err != nil {
		return err
	}
	var state string
	var count int
	fmt.Fprintln(out, "jobs by state:")
	_, err = pgx.ForEachRow(rows, []any{&state, &count}, func() error {
		fmt.Fprintf(out, "  %-10s %d\n", state, count)
		return nil
	})
	return err
}
