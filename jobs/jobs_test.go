package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/riverqueue/river/rivertype"
	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type fastRetry struct{}

func (fastRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(50 * time.Millisecond) }

type env struct {
	logs     *logBuffer // what the service logged (through its context)
	svc      *Service
	identity *age.X25519Identity
	src      *sourcetest.Fake
	bucket   string // the file:// bucket's directory
}

// each runs a test on both River drivers.
func each(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			logs := &logBuffer{}
			ctx := zerolog.New(logs).WithContext(context.Background())
			url := "sqlite://" + t.TempDir() + "/ferry.db"
			if driver == "postgres" {
				pg := testenv.StartPostgres(t)
				url = pg.CreateDatabase(t, fmt.Sprintf("jobs_%d", time.Now().UnixNano()))
			}
			st, err := store.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			dir := t.TempDir()
			bucket, err := storage.Open(ctx, "file://"+dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bucket.Close() })
			id, _ := age.GenerateX25519Identity()
			e := &env{identity: id, src: &sourcetest.Fake{Users: 3000}, bucket: dir, logs: logs}
			e.svc = &Service{store: st, storage: bucket, Instance: "test-" + driver, PartSize: 16 << 10,
				Open: func(ctx context.Context, name string) (source.Source, error) {
					if name == "broken" {
						return nil, fmt.Errorf("open source: %w: schema 9999", source.ErrSchema)
					}
					return e.src, nil
				}}
			stop, err := e.svc.Start(ctx, Config{RetryPolicy: fastRetry{}, FetchPollInterval: 50 * time.Millisecond, MaxAttempts: 3})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				stop(sctx)
			})
			fn(t, e)
		})
	}
}

// logBuffer collects log lines from any goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (e *env) request(name string) Request {
	return Request{Source: "fake", Name: name, Recipients: []string{e.identity.Recipient().String()}}
}

func waitFor(t *testing.T, st *store.Store, id string, statuses ...store.Status) *store.Export {
	t.Helper()
	return waitForIn(t, st, id, 60*time.Second, statuses...)
}

func waitForIn(t *testing.T, st *store.Store, id string, limit time.Duration, statuses ...store.Status) *store.Export {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ex, err := st.GetExport(context.Background(), id)
		if err == nil {
			for _, s := range statuses {
				if ex.Status == s {
					return ex
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	ex, _ := st.GetExport(context.Background(), id)
	t.Fatalf("export %s did not reach %v: %+v", id, statuses, ex)
	return nil
}

func (e *env) verify(t *testing.T, name string, users int) {
	t.Helper()
	ctx := context.Background()
	src, err := e.svc.storage.OpenArchive(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := e.svc.storage.Range(ctx, storage.ArchiveKey(name)+storage.KeyExt, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var keyFile bytes.Buffer
	keyFile.ReadFrom(rc)
	rc.Close()
	r, err := archive.Open(ctx, src, archive.OpenOptions{KeyFile: keyFile.Bytes(), Identities: []age.Identity{e.identity}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := archive.Validate(ctx, r)
	if err != nil || !rep.OK() || rep.Records != int64(users) {
		t.Fatalf("archive %s: %v %+v", name, err, rep)
	}
	if staged, _ := e.svc.storage.StagedArchives(ctx); len(staged) != 0 {
		t.Errorf("staging left behind: %v", staged)
	}
}

func TestExportJobSucceeds(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		if _, err := e.svc.Submit(ctx, "ok-1", e.request("ok-1"), "@admin:fake.test", "api"); err != nil {
			t.Fatal(err)
		}
		ex := waitFor(t, e.svc.store, "ok-1", store.StatusCompleted, store.StatusFailed)
		if ex.Status != store.StatusCompleted || ex.Size == 0 || len(ex.SHA256) != 64 || ex.ArchiveKey != "" || ex.Checkpoint != nil {
			t.Fatalf("record %+v", ex)
		}
		e.verify(t, "ok-1", 3000)
		var p Progress
		if err := json.Unmarshal([]byte(ex.Progress), &p); err != nil || p.EstimatedBytes != 3000*40 || p.Records != 3000 {
			t.Errorf("progress %s: %v", ex.Progress, err)
		}
		log, _ := e.svc.store.AuditLog(ctx, 10)
		if len(log) != 2 || log[0].Outcome != "completed" {
			t.Errorf("audit %+v", log)
		}
	})
}

func TestTransientFailureIsRetriedAndResumes(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.src.FailRun = 1
		var keyLine string // the running export's, as its row holds it
		e.src.OnUser = func(i int) error {
			if i == 200 && keyLine == "" {
				if ex, err := e.svc.store.GetExport(context.Background(), "retry-1"); err == nil {
					keyLine = ex.ArchiveKey
				}
			}
			return nil
		}
		if _, err := e.svc.Submit(context.Background(), "retry-1", e.request("retry-1"), "@admin:fake.test", "api"); err != nil {
			t.Fatal(err)
		}
		ex := waitFor(t, e.svc.store, "retry-1", store.StatusCompleted, store.StatusFailed)
		if ex.Status != store.StatusCompleted || ex.Attempts != 2 {
			t.Fatalf("record %+v", ex)
		}
		if starts := e.src.Starts(); len(starts) != 2 || starts[0] != 0 || starts[1] == 0 || starts[1] > 300 {
			t.Fatalf("runs started at %v: the retry must resume from the last checkpoint, not restart", starts)
		}
		e.verify(t, "retry-1", 3000)
		// The resume is logged, with the job; the archive key never is.
		logs := e.logs.String()
		fields := strings.Fields(keyLine)
		if len(fields) != 3 {
			t.Fatalf("no key line read from the running export: %q", keyLine)
		}
		if !strings.Contains(logs, `"job":"retry-1"`) || !strings.Contains(logs, "resuming the export") {
			t.Errorf("the resume is not logged:\n%s", logs)
		}
		if strings.Contains(logs, fields[2]) || strings.Contains(logs, fields[0]) {
			t.Errorf("the archive key reached the log:\n%s", logs)
		}
	})
}

func TestPermanentFailureIsReportedNotRetried(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		req := e.request("broken-1")
		req.Source = "broken"
		if _, err := e.svc.Submit(context.Background(), "broken-1", req, "@admin:fake.test", "api"); err != nil {
			t.Fatal(err)
		}
		ex := waitFor(t, e.svc.store, "broken-1", store.StatusFailed, store.StatusCompleted)
		if ex.Status != store.StatusFailed || ex.Attempts != 1 || !bytes.Contains([]byte(ex.Error), []byte("schema 9999")) {
			t.Fatalf("record %+v", ex)
		}
		if _, err := e.svc.Submit(context.Background(), "bad-1", Request{Source: "fake", Name: "../x", Plaintext: true}, "@a:x", "api"); err == nil {
			t.Error("bad request queued")
		}
	})
}

// A selection its source cannot export is refused at submit time when the
// service knows the source's capabilities; one that slips through (no
// capabilities wired) fails at once at run time, never retried:
// source.ErrUnsupported is permanent.
func TestUnsupportedSelection(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		req := e.request("since-1")
		req.Selection = exporter.Selection{Type: exporter.TypePartial, Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		want := req.Selection.Check(e.src.Capabilities())
		if !errors.Is(want, source.ErrUnsupported) {
			t.Fatalf("the fake supports a time range: %v", want)
		}
		e.svc.Capabilities = func(string) (source.Capabilities, error) { return e.src.Capabilities(), nil }
		if _, err := e.svc.Submit(ctx, "since-0", req, "@admin:fake.test", "api"); err == nil || err.Error() != want.Error() {
			t.Fatalf("submit: %v, want %v", err, want)
		}
		if _, err := e.svc.store.GetExport(ctx, "since-0"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a refused export was recorded: %v", err)
		}
		e.svc.Capabilities = nil
		if _, err := e.svc.Submit(ctx, "since-1", req, "@admin:fake.test", "api"); err != nil {
			t.Fatal(err)
		}
		ex := waitFor(t, e.svc.store, "since-1", store.StatusFailed, store.StatusCompleted)
		if ex.Status != store.StatusFailed || ex.Attempts != 1 || !strings.Contains(ex.Error, want.Error()) {
			t.Fatalf("record %+v", ex)
		}
	})
}

func TestCancelMidRun(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		started := make(chan struct{}, 1)
		e.src.OnUser = func(i int) error {
			if i == 500 {
				select {
				case started <- struct{}{}:
				default:
				}
			}
			time.Sleep(time.Millisecond)
			return nil
		}
		if _, err := e.svc.Submit(ctx, "cancel-1", e.request("cancel-1"), "@admin:fake.test", "api"); err != nil {
			t.Fatal(err)
		}
		<-started
		if err := e.svc.Cancel(ctx, "cancel-1", "@admin:fake.test", "api"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // let the worker notice and clean up
		ex, _ := e.svc.store.GetExport(ctx, "cancel-1")
		if ex.Status != store.StatusCancelled {
			t.Fatalf("record %+v", ex)
		}
		if _, err := e.svc.storage.Stat(ctx, storage.ArchiveKey("cancel-1")); err == nil {
			t.Fatal("a cancelled export was published")
		}
		if staged, _ := e.svc.storage.StagedArchives(ctx); len(staged) != 0 {
			t.Errorf("staging left behind: %v", staged)
		}
		if err := e.svc.Cancel(ctx, "cancel-1", "@admin:fake.test", "api"); err == nil {
			t.Error("cancelling twice succeeded")
		}
	})
}

// A run that another run fenced out (here: a claim of the same River job,
// as a rescue of a run that was alive after all makes) stops without
// writing a part or publishing, and puts its River job off rather than
// ending it: the other run owns the job now.
func TestFencedOutRunStopsWriting(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		before := runningExport(t, e, "fence-1")
		if _, err := e.svc.store.Claim(ctx, "fence-1", before.RiverJobID); err != nil {
			t.Fatal(err)
		}
		var state string
		deadline := time.Now().Add(60 * time.Second)
		for state != "scheduled" && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			e.svc.store.DB.QueryRowContext(ctx, `SELECT CAST(state AS TEXT) FROM river_job WHERE id = `+fmt.Sprint(before.RiverJobID)).Scan(&state)
		}
		if state != "scheduled" {
			t.Fatalf("the fenced-out run's River job is %q, want scheduled (snoozed)", state)
		}
		ex, _ := e.svc.store.GetExport(ctx, "fence-1")
		if ex.Status != store.StatusProcessing || ex.Fence != before.Fence+1 {
			t.Fatalf("record %+v", ex)
		}
		if _, err := e.svc.storage.Stat(ctx, storage.ArchiveKey("fence-1")); err == nil {
			t.Fatal("the fenced-out run published")
		}
	})
}

// A run fenced out whose row cannot be read is retried, not cancelled:
// the run that fenced it out may be another run of the same River job,
// whose job a cancel would end.
func TestSettleFencedUnreadRowRetries(t *testing.T) {
	st, err := store.Open(context.Background(), "sqlite://:memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := &Service{store: st, snooze: time.Hour}
	job := &rivertype.JobRow{ID: 1, Attempt: 1, MaxAttempts: 10}
	status, res := svc.settle(context.Background(), job, &store.Export{ID: "gone", Kind: store.KindExport}, 1, store.ErrFenced)
	var cancel *rivertype.JobCancelError
	var snooze *rivertype.JobSnoozeError
	if status != "" || res == nil || errors.As(res, &cancel) || errors.As(res, &snooze) {
		t.Fatalf("settle: %q %v, want a plain error", status, res)
	}
}

// Imports and verifications have no run timeout: they cannot resume
// partway, so a run put back at the timeout would start over for ever.
// Exports keep the service's (River's JobTimeout).
func TestRunTimeoutOnlyForExports(t *testing.T) {
	if d := (&importWorker{}).Timeout(nil); d != -1 {
		t.Errorf("import timeout %v, want none (-1)", d)
	}
	if d := (&verifyWorker{}).Timeout(nil); d != -1 {
		t.Errorf("verify timeout %v, want none (-1)", d)
	}
	if d := (&exportWorker{}).Timeout(nil); d != 0 {
		t.Errorf("export timeout %v, want the client's (0)", d)
	}
}

// runningExport submits export id from a source slowed to a millisecond a
// user, and returns its row once the run has reached its 200th user.
func runningExport(t *testing.T, e *env, id string) *store.Export {
	t.Helper()
	started := make(chan struct{}, 1)
	e.src.OnUser = func(i int) error {
		if i == 200 {
			select {
			case started <- struct{}{}:
			default:
			}
		}
		time.Sleep(time.Millisecond)
		return nil
	}
	if _, err := e.svc.Submit(context.Background(), id, e.request(id), "@admin:fake.test", "api"); err != nil {
		t.Fatal(err)
	}
	<-started
	before, err := e.svc.store.GetExport(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return before
}
