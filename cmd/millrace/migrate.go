package main

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

// lineAll is --line's value for every migration line.
const lineAll = "all"

func newMigrateCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade millrace's tables (lines main, River's schema, and millrace)",
	}
	var line string
	cmd.PersistentFlags().StringVar(&line, "line", lineAll,
		"migration line: main (River's schema), millrace (millrace's own tables) or all; "+
			"--target-version, --from and --to are versions of one line, main unless --line says otherwise")
	var target int
	up := &cobra.Command{
		Use:   "up",
		Short: "Apply pending versions (every line, main first; or one line up to --target-version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lines, err := migrateLines(cmd, line, "target-version")
			if err != nil {
				return err
			}
			return runMigrate(cmd, g, lines, migrate.DirectionUp, target)
		},
	}
	up.Flags().IntVar(&target, "target-version", 0, "version to migrate up to (default: latest)")
	down := &cobra.Command{
		Use:   "down",
		Short: "Revert versions (the newest one by default; --all reverts every line, millrace first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			all, _ := cmd.Flags().GetBool("all")
			t := target
			if all {
				if cmd.Flags().Changed("target-version") && target != 0 {
					return usagef("--all and --target-version %d contradict each other", target)
				}
				t = -1
			}
			lines, err := migrateLines(cmd, line, "target-version")
			if err != nil {
				return err
			}
			return runMigrate(cmd, g, lines, migrate.DirectionDown, t)
		},
	}
	down.Flags().IntVar(&target, "target-version", 0, "version to migrate down to (default: one below the current)")
	down.Flags().Bool("all", false, "revert every version, dropping all of millrace's tables")

	list := &cobra.Command{
		Use:   "list",
		Short: "List versions and whether each is applied",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lines, err := migrateLines(cmd, line)
			if err != nil {
				return err
			}
			return runMigrateList(cmd, g, lines)
		},
	}
	var from, to int
	sql := &cobra.Command{
		Use:   "sql",
		Short: "Print the SQL from --from to --to (default every line from 0 to latest), for your own migration tool",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lines, err := migrateLines(cmd, line, "from", "to")
			if err != nil {
				return err
			}
			var text strings.Builder
			for _, l := range lines {
				m, err := migrate.New[pgx.Tx](pgxv5.New(nil), &migrate.Config{Schema: g.schema, Line: l})
				if err != nil {
					return &usageError{err}
				}
				end := to
				if !cmd.Flags().Changed("to") {
					end = m.Latest()
				}
				s, err := m.SQL(from, end)
				if err != nil {
					return &usageError{err}
				}
				text.WriteString(s)
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), text.String())
			return err
		},
	}
	sql.Flags().IntVar(&from, "from", 0, "version the database is at")
	sql.Flags().IntVar(&to, "to", 0, "version to reach (default: latest; below --from prints down SQL)")
	cmd.AddCommand(up, down, list, sql)
	return cmd
}

// migrateLines resolves --line: the lines a migrate command works on, in
// the order they are applied. Version flags (versionFlags, when given)
// belong to one line: without --line they mean line main, as before there
// were lines; with --line all they are a usage error.
func migrateLines(cmd *cobra.Command, line string, versionFlags ...string) ([]string, error) {
	versionGiven := slices.ContainsFunc(versionFlags, cmd.Flags().Changed)
	if line == lineAll {
		if !cmd.Flags().Changed("line") && versionGiven {
			return []string{migrate.LineMain}, nil
		}
		if versionGiven {
			return nil, usagef("--%s is a version of one line: give --line main or --line millrace, not --line all",
				versionFlags[slices.IndexFunc(versionFlags, cmd.Flags().Changed)])
		}
		return migrate.Lines(), nil
	}
	if !slices.Contains(migrate.Lines(), line) {
		return nil, usagef("unknown --line %q: give main, millrace or all", line)
	}
	return []string{line}, nil
}

// newMigrator connects and returns a Migrator for one line.
func newMigrator(cmd *cobra.Command, g *globalFlags, line string) (*migrate.Migrator[pgx.Tx], func(), error) {
	drv, closeDB, err := migrateDriver(cmd, g)
	if err != nil {
		return nil, nil, err
	}
	m, err := migrate.New(drv, &migrate.Config{Schema: g.schema, Line: line, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		closeDB()
		return nil, nil, err
	}
	return m, closeDB, nil
}

// migrateDriver checks the schema name and connects.
func migrateDriver(cmd *cobra.Command, g *globalFlags) (*pgxv5.Driver, func(), error) {
	if err := migrate.ValidateSchema(g.schema); err != nil {
		return nil, nil, &usageError{err}
	}
	pool, err := connect(cmd.Context(), g)
	if err != nil {
		return nil, nil, err
	}
	return pgxv5.New(pool), pool.Close, nil
}

// runMigrate migrates one line, or every line in order (migrate.MigrateAll),
// and prints what ran, also when it stopped at an error.
func runMigrate(cmd *cobra.Command, g *globalFlags, lines []string, dir migrate.Direction, target int) error {
	var (
		results []*migrate.MigrateResult
		err     error
	)
	if len(lines) == 1 {
		m, closeDB, merr := newMigrator(cmd, g, lines[0])
		if merr != nil {
			return merr
		}
		defer closeDB()
		var res *migrate.MigrateResult
		res, err = m.Migrate(cmd.Context(), dir, &migrate.MigrateOpts{TargetVersion: target})
		if res != nil {
			results = append(results, res)
		}
	} else {
		drv, closeDB, derr := migrateDriver(cmd, g)
		if derr != nil {
			return derr
		}
		defer closeDB()
		results, err = migrate.MigrateAll(cmd.Context(), drv, &migrate.Config{Schema: g.schema, Logger: slog.New(slog.DiscardHandler)},
			dir, &migrate.MigrateOpts{TargetVersion: target})
	}
	if len(results) == 0 && err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if g.json {
		type row struct {
			Line       string  `json:"line"`
			Version    int     `json:"version"`
			Name       string  `json:"name"`
			DurationMS float64 `json:"duration_ms"`
		}
		rows := []row{}
		for _, res := range results {
			for _, v := range res.Versions {
				rows = append(rows, row{res.Line, v.Version, v.Name, float64(v.Duration.Microseconds()) / 1000})
			}
		}
		if jerr := writeJSON(out, map[string]any{"direction": dir, "versions": rows}); jerr != nil && err == nil {
			err = jerr
		}
		return err
	}
	ran := 0
	for _, res := range results {
		for _, v := range res.Versions {
			fmt.Fprintf(out, "migrated %s: version %03d %s (line %s, %s)\n", dir, v.Version, v.Name, res.Line, v.Duration.Round(time.Millisecond))
			ran++
		}
	}
	if err == nil && ran == 0 {
		fmt.Fprintf(out, "nothing to migrate %s\n", dir)
	}
	return err
}

func runMigrateList(cmd *cobra.Command, g *globalFlags, lines []string) error {
	type row struct {
		Line      string     `json:"line"`
		Version   int        `json:"version"`
		Name      string     `json:"name"`
		Applied   bool       `json:"applied"`
		AppliedAt *time.Time `json:"applied_at,omitempty"`
	}
	var rows []row
	for _, line := range lines {
		m, closeDB, err := newMigrator(cmd, g, line)
		if err != nil {
			return err
		}
		applied, err := m.Applied(cmd.Context())
		closeDB()
		if err != nil {
			return err
		}
		at := map[int]time.Time{}
		for _, a := range applied {
			at[a.Version] = a.CreatedAt
		}
		for _, v := range m.Versions() {
			r := row{Line: line, Version: v.Version, Name: v.Name}
			if t, ok := at[v.Version]; ok {
				r.Applied, r.AppliedAt = true, &t
			}
			rows = append(rows, r)
		}
	}
	if g.json {
		return writeJSON(cmd.OutOrStdout(), rows)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LINE\tVERSION\tNAME\tSTATUS")
	for _, r := range rows {
		status := "pending"
		if r.Applied {
			status = "applied " + r.AppliedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%03d\t%s\t%s\n", r.Line, r.Version, r.Name, status)
	}
	return tw.Flush()
}
