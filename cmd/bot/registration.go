package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferry-matrix/ferry/config"
)

func newGenerateRegistrationCmd() *cobra.Command {
	var cfgPath, out string
	cmd := &cobra.Command{
		Use:   "generate-registration",
		Short: "Write the appservice registration the homeserver needs (or bot -g)",
		Long: `Generate-registration writes the appservice registration for the homeserver from Ferry's config,
its tokens included (mode 0600). Give it to Synapse (app_service_config_files) or Dendrite
(app_service_api.config_files), then start bot run. The example config's placeholder tokens are
refused: set random values first.`,
		Example: `  bot generate-registration -c config.yaml -o /etc/synapse/ferry-registration.yaml
  bot -g -c config.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return generateRegistration(cfgPath, out) },
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "config.yaml", "Ferry's configuration `FILE`")
	cmd.Flags().StringVarP(&out, "out", "o", "registration.yaml", "where to write the registration (`FILE`, mode 0600: it holds both tokens)")
	return cmd
}

// generateRegistration writes the appservice registration the homeserver
// needs, from Ferry's config (its tokens included).
func generateRegistration(cfgPath, out string) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	data, err := cfg.RegistrationYAML()
	if err != nil {
		return fmt.Errorf("%s: %w", cfgPath, err)
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s: give it to the homeserver (Synapse: app_service_config_files; Dendrite: app_service_api.config_files)\n", out)
	return nil
}
