package jobs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
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
	// RunTimeout ends a run that takes longer (default 24 h); the job is
	// queued again at once and resumes from its checkpoint, without
	// counting an attempt. It is what lets River's rescuer tell a job
	// whose instance died for good from one that runs: River rescues a
	// job that has been running for RunTimeout and an hour more (as much
	// again for a timeout under an hour), so that bounds how long such a
	// job waits, plus up to a minute for River's leader to notice it (a
	// restarted instance resumes its own at once).
	RunTimeout time.Duration
}

// clientIDPrefix starts the River client ID of every Ferry instance since
// River became the only state machine (Service.Instance). A job running
// under another ID was started by an older release.
const clientIDPrefix = "ferry:"

// clientID is the instance's River client ID (at most River's 100
// characters: a long name is shortened to a hash).
func (s *Service) clientID() string {
	name := s.Instance
	if name == "" {
		name, _ = os.Hostname()
	}
	if len(name) > 90 {
		sum := sha256.Sum256([]byte(name))
		name = name[:60] + "~" + hex.EncodeToString(sum[:8])
	}
	return clientIDPrefix + cmp.Or(name, "ferry")
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

// Start starts the workers on River's tables in the service's store
// (store.Open migrated them) and returns a function that stops them
// (finishing nothing: running jobs are resumed by the next start) and
// release the instance's lock. First it takes that lock
// (store.LockInstance), refusing to start while another process of the
// same instance runs, then it makes the jobs this instance was running
// when its previous process stopped or died available again
// (resumeInterrupted).
func (s *Service) Start(ctx context.Context, cfg Config) (func(context.Context) error, error) {
	switch s.store.Dialect {
	case store.SQLite:
		return start(ctx, s, riversqlite.New(s.store.DB), cfg)
	case store.Postgres:
		return start(ctx, s, riverpgxv5.New(s.store.Pool), cfg)
	}
	return nil, fmt.Errorf("no job runner for %s", s.store.Dialect)
}

func start[TTx any](ctx context.Context, s *Service, driver riverdriver.Driver[TTx], cfg Config) (_ func(context.Context) error, err error) {
	id := s.clientID()
	// What runs under this ID is taken for interrupted below: no other
	// process of this instance may be running (store.LockInstance).
	unlock, err := s.store.LockInstance(ctx, id)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	// A SQLite database serves one instance (the lock is the database's):
	// every job running in it was this instance's, under whatever name.
	if n, err := resumeInterrupted(ctx, driver.GetExecutor(), id, s.store.Dialect == store.SQLite); err != nil {
		return nil, fmt.Errorf("resume the jobs this instance was running: %w", err)
	} else if n > 0 {
		zerolog.Ctx(ctx).Info().Int("jobs", n).Str("instance", id).Msg("resuming the jobs interrupted when this instance stopped")
	}
	runTimeout := cmp.Or(cfg.RunTimeout, 24*time.Hour)
	// River's rescuer waits past the timeout for a run to notice its end
	// and return: an hour, as River's default does (less for a short
	// timeout, as in tests).
	s.snooze = runTimeout + min(time.Hour, runTimeout)
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
		ID:           id,
		Queues:       map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: max(cfg.Concurrency, 1) + 1}},
		PeriodicJobs: periodic,
		Workers:      workers,
		MaxAttempts:  cmp.Or(cfg.MaxAttempts, 10),
		// Exports run for hours. River's rescuer takes a job that has run
		// for longer than its timeout (and RescueStuckJobsAfter): with no
		// timeout it would never take one, and a job whose instance died
		// for good would wait for ever. A run that reaches its timeout
		// resumes at once (settle), so the timeout costs a resume.
		JobTimeout:           runTimeout,
		RescueStuckJobsAfter: s.snooze,
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
	return func(ctx context.Context) error {
		stopSync()
		defer unlock()
		return c.Stop(ctx)
	}, nil
}

// resumeInterrupted makes the jobs that are running in River's table but
// cannot be (their run's process is gone) available again at once, so
// that they resume without waiting for River's rescuer: those last
// attempted by this instance's client ID (this process has not started
// its client yet: what runs under its ID ran in its previous process),
// and those attempted by a client without the "ferry:" prefix, which
// only releases before it ran (an upgrade stops them all: their schema
// is gone); with all (a SQLite database, which serves one instance,
// guaranteed by its lock), every running job, so that one interrupted
// under an earlier name (a recreated container's host name) resumes too.
// The rescue is River's own (JobRescueMany, what its rescuer
// runs), with "available" for the state; the job's next run claims its
// ledger row, which fences out a run that was alive after all. It returns
// how many jobs it made available.
func resumeInterrupted(ctx context.Context, exec riverdriver.Executor, clientID string, all bool) (int, error) {
	now := time.Now().UTC()
	// Every running job: attempted before a horizon far enough ahead
	// that no clock skew between instances hides one.
	horizon := now.Add(24 * time.Hour)
	params := &riverdriver.JobRescueManyParams{StuckHorizon: horizon}
	var after int64
	for {
		running, err := exec.JobGetStuck(ctx, &riverdriver.JobGetStuckParams{AfterID: after, Max: 500, StuckHorizon: horizon})
		if err != nil {
			return 0, err
		}
		for _, j := range running {
			after = j.ID
			if len(j.AttemptedBy) == 0 {
				continue
			}
			if last := j.AttemptedBy[len(j.AttemptedBy)-1]; !all && last != clientID && strings.HasPrefix(last, clientIDPrefix) {
				continue // another live instance's
			}
			why, err := json.Marshal(rivertype.AttemptError{At: now, Attempt: j.Attempt, Error: "interrupted: its instance stopped; resumed when it started again"})
			if err != nil {
				return 0, err
			}
			params.ID = append(params.ID, j.ID)
			params.Error = append(params.Error, why)
			params.FinalizedAt = append(params.FinalizedAt, nil)
			params.ScheduledAt = append(params.ScheduledAt, now)
			params.State = append(params.State, string(rivertype.JobStateAvailable))
		}
		if len(running) < 500 {
			break
		}
	}
	if len(params.ID) == 0 {
		return 0, nil
	}
	if _, err := exec.JobRescueMany(ctx, params); err != nil {
		return 0, err
	}
	return len(params.ID), nil
}
