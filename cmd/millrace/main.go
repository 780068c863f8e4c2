// Command millrace is millrace's command line: migrate a database, run the
// demo, inspect jobs and queues.
//
//	millrace migrate up --database-url postgres://localhost/app
//	millrace migrate list --schema jobs --json
//	millrace migrate sql > river.sql
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit code. Errors are
// printed as one line on stderr, never with a stack trace.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "millrace: "+oneLine(err))
		var ue *usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

// usageError marks a mistake in how the command was called (exit code 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// globalFlags are shared by the commands that talk to a database.
type globalFlags struct {
	databaseURL string
	schema      string
	json        bool
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "millrace",
		Short:         "millrace: Postgres-backed background jobs for Go, compatible with River",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.databaseURL, "database-url", os.Getenv("DATABASE_URL"),
		"Postgres connection string (default $DATABASE_URL)")
	root.PersistentFlags().StringVar(&g.schema, "schema", "",
		"schema holding millrace's tables (default: the connection's search_path, normally public)")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print JSON for scripts")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })

	root.AddCommand(newMigrateCmd(g), newDemoCmd(g), newJobsCmd(g), newQueuesCmd(g), newLimitsCmd(g), newPausesCmd(g), newSequencesCmd(g), newLeaderCmd(g), newBenchCmd(g), newVersionCmd(g))
	strictUsage(root)
	return root
}

func newVersionCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print millrace's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.json {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"version": version})
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "millrace", version)
			return err
		},
	}
}
