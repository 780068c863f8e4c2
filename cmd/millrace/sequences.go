package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// sequenceJSON is a sequence as --json prints it.
type sequenceJSON struct {
	Queue     string `json:"queue"`
	Key       string `json:"key"`
	HeadID    int64  `json:"head_id"`
	HeadState string `json:"head_state"`
	Waiting   int    `json:"waiting"`
	Blocked   bool   `json:"blocked"`
}

func newSequencesCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "sequences", Short: "List the sequences that have jobs not yet passed",
		Long: "Jobs inserted with InsertOpts.Sequence run one at a time per queue and key, in insertion order\n" +
			"(tables millrace_sequence, millrace_sequence_job). A sequence is blocked when its head was discarded\n" +
			"or cancelled with BlockOnFailure: retry the job (millrace jobs retry ID) or delete it to go on."}
	var (
		queue, after string
		limit        int
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List sequences: whose turn it is, how many wait, which are blocked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 10_000 {
				return &usageError{fmt.Errorf("--limit %d out of range 1..10000", limit)}
			}
			return withAdmin(cmd, g, func(ctx context.Context, c *client.Client[pgx.Tx], _ *pgxv5.Driver) error {
				seqs, err := c.SequenceList(ctx, &client.SequenceListParams{Queue: queue, After: after, Limit: limit})
				if errors.Is(err, client.ErrInvalidArgs) || errors.Is(err, client.ErrInvalidQueue) {
					return &usageError{err}
				}
				if err != nil {
					return err
				}
				if g.json {
					out := []sequenceJSON{}
					for _, s := range seqs {
						out = append(out, sequenceJSON{s.Queue, s.Key, s.HeadID, string(s.HeadState), s.Waiting, s.Blocked})
					}
					return writeJSON(cmd.OutOrStdout(), out)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "QUEUE\tKEY\tHEAD\tHEAD_STATE\tWAITING\tBLOCKED")
				for _, s := range seqs {
					blocked := "-"
					if s.Blocked {
						blocked = "yes"
					}
					fmt.Fprintf(tw, "%s\t%q\t%s\t%s\t%d\t%s\n", s.Queue, s.Key, dash(int(s.HeadID)), orDash(string(s.HeadState)), s.Waiting, blocked)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&queue, "queue", "", "only this queue's sequences")
	list.Flags().StringVar(&after, "after", "", "start after this key (needs --queue)")
	list.Flags().IntVar(&limit, "limit", 100, "at most this many (1 to 10000)")
	cmd.AddCommand(list)
	return cmd
}
