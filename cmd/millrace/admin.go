package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

// withAdmin connects and makes an insert-only client for admin commands.
func withAdmin(cmd *cobra.Command, g *globalFlags, fn func(ctx context.Context, c *client.Client[pgx.Tx], drv *pgxv5.Driver) error) error {
	if err := migrate.ValidateSchema(g.schema); err != nil {
		return &usageError{err}
	}
	pool, err := connect(cmd.Context(), g)
	if err != nil {
		return err
	}
	defer pool.Close()
	drv := pgxv5.New(pool)
	if err := requireMigrated(cmd.Context(), drv, g.schema); err != nil {
		return err
	}
	c, err := client.New[pgx.Tx](drv, &client.Config{Schema: g.schema})
	if err != nil {
		return err
	}
	return fn(cmd.Context(), c, drv)
}

// requireMigrated checks that the schema holds every migration version
// this millrace needs, and otherwise says which are missing and how to
// migrate (an error wrapping client.ErrNotMigrated).
func requireMigrated(ctx context.Context, drv *pgxv5.Driver, schema string) error {
	m, err := migrate.New(drv, &migrate.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	if schema != "" {
		exists, err := drv.GetExecutor().SchemaExists(ctx, schema)
		if err != nil {
			return err
		}
		if !exists {
			return &client.NotMigratedError{Schema: schema, SchemaMissing: true}
		}
	}
	pending, err := m.Pending(ctx)
	if err != nil {
		return err
	}
	if len(pending) == 0 {
		return nil
	}
	nm := &client.NotMigratedError{Schema: schema}
	for _, v := range pending {
		nm.Missing = append(nm.Missing, v.Version)
	}
	return nm
}

func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, usagef("invalid job ID %q: want a positive integer", s)
	}
	return id, nil
}

// explain adds a hint to the errors an admin command commonly meets.
func explain(err error, what string) error {
	switch {
	case errors.Is(err, millracetype.ErrNotFound):
		return fmt.Errorf("%s not found", what)
	case errors.Is(err, millracetype.ErrJobRunning):
		return fmt.Errorf("%s is running: cancel it first (millrace jobs cancel)", what)
	}
	return err
}

// jobJSON is a job as --json prints it.
type jobJSON struct {
	ID          int64                       `json:"id"`
	Kind        string                      `json:"kind"`
	Queue       string                      `json:"queue"`
	State       millracetype.JobState       `json:"state"`
	Priority    int                         `json:"priority"`
	Attempt     int                         `json:"attempt"`
	MaxAttempts int                         `json:"max_attempts"`
	Args        rawJSON                     `json:"args"`
	Metadata    rawJSON                     `json:"metadata"`
	Tags        []string                    `json:"tags"`
	Errors      []millracetype.AttemptError `json:"errors"`
	CreatedAt   time.Time                   `json:"created_at"`
	ScheduledAt time.Time                   `json:"scheduled_at"`
	AttemptedAt *time.Time                  `json:"attempted_at"`
	FinalizedAt *time.Time                  `json:"finalized_at"`
	AttemptedBy []string                    `json:"attempted_by"`
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

func toJobJSON(j *millracetype.JobRow) *jobJSON {
	errs := j.Errors
	if errs == nil {
		errs = []millracetype.AttemptError{}
	}
	return &jobJSON{ID: j.ID, Kind: j.Kind, Queue: j.Queue, State: j.State, Priority: j.Priority, Attempt: j.Attempt,
		MaxAttempts: j.MaxAttempts, Args: rawJSON(j.Args), Metadata: rawJSON(j.Metadata), Tags: j.Tags, Errors: errs,
		CreatedAt: j.CreatedAt, ScheduledAt: j.ScheduledAt, AttemptedAt: j.AttemptedAt, FinalizedAt: j.FinalizedAt,
		AttemptedBy: j.AttemptedBy}
}

func printJob(cmd *cobra.Command, g *globalFlags, j *millracetype.JobRow) error {
	if g.json {
		return writeJSON(cmd.OutOrStdout(), toJobJSON(j))
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "job %d  kind %s  queue %s  state %s  priority %d  attempt %d/%d\n",
		j.ID, j.Kind, j.Queue, j.State, j.Priority, j.Attempt, j.MaxAttempts)
	fmt.Fprintf(out, "  args      %s\n  metadata  %s\n", j.Args, j.Metadata)
	tags := "(none)"
	if len(j.Tags) > 0 {
		tags = strings.Join(j.Tags, ", ")
	}
	fmt.Fprintf(out, "  tags      %s\n", tags)
	fmt.Fprintf(out, "  created   %s\n  scheduled %s\n", j.CreatedAt.Format(time.RFC3339Nano), j.ScheduledAt.Format(time.RFC3339Nano))
	if j.AttemptedAt != nil {
		fmt.Fprintf(out, "  attempted %s\n", j.AttemptedAt.Format(time.RFC3339Nano))
	}
	if len(j.AttemptedBy) > 0 {
		fmt.Fprintf(out, "  attempted by %s\n", strings.Join(j.AttemptedBy, ", "))
	}
	if j.FinalizedAt != nil {
		fmt.Fprintf(out, "  finalized %s\n", j.FinalizedAt.Format(time.RFC3339Nano))
	}
	for _, e := range j.Errors {
		fmt.Fprintf(out, "  error (attempt %d, %s): %s\n", e.Attempt, e.At.Format(time.RFC3339), e.Error)
	}
	return nil
}

func newJobsCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "jobs", Short: "List and manage jobs"}

	var filters jobFilterFlags
	var limit int
	var after string
	list := &cobra.Command{
		Use:   "list",
		Short: "List jobs (newest first), filtered by --state, --kind, --queue, --tag ...",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			params, err := filters.params()
			if err != nil {
				return err
			}
			params.Desc, params.Limit = true, limit
			if limit < 1 || limit > 10000 {
				return usagef("--limit %d out of range 1..10000", limit)
			}
			if after != "" {
				cur, err := client.ParseJobListCursor(after)
				if err != nil {
					return &usageError{err}
				}
				params.After = cur
			}
			return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
				res, err := c.JobList(ctx, params)
				if err != nil {
					return invalidFilter(err)
				}
				if g.json {
					out := struct {
						Jobs []*jobJSON `json:"jobs"`
						Next string     `json:"next_cursor,omitempty"`
					}{Jobs: []*jobJSON{}}
					for _, j := range res.Jobs {
						out.Jobs = append(out.Jobs, toJobJSON(j))
					}
					if res.LastCursor != nil && len(res.Jobs) == limit {
						out.Next = res.LastCursor.String()
					}
					return writeJSON(cmd.OutOrStdout(), out)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tKIND\tQUEUE\tSTATE\tATTEMPT\tSCHEDULED")
				for _, j := range res.Jobs {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d\t%s\n", j.ID, j.Kind, j.Queue, j.State, j.Attempt, j.MaxAttempts, j.ScheduledAt.Format(time.RFC3339))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if res.LastCursor != nil && len(res.Jobs) == limit {
					fmt.Fprintf(cmd.OutOrStdout(), "more: --after %s\n", res.LastCursor)
				}
				return nil
			})
		},
	}
	filters.register(list.Flags())
	list.Flags().IntVar(&limit, "limit", 50, "most jobs to list (1..10000)")
	list.Flags().StringVar(&after, "after", "", "continue after a previous page (the cursor it printed)")

	one := func(use, short string, act func(ctx context.Context, c *client.Client[pgx.Tx], id int64) (*millracetype.JobRow, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				id, err := parseID(args[0])
				if err != nil {
					return err
				}
				return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
					job, err := act(ctx, c, id)
					if err != nil {
						return explain(err, fmt.Sprintf("job %d", id))
					}
					return printJob(cmd, g, job)
				})
			},
		}
	}
	get := one("get", "Show a job", func(ctx context.Context, c *client.Client[pgx.Tx], id int64) (*millracetype.JobRow, error) {
		return c.JobGet(ctx, id)
	})
	cancel := jobActionCmd(g, "cancel", "Cancel a job, or with --many the jobs the filters select (a running one is cancelled by the client running it)", "cancelled",
		func(ctx context.Context, c *client.Client[pgx.Tx], id int64) (*millracetype.JobRow, error) {
			return c.JobCancel(ctx, id)
		}, (*client.Client[pgx.Tx]).JobCancelMany)
	retry := jobActionCmd(g, "retry", "Make a job, or with --many the jobs the filters select, available to run now", "retried",
		func(ctx context.Context, c *client.Client[pgx.Tx], id int64) (*millracetype.JobRow, error) {
			return c.JobRetry(ctx, id)
		}, (*client.Client[pgx.Tx]).JobRetryMany)
	del := jobActionCmd(g, "delete", "Delete a job, or with --many the jobs the filters select (never running ones)", "deleted",
		func(ctx context.Context, c *client.Client[pgx.Tx], id int64) (*millracetype.JobRow, error) {
			return c.JobDelete(ctx, id)
		}, (*client.Client[pgx.Tx]).JobDeleteMany)
	cmd.AddCommand(list, get, cancel, retry, del)
	cmd.AddCommand(newJobLogsCmd(g))
	return cmd
}

func stateNames() string {
	var names []string
	for _, s := range millracetype.JobStates() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

func newQueuesCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "queues", Short: "List, pause and resume queues"}
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List queues with the counts of their unfinished jobs by state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 10000 {
				return usagef("--limit %d out of range 1..10000", limit)
			}
			return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
				qs, err := c.QueueListWithCounts(ctx, limit)
				if err != nil {
					return err
				}
				if g.json {
					type countsJSON struct {
						Available int64 `json:"available"`
						Pending   int64 `json:"pending"`
						Retryable int64 `json:"retryable"`
						Running   int64 `json:"running"`
						Scheduled int64 `json:"scheduled"`
					}
					type queueJSON struct {
						Name      string     `json:"name"`
						Paused    bool       `json:"paused"`
						PausedAt  *time.Time `json:"paused_at"`
						CreatedAt time.Time  `json:"created_at"`
						UpdatedAt time.Time  `json:"updated_at"`
						Metadata  rawJSON    `json:"metadata"`
						Counts    countsJSON `json:"counts"`
					}
					out := []queueJSON{}
					for _, q := range qs {
						n := q.Counts
						out = append(out, queueJSON{q.Name, q.PausedAt != nil, q.PausedAt, q.CreatedAt, q.UpdatedAt, rawJSON(q.Metadata),
							countsJSON{n.Available, n.Pending, n.Retryable, n.Running, n.Scheduled}})
					}
					return writeJSON(cmd.OutOrStdout(), out)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tPAUSED\tAVAILABLE\tRUNNING\tSCHEDULED\tRETRYABLE\tPENDING\tUPDATED")
				for _, q := range qs {
					n := q.Counts
					fmt.Fprintf(tw, "%s\t%v\t%d\t%d\t%d\t%d\t%d\t%s\n", q.Name, q.PausedAt != nil,
						n.Available, n.Running, n.Scheduled, n.Retryable, n.Pending, q.UpdatedAt.Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "most queues to list")
	pauseResume := func(use string, pause bool) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NAME|*",
			Short: strings.ToUpper(use[:1]) + use[1:] + " a queue on every client ('*' for all queues)",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				name := args[0]
				return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
					var err error
					if pause {
						err = c.QueuePause(ctx, name)
					} else {
						err = c.QueueResume(ctx, name)
					}
					if errors.Is(err, client.ErrInvalidArgs) {
						return &usageError{err}
					}
					if err != nil {
						return explain(err, fmt.Sprintf("queue %q", name))
					}
					if g.json {
						return writeJSON(cmd.OutOrStdout(), map[string]any{"queue": name, "paused": pause})
					}
					_, err = fmt.Fprintf(cmd.OutOrStdout(), "queue %s %sd\n", name, use)
					return err
				})
			},
		}
	}
	cmd.AddCommand(list, pauseResume("pause", true), pauseResume("resume", false))
	return cmd
}

func newLeaderCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "leader",
		Short: "Show which client leads (and runs maintenance), and each domain's leader",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, g, func(ctx context.Context, _ *client.Client[pgx.Tx], drv *pgxv5.Driver) error {
				exec := drv.GetExecutor()
				l, err := exec.LeaderGetElected(ctx, g.schema)
				if errors.Is(err, millracetype.ErrNotFound) {
					l, err = nil, nil
				}
				if err != nil {
					return err
				}
				// Domain leaders live in line millrace's millrace_leader
				// (version 2); a schema without it has none.
				var domains []*millracetype.Leader
				hasTable, err := exec.TableExists(ctx, &driver.TableExistsParams{Schema: g.schema, Table: "millrace_leader"})
				if err != nil {
					return err
				}
				if hasTable {
					if domains, err = exec.LeaderListDomains(ctx, g.schema); err != nil {
						return err
					}
				}
				if g.json {
					out := map[string]any{"leader_id": nil}
					if l != nil {
						out = map[string]any{"leader_id": l.LeaderID, "elected_at": l.ElectedAt, "expires_at": l.ExpiresAt}
					}
					ds := []map[string]any{}
					for _, d := range domains {
						ds = append(ds, map[string]any{"domain": d.Domain, "leader_id": d.LeaderID, "elected_at": d.ElectedAt, "expires_at": d.ExpiresAt})
					}
					out["domains"] = ds
					return writeJSON(cmd.OutOrStdout(), out)
				}
				w := cmd.OutOrStdout()
				if l == nil {
					_, err = fmt.Fprintln(w, "no leader (no client with queues is running)")
				} else {
					_, err = fmt.Fprintf(w, "leader %s (elected %s, term until %s)\n", l.LeaderID,
						l.ElectedAt.Format(time.RFC3339), l.ExpiresAt.Format(time.RFC3339))
				}
				for _, d := range domains {
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(w, "domain %s: leader %s (elected %s, term until %s)\n", d.Domain, d.LeaderID,
						d.ElectedAt.Format(time.RFC3339), d.ExpiresAt.Format(time.RFC3339))
				}
				return err
			})
		},
	}
}
