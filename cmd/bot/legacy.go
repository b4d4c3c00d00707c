package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"
)

// legacyCmd runs a command that still parses its own flags: import,
// migrate and serve, until their import-target rewiring lands and they
// move to cobra flags like the others.
func legacyCmd(use, short, usage string, run func(context.Context, []string) error) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short,
		Long:               usage,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if slices.Contains(args, "--help") || slices.Contains(args, "-h") {
				fmt.Fprintln(cmd.OutOrStdout(), usage)
				return nil
			}
			return run(cmd.Context(), args)
		},
	}
}

func newImportCmd() *cobra.Command {
	return legacyCmd("import", "Import an archive into a stopped, empty Dendrite", importUsage, runImport)
}

func newMigrateCmd() *cobra.Command {
	return legacyCmd("migrate", "Move a Synapse server into a stopped Dendrite in one step", migrateUsage, runMigrate)
}

func newServeCmd() *cobra.Command {
	return legacyCmd("serve", "Run the job workers, schedules, the HTTP API, /metrics and /download",
		"usage: bot serve -c config.yaml", runServe)
}
