package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// strictUsage makes every argument mistake a usage error (exit code 2): a
// group command (jobs, migrate, queues, the root) given an unknown
// subcommand, and a command given the wrong number of arguments. Cobra
// itself would print help and exit 0 for the first, and return a plain
// error (exit 1) for the second. A group called alone prints its help.
func strictUsage(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		strictUsage(sub)
	}
	if cmd.HasSubCommands() {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q (see %s --help)", args[0], c.CommandPath(), c.CommandPath())
			}
			return nil
		}
		if cmd.RunE == nil && cmd.Run == nil {
			cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		}
		return
	}
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				if !c.HasSubCommands() && len(args) > 0 && strings.HasPrefix(err.Error(), "unknown command") {
					return usagef("%s takes no arguments, got %q (see %s --help)", c.CommandPath(), args[0], c.CommandPath())
				}
				return &usageError{fmt.Errorf("%s: %w (see %s --help)", c.CommandPath(), err, c.CommandPath())}
			}
			return nil
		}
	}
}
