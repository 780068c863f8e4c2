package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/millracetype"
)

// jobFilterFlags are the job filters shared by `jobs list` and the --many
// forms of `jobs delete|cancel|retry`.
type jobFilterFlags struct {
	ids                   []int64
	states, kinds, queues []string
	priorities            []int
	tagsAny, tagsAll      []string
	metadata              string
	createdFrom           string
	createdBefore         string
}

func (f *jobFilterFlags) register(fs *pflag.FlagSet) {
	fs.Int64SliceVar(&f.ids, "id", nil, "only these job IDs")
	fs.StringSliceVar(&f.states, "state", nil, "only jobs in these states (repeat or comma-separate)")
	fs.StringSliceVar(&f.kinds, "kind", nil, "only jobs of these kinds")
	fs.StringSliceVar(&f.queues, "queue", nil, "only jobs in these queues")
	fs.IntSliceVar(&f.priorities, "priority", nil, "only jobs of these priorities (1..4)")
	fs.StringSliceVar(&f.tagsAny, "tag", nil, "only jobs with at least one of these tags")
	fs.StringSliceVar(&f.tagsAll, "tag-all", nil, "only jobs with all of these tags")
	fs.StringVar(&f.metadata, "metadata", "", `only jobs whose metadata contains this JSON object, e.g. '{"tenant":7}'`)
	fs.StringVar(&f.createdFrom, "created-from", "", "only jobs created at or after this RFC 3339 time")
	fs.StringVar(&f.createdBefore, "created-before", "", "only jobs created before this RFC 3339 time")
}

// set reports whether any filter flag was given.
func (f *jobFilterFlags) set(cmd *cobra.Command) bool {
	for _, name := range []string{"id", "state", "kind", "queue", "priority", "tag", "tag-all", "metadata", "created-from", "created-before"} {
		if cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

// params turns the flags into JobListParams; mistakes are usage errors.
// The client validates the rest (priorities, empty values, ranges).
func (f *jobFilterFlags) params() (*client.JobListParams, error) {
	p := &client.JobListParams{IDs: f.ids, Kinds: f.kinds, Queues: f.queues, Priorities: f.priorities,
		TagsAny: f.tagsAny, TagsAll: f.tagsAll}
	for _, s := range f.states {
		st := millracetype.JobState(strings.TrimSpace(s))
		if !st.Valid() {
			return nil, usagef("invalid state %q (states: %s)", s, stateNames())
		}
		p.States = append(p.States, st)
	}
	if f.metadata != "" {
		p.Metadata = []byte(f.metadata)
	}
	for _, tf := range []struct {
		flag, value string
		dst         **time.Time
	}{{"--created-from", f.createdFrom, &p.CreatedAt.From}, {"--created-before", f.createdBefore, &p.CreatedAt.Before}} {
		if tf.value == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, tf.value)
		if err != nil {
			return nil, usagef("%s %q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", tf.flag, tf.value)
		}
		*tf.dst = &at
	}
	return p, nil
}

// invalidFilter makes the client's filter errors usage errors (exit 2).
func invalidFilter(err error) error {
	if errors.Is(err, client.ErrInvalidArgs) {
		return &usageError{err}
	}
	return err
}

// actionNote says what `jobs cancel|retry|delete ID` did to a job, given
// it before and after.
func actionNote(ctx context.Context, drv *pgxv5.Driver, schema, use, past string, before, after *millracetype.JobRow) string {
	id := before.ID
	switch use {
	case "cancel":
		switch {
		case before.FinalizedAt != nil:
			return fmt.Sprintf("job %d was already %s: nothing changed", id, before.State)
		case after.State == millracetype.JobStateRunning:
			_, err := drv.GetExecutor().LeaderGetElected(ctx, schema)
			if errors.Is(err, millracetype.ErrNotFound) {
				return fmt.Sprintf("job %d is running: cancel requested, but no client is running now (no leader); "+
					"the job stays running until a client's leader finds it stuck (Config.RescueStuckJobsAfter, 1 h by default) "+
					"and cancels it", id)
			}
			return fmt.Sprintf("job %d is running: cancel requested; the client running it cancels its work now and "+
				"records it cancelled if its worker returns an error (a worker that finishes anyway completes it)", id)
		}
	case "retry":
		switch {
		case before.State == millracetype.JobStateRunning:
			return fmt.Sprintf("job %d is running: nothing changed (retry it once it has finished)", id)
		case before.State == millracetype.JobStateAvailable && after.ScheduledAt.Equal(before.ScheduledAt):
			return fmt.Sprintf("job %d is already available: nothing changed", id)
		}
		return fmt.Sprintf("job %d retried: it is available to run now", id)
	}
	return fmt.Sprintf("job %d %s", id, past)
}

// jobActionCmd is `jobs delete|cancel|retry`: one job by ID, or with
// --many every job the filter flags select, in batches until a batch comes
// back short. one acts on one job; many is the client's bulk method as a
// method expression, e.g. (*client.Client[pgx.Tx]).JobDeleteMany.
// past names what was done ("deleted").
func jobActionCmd(g *globalFlags, use, short, past string,
	one func(ctx context.Context, c *client.Client[pgx.Tx], id int64) (*millracetype.JobRow, error),
	many func(c *client.Client[pgx.Tx], ctx context.Context, p *client.JobListParams) (*client.JobManyResult, error),
) *cobra.Command {
	var filters jobFilterFlags
	var useMany bool
	var batch int
	cmd := &cobra.Command{
		Use:   use + " ID | " + use + " --many FILTERS",
		Short: short,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !useMany {
				if len(args) != 1 {
					return usagef("give a job ID, or --many with filters")
				}
				if filters.set(cmd) || cmd.Flags().Changed("batch") {
					return usagef("filter flags and --batch need --many")
				}
				id, err := parseID(args[0])
				if err != nil {
					return err
				}
				return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], drv *pgxv5.Driver) error {
					before, err := c.JobGet(ctx, id)
					if err != nil {
						return explain(err, fmt.Sprintf("job %d", id))
					}
					job, err := one(ctx, c, id)
					if err != nil {
						return explain(err, fmt.Sprintf("job %d", id))
					}
					// What happened, in words: the row alone does not say
					// whether anything changed.
					msg := actionNote(ctx, drv, g.schema, use, past, before, job)
					if g.json {
						fmt.Fprintln(cmd.ErrOrStderr(), msg)
					} else {
						fmt.Fprintln(cmd.OutOrStdout(), msg)
					}
					return printJob(cmd, g, job)
				})
			}
			if len(args) != 0 {
				return usagef("--many takes filters, not a job ID (use --id)")
			}
			if !filters.set(cmd) {
				return usagef("--many needs at least one filter (to act on every job, name the states with --state)")
			}
			if batch < 1 || batch > client.JobManyMaxLimit {
				return usagef("--batch %d out of range 1..%d", batch, client.JobManyMaxLimit)
			}
			params, err := filters.params()
			if err != nil {
				return err
			}
			params.Limit = batch
			return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
				changed := []int64{}
				for {
					res, err := many(c, ctx, params)
					if err != nil {
						if len(changed) > 0 {
							err = fmt.Errorf("after %s %d jobs: %w", past, len(changed), err)
						}
						return invalidFilter(err)
					}
					for _, j := range res.Jobs {
						changed = append(changed, j.ID)
					}
					if !res.More {
						break
					}
				}
				if g.json {
					return writeJSON(cmd.OutOrStdout(), map[string]any{"count": len(changed), "ids": changed})
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s %d jobs\n", past, len(changed))
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&useMany, "many", false, "act on every job the filters select, in batches")
	cmd.Flags().IntVar(&batch, "batch", 1000, "jobs per batch with --many (each batch is one atomic statement)")
	filters.register(cmd.Flags())
	return cmd
}
