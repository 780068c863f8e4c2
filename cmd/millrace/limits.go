package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// limitJSON is a limit as --json prints it.
type limitJSON struct {
	Queue           string    `json:"queue"`
	Kind            string    `json:"kind"`
	Global          int       `json:"global"`
	Local           int       `json:"local"`
	PerPartition    int       `json:"per_partition"`
	PartitionByKind bool      `json:"partition_by_kind"`
	PartitionByArgs []string  `json:"partition_by_args"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

func toLimitJSON(l *client.QueueLimit) limitJSON {
	args := l.PartitionByArgs
	if args == nil {
		args = []string{}
	}
	return limitJSON{l.Queue, l.Kind, l.Global, l.Local, l.PerPartition, l.PartitionByKind, args, l.CreatedAt, l.UpdatedAt}
}

func newLimitsCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "limits", Short: "List, set and delete concurrency limits set at run time",
		Long: "Concurrency limits set here are stored in the database (table millrace_limit): each replaces, on every\n" +
			"client working its queue, the limit of that queue and kind the clients' configurations declare, until\n" +
			"it is deleted. Running clients apply a change at their next fetch."}
	var queue string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the limits set at run time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
				ls, err := c.QueueLimitList(ctx, queue)
				if errors.Is(err, client.ErrInvalidArgs) {
					return &usageError{err}
				}
				if err != nil {
					return err
				}
				if g.json {
					out := []limitJSON{}
					for _, l := range ls {
						out = append(out, toLimitJSON(l))
					}
					return writeJSON(cmd.OutOrStdout(), out)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "QUEUE\tKIND\tGLOBAL\tLOCAL\tPER_PARTITION\tPARTITION_BY\tUPDATED")
				for _, l := range ls {
					var by []string
					if l.PartitionByKind {
						by = append(by, "(kind)")
					}
					by = append(by, l.PartitionByArgs...)
					kind := l.Kind
					if kind == "" {
						kind = "*"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Queue, kind, dash(l.Global), dash(l.Local), dash(l.PerPartition),
						orDash(strings.Join(by, ",")), l.UpdatedAt.Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&queue, "queue", "", "only this queue's limits")

	var (
		kind                 string
		global, local, perPt int
		byKind               bool
		byArgs               []string
	)
	set := &cobra.Command{
		Use:   "set QUEUE",
		Short: "Set the limit of a queue (or of one kind in it, --kind) on every client",
		Example: "  millrace limits set default --global 50\n" +
			"  millrace limits set default --kind sync_account --per-partition 3 --partition-by-args customer_id",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			limit := client.ConcurrencyLimit{Kind: kind, Global: global, Local: local, PerPartition: perPt,
				PartitionByKind: byKind, PartitionByArgs: byArgs}
			return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
				l, err := c.QueueLimitSet(ctx, args[0], limit)
				if errors.Is(err, client.ErrInvalidArgs) || errors.Is(err, client.ErrInvalidConfig) {
					return &usageError{err}
				}
				if err != nil {
					return err
				}
				if g.json {
					return writeJSON(cmd.OutOrStdout(), toLimitJSON(l))
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "limit of queue %s%s set\n", l.Queue, kindSuffix(l.Kind))
				return err
			})
		},
	}
	set.Flags().StringVar(&kind, "kind", "", "limit only this kind's jobs (default: the whole queue)")
	set.Flags().IntVar(&global, "global", 0, "most jobs running at once across all clients (0: none)")
	set.Flags().IntVar(&local, "local", 0, "most jobs running at once on each client (0: none)")
	set.Flags().IntVar(&perPt, "per-partition", 0, "most jobs running at once in each partition, across all clients (0: none)")
	set.Flags().BoolVar(&byKind, "partition-by-kind", false, "partition by kind (a limit of the whole queue only)")
	set.Flags().StringSliceVar(&byArgs, "partition-by-args", nil, "partition by the values of these args keys (comma-separated)")

	var delKind string
	del := &cobra.Command{
		Use:   "delete QUEUE",
		Short: "Delete the limit set at run time of a queue (or of one kind, --kind): the configured one applies again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
				ok, err := c.QueueLimitDelete(ctx, args[0], delKind)
				if errors.Is(err, client.ErrInvalidArgs) {
					return &usageError{err}
				}
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("limit of queue %q%s not found", args[0], kindSuffix(delKind))
				}
				if g.json {
					return writeJSON(cmd.OutOrStdout(), map[string]any{"queue": args[0], "kind": delKind, "deleted": true})
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "limit of queue %s%s deleted\n", args[0], kindSuffix(delKind))
				return err
			})
		},
	}
	del.Flags().StringVar(&delKind, "kind", "", "the kind's limit (default: the whole queue's)")
	cmd.AddCommand(list, set, del)
	return cmd
}

func dash(n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func kindSuffix(kind string) string {
	if kind == "" {
		return ""
	}
	return fmt.Sprintf(" kind %s", kind)
}
