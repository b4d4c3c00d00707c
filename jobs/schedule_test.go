package jobs

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// Two Ferry instances on one PostgreSQL with a per-second schedule: each
// tick exports once, and retention keeps the newest two archives.
func TestScheduleRunsOnceAcrossInstancesAndPrunes(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.StartPostgres(t).CreateDatabase(t, fmt.Sprintf("sched_%d", time.Now().UnixNano()))
	storageURL := "file://" + t.TempDir()
	id, _ := age.GenerateX25519Identity()
	sch := Schedule{Name: "nightly", Cron: "@every 1s", Keep: 2,
		Request: Request{Source: "fake", Recipients: []string{id.Recipient().String()}}}
	var mu sync.Mutex
	var events []Event
	var services []*Service
	for i := 0; i < 2; i++ {
		st, err := store.Open(ctx, dbURL, store.KeyFile(strings.TrimPrefix(storageURL, "file://")+".key"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		bucket, _ := storage.Open(ctx, storageURL)
		defer bucket.Close()
		svc := &Service{store: st, storage: bucket, Instance: fmt.Sprintf("instance-%d", i), PartSize: 16 << 10,
			Open:     func(context.Context, string) (source.Source, error) { return &sourcetest.Fake{Users: 200}, nil },
			Announce: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }}
		if err := svc.SetSchedules([]Schedule{sch}); err != nil {
			t.Fatal(err)
		}
		stop, err := svc.Start(ctx, Config{FetchPollInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer stop(context.Background())
		services = append(services, svc)
	}
	// Wait for a few ticks (leader election can take a moment).
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var n int
		services[0].store.DB.QueryRowContext(ctx, `SELECT count(*) FROM ferry_jobs WHERE via = 'schedule'`).Scan(&n)
		if n >= 4 {
			break
		}
	}
	for _, svc := range services {
		svc.SetSchedules(nil) // later ticks find no schedule and stop
	}
	time.Sleep(1500 * time.Millisecond) // let a tick already being worked finish
	svc := services[0]
	list, _ := svc.store.ListExports(ctx, 100)
	var ticks []string
	for _, e := range list {
		if e.Via == "schedule" {
			ticks = append(ticks, e.ID)
			waitFor(t, svc.store, e.ID, store.StatusCompleted, store.StatusFailed, store.StatusDeleted) // each tick prunes
		}
	}
	if len(ticks) < 3 {
		t.Fatalf("only %d scheduled exports in 30 s", len(ticks))
	}
	var jobsInserted int
	svc.store.DB.QueryRowContext(ctx, `SELECT count(*) FROM river_job WHERE kind = 'ferry.schedule'`).Scan(&jobsInserted)
	if jobsInserted > len(ticks)+2 {
		t.Errorf("%d schedule jobs for %d ticks: instances ticked twice", jobsInserted, len(ticks))
	}
	if err := svc.Prune(ctx, sch); err != nil {
		t.Fatal(err)
	}
	archives, _ := svc.storage.Archives(ctx)
	if len(archives) != 2 {
		t.Fatalf("%d archives kept, want 2: %v", len(archives), archives)
	}
	keys, _ := svc.storage.List(ctx, storage.ArchivePrefix)
	if len(keys) != 4 {
		t.Errorf("archives and key files: %v", keys)
	}
	// Retention deletes the way chat and the API do: the pruned exports
	// are marked deleted (and still count as the schedule's successes).
	list, _ = svc.store.ListExports(ctx, 100)
	deleted := 0
	for _, e := range list {
		if e.Via == "schedule" && e.Status == store.StatusDeleted {
			deleted++
		}
	}
	if deleted != len(ticks)-2 {
		t.Errorf("%d exports marked deleted, want %d", deleted, len(ticks)-2)
	}
	if last, _ := svc.store.LastScheduledSuccess(ctx); last[sch.Name].IsZero() {
		t.Error("no last success after pruning")
	}
	// Announcements follow the status change by a moment: poll briefly.
	var kinds map[string]int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		kinds = map[string]int{}
		for _, e := range events {
			kinds[e.Kind]++
		}
		mu.Unlock()
		if kinds["started"] == len(ticks) && kinds["finished"] == len(ticks) && kinds["pruned"] == len(ticks)-2 {
			break
		}
	}
	if kinds["started"] != len(ticks) || kinds["finished"] != len(ticks) || kinds["pruned"] != len(ticks)-2 {
		t.Errorf("announcements %v for %d ticks", kinds, len(ticks))
	}
}

func TestScheduleValidation(t *testing.T) {
	ok := Request{Source: "fake", Plaintext: true}
	for _, s := range []Schedule{
		{Name: "a/b", Cron: "@daily", Request: ok},
		{Name: "x", Cron: "every day", Request: ok},
		{Name: "x", Cron: "@daily", Keep: -1, Request: ok},
		{Name: "x", Cron: "@daily", Request: Request{Source: "fake"}},
	} {
		if err := s.Validate(); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	if err := (Schedule{Name: "x", Cron: "0 3 * * *", Request: ok}).Validate(); err != nil {
		t.Error(err)
	}
}

// A schedule added at run time is stored: it ticks at once, survives a
// restart (another Service on the same state database loads it), and is
// removed for good; config schedules can be neither shadowed nor removed.
func TestRuntimeSchedulesAreStored(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, "sqlite://"+dir+"/ferry.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bucket, _ := storage.Open(ctx, "file://"+dir+"/archives")
	defer bucket.Close()
	req := Request{Source: "fake", Plaintext: true}
	newService := func() (*Service, func(context.Context) error) {
		svc := &Service{store: st, storage: bucket, Instance: "t", PartSize: 16 << 10,
			Open: func(context.Context, string) (source.Source, error) { return &sourcetest.Fake{Users: 20}, nil }}
		if err := svc.SetSchedules([]Schedule{{Name: "nightly", Cron: "0 3 * * *", Request: req}}); err != nil {
			t.Fatal(err)
		}
		stop, err := svc.Start(ctx, Config{FetchPollInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return svc, stop
	}
	svc, stop := newService()
	if err := svc.AddSchedule(ctx, Schedule{Name: "nightly", Cron: "@daily", Request: req, CreatedBy: "@admin:x"}); err == nil {
		t.Error("a run-time schedule shadowed a config schedule")
	}
	if err := svc.AddSchedule(ctx, Schedule{Name: "often", Cron: "@every 1s", Keep: 1, Request: req, CreatedBy: "@admin:x"}); err != nil {
		t.Fatal(err)
	}
	if err := svc.RemoveSchedule(ctx, "nightly", "@admin:x"); err == nil || !strings.Contains(err.Error(), "config file") {
		t.Errorf("removing a config schedule: %v", err)
	}
	// It ticks without a restart.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var n int
		st.DB.QueryRowContext(ctx, `SELECT count(*) FROM ferry_jobs WHERE requested_by = 'schedule:often'`).Scan(&n)
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the added schedule never ticked")
		}
	}
	stop(ctx)

	svc, stop = newService()
	defer func() { stop(ctx) }()
	var names []string
	for _, s := range svc.Schedules() {
		names = append(names, s.Name+"/"+s.CreatedBy)
	}
	if strings.Join(names, " ") != "nightly/ often/@admin:x" {
		t.Errorf("after a restart: %v", names)
	}
	if err := svc.RemoveSchedule(ctx, "often", "@admin:x"); err != nil {
		t.Fatal(err)
	}
	if err := svc.RemoveSchedule(ctx, "often", "@admin:x"); err == nil {
		t.Error("removed twice")
	}
	if list, _ := st.Schedules(ctx); len(list) != 0 {
		t.Errorf("stored after removal: %+v", list)
	}
}
