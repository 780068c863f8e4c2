package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// pauseJSON is a timed pause as --json prints it.
type pauseJSON struct {
	Queue string          `json:"queue"`
	Kind  string          `json:"kind"`
	Args  json.RawMessage `json:"args"`
	Until time.Time       `json:"until"`
}

func toPauseJSON(p *client.Pause) pauseJSON {
	args := json.RawMessage(p.Args)
	if len(args) == 0 {
		args = json.RawMessage(`{}`)
	}
	return pauseJSON{p.Queue, p.Kind, args, p.Until}
}

// pauseOpts builds PauseOpts from --kind and --args.
func pauseOpts(kind, args string) *client.PauseOpts {
	o := &client.PauseOpts{Kind: kind}
	if args != "" {
		o.Args = []byte(args)
	}
	return o
}

func newPausesCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "pauses", Short: "List, set and delete timed pauses of queues or parts of them",
		Long: "A timed pause (table millrace_pause) keeps the jobs of a queue, or those of one kind or whose args\n" +
			"contain given values, from being fetched until a time, then they resume by themselves. Only clients\n" +
			"whose queue has rate limits or TimedPauses honour it; River clients do not."}
	var queue string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the current pauses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
				ps, err := c.PauseList(ctx, queue)
				if errors.Is(err, client.ErrInvalidArgs) {
					return &usageError{err}
				}
				if err != nil {
					return err
				}
				if g.json {
					out := []pauseJSON{}
					for _, p := range ps {
						out = append(out, toPauseJSON(p))
					}
					return writeJSON(cmd.OutOrStdout(), out)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "QUEUE\tKIND\tARGS\tUNTIL")
				for _, p := range ps {
					kind := p.Kind
					if kind == "" {
						kind = "*"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Queue, kind, toPauseJSON(p).Args, p.Until.Format(time.RFC3339Nano))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&queue, "queue", "", "only this queue's pauses")

	var (
		kind, args string
		forDur     time.Duration
		until      string
	)
	set := &cobra.Command{
		Use:   "set QUEUE (--for DURATION | --until TIME)",
		Short: "Pause a queue, or part of it, until a time",
		Example: "  millrace pauses set default --for 30s --args '{\"token\":\"a\"}'\n" +
			"  millrace pauses set mail --kind send_email --until 2026-12-04T16:00:00Z",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			var at time.Time
			switch {
			case (forDur != 0) == (until != ""):
				return &usageError{errors.New("give one of --for and --until")}
			case forDur != 0:
				at = time.Now().Add(forDur)
			default:
				var err error
				if at, err = time.Parse(time.RFC3339Nano, until); err != nil {
					return &usageError{fmt.Errorf("--until: %w", err)}
				}
			}
			return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
				p, err := c.PauseUntil(ctx, a[0], at, pauseOpts(kind, args))
				if errors.Is(err, client.ErrInvalidArgs) {
					return &usageError{err}
				}
				if err != nil {
					return err
				}
				if g.json {
					return writeJSON(cmd.OutOrStdout(), toPauseJSON(p))
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "queue %s paused until %s\n", p.Queue, p.Until.Format(time.RFC3339Nano))
				return err
			})
		},
	}
	set.Flags().StringVar(&kind, "kind", "", "pause only this kind's jobs")
	set.Flags().StringVar(&args, "args", "", "pause only the jobs whose args contain this JSON object")
	set.Flags().DurationVar(&forDur, "for", 0, "pause for this long")
	set.Flags().StringVar(&until, "until", "", "pause until this time (RFC 3339)")

	var dkind, dargs string
	del := &cobra.Command{
		Use:   "delete QUEUE",
		Short: "End a pause before its time (the one of the same --kind and --args)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
				ok, err := c.PauseDelete(ctx, a[0], pauseOpts(dkind, dargs))
				if errors.Is(err, client.ErrInvalidArgs) {
					return &usageError{err}
				}
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("no pause of queue %q with kind %q and args %q: %w", a[0], dkind, dargs, client.ErrNotFound)
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "pause of queue %s deleted\n", a[0])
				return err
			})
		},
	}
	del.Flags().StringVar(&dkind, "kind", "", "the pause's kind")
	del.Flags().StringVar(&dargs, "args", "", "the pause's args (JSON object)")
	cmd.AddCommand(list, set, del)
	return cmd
}
