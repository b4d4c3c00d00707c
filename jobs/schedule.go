package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// Schedule is a recurring export with retention.
type Schedule struct {
	Name string // one path segment; archives are named <Name>-<UTC time>
	Cron string // standard 5-field cron, or @every 1h, @daily, ...
	// Request is the template of each run (its Name is set per run).
	Request Request
	Keep    int           // keep the newest Keep archives of this schedule (0: no limit)
	MaxAge  time.Duration // delete archives older than this (0: no limit)
	// CreatedBy is who added it at run time (AddSchedule); empty for the
	// config file's schedules, which only the config file changes.
	CreatedBy string
}

// Validate checks a schedule.
func (s Schedule) Validate() error {
	if err := storage.CheckName(s.Name); err != nil {
		return fmt.Errorf("schedule name: %w", err)
	}
	if _, err := cron.ParseStandard(s.Cron); err != nil {
		return fmt.Errorf("schedule %s: cron %q: %w", s.Name, s.Cron, err)
	}
	if s.Keep < 0 || s.MaxAge < 0 {
		return fmt.Errorf("schedule %s: keep and max_age must not be negative", s.Name)
	}
	r := s.Request
	r.Name = s.Name + "-20060102T150405Z"
	return r.Validate()
}

// checkSchedule validates a schedule and checks its request against the
// source's capabilities (Service.supports): a schedule its source cannot
// run is refused when it is added, not at every tick.
func (s *Service) checkSchedule(sch Schedule) error {
	if err := sch.Validate(); err != nil {
		return err
	}
	if err := s.supports(sch.Request); err != nil {
		return fmt.Errorf("schedule %s: %w", sch.Name, err)
	}
	return nil
}

// ScheduleArgs is the River job of one scheduled run.
type ScheduleArgs struct {
	Schedule string    `json:"schedule"`
	At       time.Time `json:"at"` // the tick, to the second: the run's identity
}

// Kind names the job kind.
func (ScheduleArgs) Kind() string { return "ferry.schedule" }

// Event is what the announce hook hears about scheduled runs.
type Event struct {
	Schedule string
	ExportID string
	Kind     string // started | pruned
	Detail   string
}

// scheduleWorker turns a tick into an export (at most once per tick, even
// with several instances: the export ID is derived from the tick) and
// applies the schedule's retention.
type scheduleWorker struct {
	river.WorkerDefaults[ScheduleArgs]
	svc *Service
}

func (w *scheduleWorker) Work(ctx context.Context, job *river.Job[ScheduleArgs]) error {
	svc := w.svc
	svc.mu.RLock()
	sch, ok := svc.schedules[job.Args.Schedule]
	svc.mu.RUnlock()
	if !ok {
		return river.JobCancel(fmt.Errorf("schedule %q is no longer configured", job.Args.Schedule))
	}
	at := job.Args.At.UTC()
	id := "sched-" + sch.Name + "-" + at.Format("20060102T150405Z")
	req := sch.Request
	req.Name = sch.Name + "-" + at.Format("20060102T150405Z")
	if _, err := svc.store.GetExport(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err // retried
	} else if err != nil {
		if _, err := svc.Submit(ctx, id, req, "schedule:"+sch.Name, "schedule"); err != nil {
			if _, again := svc.store.GetExport(ctx, id); again != nil {
				return err // not a duplicate: a real failure
			}
			// The row is there: another instance submitted this tick, or
			// this submission failed after recording it (its audit entry,
			// its River job, marked failed then). Not retried; said.
			zerolog.Ctx(ctx).Warn().Err(err).Str("schedule", sch.Name).Str("export", id).Msg("the scheduled export exists already; this submission of it failed")
		} else {
			svc.announce(Event{Schedule: sch.Name, ExportID: id, Kind: "started"})
		}
	}
	return svc.Prune(ctx, sch)
}

// Prune deletes a schedule's archives beyond Keep and older than MaxAge
// (DeleteArchive: with their key files, the exports marked deleted, each
// deletion audited).
func (s *Service) Prune(ctx context.Context, sch Schedule) error {
	all, err := s.storage.Archives(ctx)
	if err != nil {
		return err
	}
	prefix := storage.ArchivePrefix + sch.Name + "-"
	var mine []storage.Object
	for _, o := range all {
		if strings.HasPrefix(o.Key, prefix) {
			mine = append(mine, o)
		}
	}
	// Names carry the UTC time, so they sort oldest first.
	sort.Slice(mine, func(i, j int) bool { return mine[i].Key < mine[j].Key })
	now := time.Now()
	for i, o := range mine {
		tooMany := sch.Keep > 0 && i < len(mine)-sch.Keep
		tooOld := sch.MaxAge > 0 && now.Sub(o.ModTime) > sch.MaxAge
		if !tooMany && !tooOld {
			continue
		}
		reason := "beyond keep"
		if tooOld {
			reason = "older than max age"
		}
		name := strings.TrimSuffix(strings.TrimPrefix(o.Key, storage.ArchivePrefix), storage.ArchiveExt)
		if err := s.DeleteArchive(ctx, name, "schedule:"+sch.Name, "schedule", reason); err != nil {
			return err
		}
		s.announce(Event{Schedule: sch.Name, Kind: "pruned", Detail: o.Key + " (" + reason + ")"})
	}
	return nil
}

// DeleteArchive deletes a published archive and its key file, marks the
// export that published it deleted, and audits the deletion
// (export.delete, or archive.delete for an archive no export of this
// state database published); the one deletion that chat, the API and
// retention share. reason, if set, says why (retention).
func (s *Service) DeleteArchive(ctx context.Context, name, actor, via, reason string) error {
	key := storage.ArchiveKey(name)
	e, err := s.store.ExportByName(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := s.storage.Delete(ctx, key); err != nil {
		return fmt.Errorf("could not delete %s: %w", key, err)
	}
	if err := s.storage.Delete(ctx, key+storage.KeyExt); err != nil {
		return fmt.Errorf("deleted %s, but not its key file %s%s (delete it by hand): %w", key, key, storage.KeyExt, err)
	}
	entry := store.AuditEntry{Actor: actor, Via: via, Action: "archive.delete", Target: key, Outcome: "ok", Detail: reason}
	if e != nil {
		if err := s.store.MarkDeleted(ctx, e.ID); err != nil && !errors.Is(err, store.ErrNotFound) { // already deleted: nothing to mark
			return fmt.Errorf("deleted %s, but could not record it: %w", key, err)
		}
		entry.Action, entry.Target, entry.Detail = "export.delete", e.ID, strings.TrimSuffix(key+", "+reason, ", ")
	}
	if err := s.audit(ctx, entry); err != nil {
		return fmt.Errorf("deleted %s, but %w", key, err)
	}
	return nil
}

func (s *Service) announce(e Event) {
	if s.Announce != nil {
		s.Announce(e)
	}
}

// cronSchedule adapts a robfig schedule to River's, to the second.
type cronSchedule struct{ s cron.Schedule }

func (c cronSchedule) Next(t time.Time) time.Time { return c.s.Next(t) }

// periodicJob turns a schedule into a River periodic job: River runs it
// on its elected leader only, so several instances tick once.
func periodicJob(sch Schedule) (*river.PeriodicJob, error) {
	parsed, err := cron.ParseStandard(sch.Cron)
	if err != nil {
		return nil, err
	}
	name := sch.Name
	return river.NewPeriodicJob(cronSchedule{parsed}, func() (river.JobArgs, *river.InsertOpts) {
		return ScheduleArgs{Schedule: name, At: time.Now().UTC().Truncate(time.Second)}, nil
	}, &river.PeriodicJobOpts{ID: periodicID(name)}), nil
}

func periodicID(name string) string { return "ferry-schedule-" + name }

// periodicJobs are the periodic jobs of every installed schedule.
func (s *Service) periodicJobs() ([]*river.PeriodicJob, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*river.PeriodicJob
	for _, sch := range s.schedules {
		pj, err := periodicJob(sch)
		if err != nil {
			return nil, err
		}
		out = append(out, pj)
	}
	return out, nil
}

// AddSchedule adds a schedule at run time: stored in Ferry's state (so
// it survives restarts and every instance runs it) and ticking at once on
// this instance. The name must be new, also among the config's schedules.
func (s *Service) AddSchedule(ctx context.Context, sch Schedule) error {
	if sch.CreatedBy == "" {
		return errors.New("AddSchedule: CreatedBy is required")
	}
	if err := s.checkSchedule(sch); err != nil {
		return err
	}
	s.mu.RLock()
	_, taken := s.schedules[sch.Name]
	s.mu.RUnlock()
	if taken {
		return fmt.Errorf("a schedule named %q exists already", sch.Name)
	}
	req, err := json.Marshal(sch.Request)
	if err != nil {
		return err
	}
	if err := s.store.AddSchedule(ctx, store.Schedule{Name: sch.Name, Cron: sch.Cron, Request: string(req), Keep: sch.Keep,
		MaxAge: sch.MaxAge, CreatedBy: sch.CreatedBy}); errors.Is(err, store.ErrExists) {
		return fmt.Errorf("a schedule named %q exists already", sch.Name)
	} else if err != nil {
		return err
	}
	if err := s.install(sch); err != nil {
		return err
	}
	if err := s.audit(ctx, store.AuditEntry{Actor: sch.CreatedBy, Via: "schedule", Action: "schedule.add", Target: sch.Name, Outcome: "ok", Detail: sch.Cron}); err != nil {
		return fmt.Errorf("schedule %s is added, but %w", sch.Name, err)
	}
	return nil
}

// RemoveSchedule deletes a schedule added at run time; its archives stay.
// Config schedules are refused: edit the config file instead.
func (s *Service) RemoveSchedule(ctx context.Context, name, actor string) error {
	s.mu.RLock()
	sch, ok := s.schedules[name]
	s.mu.RUnlock()
	if ok && sch.CreatedBy == "" {
		return fmt.Errorf("schedule %q comes from the config file: remove it there and restart Ferry", name)
	}
	if err := s.store.DeleteSchedule(ctx, name); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("there is no schedule %q", name)
	} else if err != nil {
		return err
	}
	s.uninstall(name)
	if err := s.audit(ctx, store.AuditEntry{Actor: actor, Via: "schedule", Action: "schedule.remove", Target: name, Outcome: "ok"}); err != nil {
		return fmt.Errorf("schedule %s is removed, but %w", name, err)
	}
	return nil
}

// install makes sch tick on this instance.
func (s *Service) install(sch Schedule) error {
	pj, err := periodicJob(sch)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.schedules[sch.Name] = sch
	s.mu.Unlock()
	if s.runner != nil {
		s.runner.addPeriodic(pj)
	}
	return nil
}

func (s *Service) uninstall(name string) {
	s.mu.Lock()
	delete(s.schedules, name)
	s.mu.Unlock()
	if s.runner != nil {
		s.runner.removePeriodic(periodicID(name))
	}
}

// loadStored brings the stored schedules into this instance: new ones
// start ticking, removed ones stop (another instance may have changed
// them). Config schedules are left as they are.
func (s *Service) loadStored(ctx context.Context) error {
	stored, err := s.store.Schedules(ctx)
	if err != nil {
		return err
	}
	want := map[string]Schedule{}
	for _, st := range stored {
		sch := Schedule{Name: st.Name, Cron: st.Cron, Keep: st.Keep, MaxAge: st.MaxAge, CreatedBy: st.CreatedBy}
		if err := json.Unmarshal([]byte(st.Request), &sch.Request); err != nil {
			return fmt.Errorf("stored schedule %s: %w", st.Name, err)
		}
		want[st.Name] = sch
	}
	s.mu.RLock()
	var add []Schedule
	var drop []string
	for name, sch := range want {
		if cur, ok := s.schedules[name]; !ok || cur.Cron != sch.Cron && cur.CreatedBy != "" {
			add = append(add, sch)
		}
	}
	for name, cur := range s.schedules {
		if _, ok := want[name]; !ok && cur.CreatedBy != "" {
			drop = append(drop, name)
		}
	}
	s.mu.RUnlock()
	for _, name := range drop {
		s.uninstall(name)
	}
	for _, sch := range add {
		s.uninstall(sch.Name)
		if err := s.install(sch); err != nil {
			return err
		}
	}
	return nil
}

// Schedules lists the installed schedules by name.
func (s *Service) Schedules() []Schedule {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Schedule, 0, len(s.schedules))
	for _, sch := range s.schedules {
		out = append(out, sch)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SetSchedules installs the schedules. River's periodic jobs are set up at
// Start; a schedule removed later stops at its next tick.
func (s *Service) SetSchedules(list []Schedule) error {
	m := map[string]Schedule{}
	for _, sch := range list {
		if err := s.checkSchedule(sch); err != nil {
			return err
		}
		if _, dup := m[sch.Name]; dup {
			return fmt.Errorf("two schedules are named %q", sch.Name)
		}
		m[sch.Name] = sch
	}
	s.mu.Lock()
	s.schedules = m
	s.mu.Unlock()
	return nil
}
