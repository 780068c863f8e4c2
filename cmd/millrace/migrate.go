package main

import (
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

func newMigrateCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade millrace's tables (River's schema, line main)",
	}
	var target int
	up := &cobra.Command{
		Use:   "up",
		Short: "Apply pending versions (up to --target-version, default the latest)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMigrate(cmd, g, migrate.DirectionUp, target)
		},
	}
	up.Flags().IntVar(&target, "target-version", 0, "version to migrate up to (default: latest)")
	down := &cobra.Command{
		Use:   "down",
		Short: "Revert versions (one by default; --target-version 0 --all reverts everything)",
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
			return runMigrate(cmd, g, migrate.DirectionDown, t)
		},
	}
	down.Flags().IntVar(&target, "target-version", 0, "version to migrate down to (default: one below the current)")
	down.Flags().Bool("all", false, "revert every version, dropping all of millrace's tables")

	list := &cobra.Command{
		Use:   "list",
		Short: "List versions and whether each is applied",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runMigrateList(cmd, g) },
	}
	var from, to int
	sql := &cobra.Command{
		Use:   "sql",
		Short: "Print the SQL from --from to --to (default 0 to latest), for your own migration tool",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := migrate.New[pgx.Tx](pgxv5.New(nil), &migrate.Config{Schema: g.schema})
			if err != nil {
				return &usageError{err}
			}
			if !cmd.Flags().Changed("to") {
				to = m.Latest()
			}
			text, err := m.SQL(from, to)
			if err != nil {
				return &usageError{err}
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), text)
			return err
		},
	}
	sql.Flags().IntVar(&from, "from", 0, "version the database is at")
	sql.Flags().IntVar(&to, "to", 0, "version to reach (default: latest; below --from prints down SQL)")
	cmd.AddCommand(up, down, list, sql)
	return cmd
}

func newMigrator(cmd *cobra.Command, g *globalFlags) (*migrate.Migrator[pgx.Tx], func(), error) {
	if err := migrate.ValidateSchema(g.schema); err != nil {
		return nil, nil, &usageError{err}
	}
	pool, err := connect(cmd.Context(), g)
	if err != nil {
		return nil, nil, err
	}
	logger := slog.New(slog.DiscardHandler)
	m, err := migrate.New(pgxv5.New(pool), &migrate.Config{Schema: g.schema, Logger: logger})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return m, pool.Close, nil
}

func runMigrate(cmd *cobra.Command, g *globalFlags, dir migrate.Direction, target int) error {
	m, closeDB, err := newMigrator(cmd, g)
	if err != nil {
		return err
	}
	defer closeDB()
	res, err := m.Migrate(cmd.Context(), dir, &migrate.MigrateOpts{TargetVersion: target})
	out := cmd.OutOrStdout()
	if res != nil {
		if g.json {
			type row struct {
				Version    int     `json:"version"`
				Name       string  `json:"name"`
				DurationMS float64 `json:"duration_ms"`
			}
			rows := []row{}
			for _, v := range res.Versions {
				rows = append(rows, row{v.Version, v.Name, float64(v.Duration.Microseconds()) / 1000})
			}
			if jerr := writeJSON(out, map[string]any{"direction": dir, "versions": rows}); jerr != nil && err == nil {
				err = jerr
			}
		} else {
			for _, v := range res.Versions {
				fmt.Fprintf(out, "migrated %s: version %03d %s (%s)\n", dir, v.Version, v.Name, v.Duration.Round(time.Millisecond))
			}
			if err == nil && len(res.Versions) == 0 {
				fmt.Fprintf(out, "nothing to migrate %s\n", dir)
			}
		}
	}
	return err
}

func runMigrateList(cmd *cobra.Command, g *globalFlags) error {
	m, closeDB, err := newMigrator(cmd, g)
	if err != nil {
		return err
	}
	defer closeDB()
	applied, err := m.Applied(cmd.Context())
	if err != nil {
		return err
	}
	at := map[int]time.Time{}
	for _, a := range applied {
		at[a.Version] = a.CreatedAt
	}
	type row struct {
		Version   int        `json:"version"`
		Name      string     `json:"name"`
		Applied   bool       `json:"applied"`
		AppliedAt *time.Time `json:"applied_at,omitempty"`
	}
	var rows []row
	for _, v := range m.Versions() {
		r := row{Version: v.Version, Name: v.Name}
		if t, ok := at[v.Version]; ok {
			r.Applied, r.AppliedAt = true, &t
		}
		rows = append(rows, r)
	}
	if g.json {
		return writeJSON(cmd.OutOrStdout(), rows)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tSTATUS")
	for _, r := range rows {
		status := "pending"
		if r.Applied {
			status = "applied " + r.AppliedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%03d\t%s\t%s\n", r.Version, r.Name, status)
	}
	return tw.Flush()
}
