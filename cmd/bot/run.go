package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/bot"
	"github.com/ferry-matrix/ferry/config"
	"github.com/ferry-matrix/ferry/jobs"
)

// runBot is `bot run`: the Matrix bot with everything `bot serve` runs
// (job workers, schedules, the HTTP API, /download, /metrics), all on
// appservice.listen.
func runBot(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("c", "config.yaml", "configuration file")
	debug := fs.Bool("debug", false, "log debug messages")
	logPath := fs.String("log", "", "log to this file instead of stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: config problems:\n%w", *path, err)
	}
	level := zerolog.InfoLevel
	if *debug {
		level = zerolog.DebugLevel
	}
	out := os.Stderr
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	log := zerolog.New(out).Level(level).With().Timestamp().Logger()
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
	b, err := bot.New(cfg, srv.jobs, srv.links, log)
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
