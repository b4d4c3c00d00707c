package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/ferry-matrix/ferry/bot"
	"github.com/ferry-matrix/ferry/config"
	"github.com/ferry-matrix/ferry/jobs"
)

func newRunCmd() *cobra.Command {
	var path, logPath string
	var debug bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the Matrix bot (appservice) with everything serve runs",
		Long: `Run is the Matrix bot, an appservice that answers admins in their rooms (!export, !import, !verify,
!mydata; docs/BOT.md), together with everything bot serve runs: the job workers, the schedules,
the HTTP API, the web dashboard (/ui/, signed in through !dashboard), /download and /metrics, all on
appservice.listen. Give the homeserver the registration that bot generate-registration writes first.`,
		Example: `  bot generate-registration -c config.yaml -o registration.yaml
  bot run -c config.yaml
  bot run -c config.yaml --debug --log /var/log/ferry.log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runBot(cmd.Context(), path, debug, logPath) },
	}
	cmd.Flags().StringVarP(&path, "config", "c", "config.yaml", "Ferry's configuration `FILE` (config.example.yaml is the commented example)")
	cmd.Flags().BoolVar(&debug, "debug", false, "log debug messages")
	cmd.Flags().StringVar(&logPath, "log", "", "log to this `FILE` instead of stderr")
	return cmd
}

// runBot is `bot run`: the Matrix bot with everything `bot serve` runs
// (job workers, schedules, the HTTP API, /download, /metrics), all on
// appservice.listen.
func runBot(ctx context.Context, path string, debug bool, logPath string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: config problems:\n%w", path, err)
	}
	level := zerolog.InfoLevel
	if debug {
		level = zerolog.DebugLevel
	}
	out := os.Stderr
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	log := zerolog.New(out).Level(level).With().Timestamp().Logger()
	ctx = log.WithContext(ctx) // the job service logs through it too
	var current atomic.Pointer[bot.Bot]
	srv, err := newService(ctx, cfg, func(js *jobs.Service) {
		js.Announce = func(e jobs.Event) {
			if b := current.Load(); b != nil {
				b.Announce(e)
			}
		}
	})
	if err != nil {
		return err
	}
	defer srv.close()
	b, err := bot.New(cfg, srv.app, log)
	if err != nil {
		return err
	}
	current.Store(b)
	mux := http.NewServeMux()
	mux.Handle("/_matrix/", b.Handler())
	mux.Handle(bot.UnlockPath, b.UnlockHandler())
	mux.Handle("/", srv.handler)
	srv.handler = mux
	l, err := net.Listen("tcp", cfg.Appservice.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Appservice.Listen, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.serve(ctx, l) }()
	if err := b.Run(ctx); err != nil {
		return err
	}
	return <-served
}
