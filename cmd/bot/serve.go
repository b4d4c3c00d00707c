package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/ferry-matrix/ferry/api"
	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/config"
	"github.com/ferry-matrix/ferry/dashboard"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/importer"
	idendrite "github.com/ferry-matrix/ferry/importer/dendrite"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/links"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sources"
	"github.com/ferry-matrix/ferry/source/synapse"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

func newServeCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the job workers, schedules, the HTTP API, /metrics and /download",
		Long: `Serve runs the export, import and verify jobs (durable: an interrupted export resumes), the
configured schedules with their retention, and the HTTP API (/api/v1/exports, ...; docs/JOBS.md),
/metrics, the signed /download links and the web dashboard (/ui/; docs/DASHBOARD.md), on
appservice.listen: what an admin's tooling talks to. bot run runs the same with the Matrix bot.`,
		Example: `  bot serve -c config.yaml
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:29331/api/v1/exports`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runServe(cmd.Context(), path) },
	}
	cmd.Flags().StringVarP(&path, "config", "c", "config.yaml", "Ferry's configuration `FILE` (config.example.yaml is the commented example)")
	return cmd
}

// runServe runs the job workers, schedules and the HTTP API (the Matrix
// bot joins them in `bot run`): what an admin's tooling talks to.
func runServe(ctx context.Context, path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if err := cfg.ValidateService(); err != nil {
		return fmt.Errorf("%s: config problems:\n%w", path, err)
	}
	srv, err := newService(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer srv.close()
	l, err := net.Listen("tcp", cfg.Appservice.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Appservice.Listen, err)
	}
	return srv.serve(ctx, l)
}

type service struct {
	state   *store.Store
	bucket  *storage.Store
	jobs    *jobs.Service
	app     *app.Service // the verbs the API and the bot call
	links   *links.Handler
	ui      *dashboard.Server
	stop    func(context.Context) error
	handler http.Handler
	// beforeStart, if set, runs after the job service is configured and
	// before its workers start (the bot sets its announce hook there).
	beforeStart func(*jobs.Service)
}

// openSource opens the configured homeserver's data for an export.
func openSource(cfg *config.Config) jobs.SourceOpener {
	return func(ctx context.Context, name string) (source.Source, error) {
		return sources.Open(ctx, sources.Config{Implementation: cfg.Homeserver.Implementation, DendriteConfig: cfg.Source.DendriteConfig,
			Synapse: synapse.Config{Database: string(cfg.Source.Database), MediaStore: cfg.Source.MediaPath,
				SigningKey: cfg.Source.SigningKey, HomeserverConfig: cfg.Source.HomeserverConfig}})
	}
}

// sourceCapabilities are the configured homeserver's (sources.Capabilities).
func sourceCapabilities(cfg *config.Config) jobs.SourceCapabilities {
	return func(string) (source.Capabilities, error) { return sources.Capabilities(cfg.Homeserver.Implementation) }
}

// readIdentities reads an age identity file.
func readIdentities(path string) ([]age.Identity, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ids, err := keywrap.ParseIdentities(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ids, nil
}

// importInto runs import jobs into the configured targets.
func importInto(targets []config.ImportTarget) jobs.Importer {
	return func(ctx context.Context, r *archive.Reader, req jobs.ImportRequest, p importer.Progress) (string, error) {
		i := slices.IndexFunc(targets, func(t config.ImportTarget) bool { return t.Name == req.Target })
		if i < 0 {
			return "", fmt.Errorf("no import target %q is configured (import_targets in the config)", req.Target)
		}
		t := targets[i]
		where := targetFlags{config: t.Config, helper: t.Helper}
		if t.Implementation == "synapse" {
			where = targetFlags{db: string(t.Database), mediaStore: t.MediaStore, synapseConfig: t.Config,
				signingKey: t.SigningKeyFile, updateSynapseDatabase: t.UpdateSynapseDatabase}
		}
		ctx = zerolog.Ctx(ctx).With().Str("target", t.Name).Logger().WithContext(ctx) // the target's own lines
		target, err := newImportTarget(t.Implementation, where)
		if err != nil {
			return "", err
		}
		res, err := importer.Run(ctx, target, r, importer.Options{DryRun: req.DryRun, Migration: req.Migration,
			Rooms: req.Rooms, AllowNonEmpty: req.AllowNonEmpty}, p)
		var report strings.Builder
		if res != nil {
			printImport(&report, r.Manifest(), res, target.Capabilities(), req.DryRun)
		}
		return report.String(), err
	}
}

// instanceName is this instance's stable name among the ones sharing a
// state database (its River client ID: jobs.Service.Instance):
// state.instance, or else the host name with the appservice's listen
// address, which two instances on one host cannot share, and which stays
// the same when it restarts (not when a container is recreated).
func instanceName(cfg *config.Config) string {
	if cfg.State.Instance != "" {
		return cfg.State.Instance
	}
	host, _ := os.Hostname()
	return host + "/" + cfg.Appservice.Listen
}

func newService(ctx context.Context, cfg *config.Config, beforeStart func(*jobs.Service)) (*service, error) {
	s := &service{}
	var err error
	if s.state, err = store.Open(ctx, string(cfg.State.Database), store.KeyFile(cfg.State.KeyFile)); err != nil {
		return nil, err
	}
	if s.bucket, err = storage.Open(ctx, cfg.Storage.URL); err != nil {
		s.close()
		return nil, err
	}
	s.jobs = jobs.New(s.state, s.bucket)
	s.jobs.Instance, s.jobs.Open, s.jobs.Capabilities = instanceName(cfg), openSource(cfg), sourceCapabilities(cfg)
	if cfg.Encryption.IdentityFile != "" {
		if s.jobs.Identities, err = readIdentities(cfg.Encryption.IdentityFile); err != nil {
			s.close()
			return nil, fmt.Errorf("encryption.identity_file: %w", err)
		}
	}
	if len(cfg.ImportTargets) > 0 {
		s.jobs.Import = importInto(cfg.ImportTargets)
	}
	var schedules []jobs.Schedule
	for _, sc := range cfg.Schedules {
		schedules = append(schedules, jobs.Schedule{Name: sc.Name, Cron: sc.Cron, Keep: sc.Keep, MaxAge: time.Duration(sc.MaxAge),
			Request: jobs.Request{Source: cfg.Homeserver.Implementation, Recipients: cfg.Encryption.Recipients, Verify: sc.Verify,
				Selection: exporter.Selection{Type: sc.Type, Rooms: sc.Rooms, Users: sc.Users, Media: sc.Media}}})
	}
	if err := s.jobs.SetSchedules(schedules); err != nil {
		s.close()
		return nil, err
	}
	if beforeStart != nil {
		beforeStart(s.jobs)
	}
	if s.stop, err = s.jobs.Start(ctx, jobs.Config{Concurrency: cfg.Limits.ConcurrentJobs}); err != nil {
		s.close()
		return nil, err
	}
	secret, err := links.LoadOrCreateSecret(cfg.Storage.LinkSecretFile)
	if err != nil {
		s.close()
		return nil, err
	}
	signer, err := links.NewSigner(secret, nil)
	if err != nil {
		s.close()
		return nil, err
	}
	// The API's handler audits every download (allowed or refused).
	s.links = &links.Handler{Store: s.bucket, Signer: signer}
	s.app = app.New(s.state, s.bucket, s.jobs, s.links, app.Config{Source: cfg.Homeserver.Implementation, BaseURL: cfg.PublicURL(),
		LinkTTL: time.Duration(cfg.Storage.LinkLifetime), MydataPerDay: cfg.Limits.MydataPerDay, StorageURL: cfg.Storage.URL,
		ImportFrom: cfg.Storage.ImportFrom, PreviewTarget: func() importer.Target { return idendrite.NewTarget(idendrite.Config{}) }})
	var tokens []api.Token
	for _, t := range cfg.API.Tokens {
		tokens = append(tokens, api.Token{Name: t.Name, Role: t.Role, Secret: string(t.Token)})
	}
	a := &api.Server{Svc: s.app, Tokens: tokens, Links: s.links, Rate: cfg.API.RatePerSecond, Burst: int(2 * cfg.API.RatePerSecond),
		TrustedProxies: cfg.API.TrustedProxies, Reveal: s.app.RevealHandler()}
	var admins []dashboard.Token
	for _, t := range tokens {
		if t.Role == api.RoleAdmin {
			admins = append(admins, dashboard.Token{Name: t.Name, Secret: t.Secret})
		}
	}
	s.ui = &dashboard.Server{Svc: s.app, AdminTokens: admins, Secure: strings.HasPrefix(cfg.PublicURL(), "https://"),
		PublicURL: cfg.PublicURL(), TrustedProxies: cfg.API.TrustedProxies,
		IsAdmin: func(u string) bool { return slices.Contains(cfg.Admins.Users, u) }}
	mux := http.NewServeMux()
	mux.Handle("/", a.Handler())
	mux.Handle(dashboard.Prefix, s.ui.Handler())
	s.handler = mux
	return s, nil
}

func (s *service) serve(ctx context.Context, l net.Listener) error {
	// Requests carry ctx's logger (zerolog.Ctx), not its cancellation:
	// Shutdown lets them end.
	hs := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	hs.RegisterOnShutdown(s.ui.Close) // the dashboard's event streams never end by themselves
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.Shutdown(shut)
	}()
	fmt.Fprintf(os.Stderr, "serving the API on %s\n", l.Addr())
	if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *service) close() {
	if s.stop != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.stop(ctx)
		cancel()
	}
	if s.bucket != nil {
		s.bucket.Close()
	}
	if s.state != nil {
		s.state.Close()
	}
}
