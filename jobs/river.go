package jobs

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/store"
)

// Config tunes the job runner.
type Config struct {
	// Concurrent exports on this instance (default 1).
	Concurrency int
	// MaxAttempts before an export that keeps failing transiently is given
	// up (default 10).
	MaxAttempts int
	// RetryPolicy (default River's exponential backoff).
	RetryPolicy river.ClientRetryPolicy
	// FetchPollInterval: how often idle workers look for jobs (default 1s).
	FetchPollInterval time.Duration
	// ScheduleSync: how often schedules stored by other instances are
	// loaded (default 30 s).
	ScheduleSync time.Duration
}

type riverRunner[TTx any] struct{ c *river.Client[TTx] }

func (r riverRunner[TTx]) insert(ctx context.Context, args river.JobArgs) (int64, error) {
	res, err := r.c.Insert(ctx, args, nil)
	if err != nil {
		return 0, err
	}
	return res.Job.ID, nil
}

func (r riverRunner[TTx]) cancel(ctx context.Context, jobID int64) error {
	_, err := r.c.JobCancel(ctx, jobID)
	return err
}

func (r riverRunner[TTx]) addPeriodic(pj *river.PeriodicJob) { r.c.PeriodicJobs().Add(pj) }
func (r riverRunner[TTx]) removePeriodic(id string)          { r.c.PeriodicJobs().RemoveByID(id) }

// Start migrates River's tables in the service's store, starts workers and
// returns a function that stops them (finishing nothing: running exports
// are resumed by the next start).
func (s *Service) Start(ctx context.Context, cfg Config) (func(context.Context) error, error) {
	switch s.Store.Dialect {
	case store.SQLite:
		return start(ctx, s, riversqlite.New(s.Store.DB), cfg)
	case store.Postgres:
		return start(ctx, s, riverpgxv5.New(s.Store.Pool), cfg)
	}
	return nil, fmt.Errorf("no job runner for %s", s.Store.Dialect)
}

func start[TTx any](ctx context.Context, s *Service, driver riverdriver.Driver[TTx], cfg Config) (func(context.Context) error, error) {
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		return nil, err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("job tables: %w", err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &exportWorker{svc: s})
	river.AddWorker(workers, &scheduleWorker{svc: s})
	river.AddWorker(workers, &importWorker{svc: s})
	river.AddWorker(workers, &verifyWorker{svc: s})
	if s.schedules == nil {
		s.schedules = map[string]Schedule{}
	}
	if err := s.loadStored(ctx); err != nil {
		return nil, err
	}
	periodic, err := s.periodicJobs()
	if err != nil {
		return nil, err
	}
	rcfg := &river.Config{
		Queues:       map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: max(cfg.Concurrency, 1) + 1}},
		PeriodicJobs: periodic,
		Workers:      workers,
		MaxAttempts:  cmp.Or(cfg.MaxAttempts, 10),
		// Exports run for hours and have no timeout; Ferry's lease, not
		// River's rescuer, notices crashed runs (ResumeOrphans).
		JobTimeout:           -1,
		RescueStuckJobsAfter: 24 * time.Hour,
		RetryPolicy:          cfg.RetryPolicy,
		FetchPollInterval:    cfg.FetchPollInterval,
		FetchCooldown:        min(cfg.FetchPollInterval, 100*time.Millisecond),
	}
	// River's own lines join the context's logger (without one, River
	// keeps its default, stderr).
	if l := zerolog.Ctx(ctx); l.GetLevel() != zerolog.Disabled {
		rcfg.Logger = slog.New(zerolog.NewSlogHandler(l.With().Str("component", "river").Logger()))
	}
	c, err := river.NewClient(driver, rcfg)
	if err != nil {
		return nil, err
	}
	s.runner = riverRunner[TTx]{c: c}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	// Schedules added or removed on another instance reach this one.
	syncCtx, stopSync := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		t := time.NewTicker(cmp.Or(cfg.ScheduleSync, 30*time.Second))
		defer t.Stop()
		for {
			select {
			case <-syncCtx.Done():
				return
			case <-t.C:
				if err := s.loadStored(syncCtx); err != nil && syncCtx.Err() == nil {
					// tried again at the next tick
					zerolog.Ctx(syncCtx).Error().Err(err).Msg("schedules stored by other instances could not be loaded")
				}
			}
		}
	}()
	return func(ctx context.Context) error { stopSync(); return c.Stop(ctx) }, nil
}
