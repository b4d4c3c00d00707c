package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/ferry-matrix/ferry/config"
)

// runGenerateRegistration writes the appservice registration the
// homeserver needs, from Ferry's config (its tokens included).
func runGenerateRegistration(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("generate-registration", flag.ContinueOnError)
	cfgPath := fs.String("c", "config.yaml", "Ferry's config file")
	out := fs.String("o", "registration.yaml", "where to write the registration (mode 0600: it holds both tokens)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	data, err := cfg.RegistrationYAML()
	if err != nil {
		return fmt.Errorf("%s: %w", *cfgPath, err)
	}
	tmp := *out + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, *out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s: give it to the homeserver (Synapse: app_service_config_files; Dendrite: app_service_api.config_files)\n", *out)
	return nil
}
