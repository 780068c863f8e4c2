package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// newJobLogsCmd is `millrace jobs logs ID`: the log lines a job's attempts
// stored (client.JobLogMiddleware, or River's riverlog).
func newJobLogsCmd(g *globalFlags) *cobra.Command {
	var attempt int
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Show the log lines a job's attempts stored (client.JobLogMiddleware or River's riverlog)",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return &usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			if attempt < 0 {
				return usagef("--attempt %d: want a positive attempt number (0 for all)", attempt)
			}
			return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
				what := fmt.Sprintf("job %d", id)
				job, err := c.JobGet(ctx, id)
				if err != nil {
					return explain(err, what)
				}
				entries, err := client.JobLogs(job)
				if errors.Is(err, client.ErrMalformedJobLogs) {
					return fmt.Errorf("%s: its metadata %q does not hold job logs as River and millrace write them", what, client.JobLogMetadataKey)
				}
				if err != nil {
					return err
				}
				if attempt > 0 {
					var only []client.JobLogEntry
					for _, e := range entries {
						if e.Attempt == attempt {
							only = append(only, e)
						}
					}
					entries = only
				}
				out := cmd.OutOrStdout()
				if g.json {
					if entries == nil {
						entries = []client.JobLogEntry{}
					}
					return writeJSON(out, map[string]any{"job_id": id, "kind": job.Kind, "logs": entries})
				}
				if len(entries) == 0 {
					which := ""
					if attempt > 0 {
						which = fmt.Sprintf(" for attempt %d", attempt)
					}
					_, err := fmt.Fprintf(out, "%s (%s) has no logs%s (workers log through client.JobLogger with client.JobLogMiddleware installed)\n", what, job.Kind, which)
					return err
				}
				for _, e := range entries {
					text := e.Log
					if text != "" && !strings.HasSuffix(text, "\n") {
						text += "\n"
					}
					if _, err := fmt.Fprintf(out, "--- %s (%s) attempt %d\n%s", what, job.Kind, e.Attempt, text); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&attempt, "attempt", 0, "only this attempt's logs (0 for all)")
	return cmd
}
