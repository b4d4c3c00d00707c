package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/internal/human"
	"github.com/ferry-matrix/ferry/internal/progress"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// VerifyArgs is the River job of one verification.
type VerifyArgs struct {
	JobID string `json:"job_id"`
}

// Kind names the job kind in River's tables.
func (VerifyArgs) Kind() string { return "ferry.verify" }

// VerifyRequest names the finished export whose published archive a
// verify job checks.
type VerifyRequest struct {
	Export string `json:"export"`
}

// ErrDamaged: a stored archive is not what was published (or cannot be
// opened, or holds invalid records). Retrying does not help; a new export
// does.
var ErrDamaged = errors.New("damaged")

// StoredArchive is what CheckStored read back from storage.
type StoredArchive struct {
	Key     string // the object's key in the bucket
	Size    int64
	SHA256  string
	KeyFile []byte // the wrapped key beside it (nil for a plaintext archive)
}

// CheckStored reads a finished export's archive back from storage and
// checks it against what was recorded when it was published: size and
// SHA-256 (truncation, corruption, a replaced object), and, for an
// encrypted archive, that its wrapped key is there and is an age file.
// It needs no key. Damage is reported as ErrDamaged with what was found;
// other errors are storage errors worth retrying.
func (s *Service) CheckStored(ctx context.Context, e *store.Export) (*StoredArchive, error) {
	return s.checkStored(ctx, e, progress.None)
}

// checkStored is CheckStored, counting the bytes read into c.
func (s *Service) checkStored(ctx context.Context, e *store.Export, c progress.Counter) (*StoredArchive, error) {
	defer c.Done()
	if e.Status != store.StatusCompleted {
		return nil, fmt.Errorf("export %s is %s: only a completed export has an archive to check", e.ID, e.Status)
	}
	key := storage.ArchiveKey(e.Name)
	r, err := s.storage.Range(ctx, key, 0, -1)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%s is %w: it is gone from storage (deleted by retention or by hand?)", key, ErrDamaged)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	h := sha256.New()
	c.SetTotal(e.Size)
	n, err := io.Copy(h, &countingReader{r: r, c: c})
	closeLogged(ctx, r, key)
	if err != nil {
		return nil, fmt.Errorf("reading %s failed after %s: %w", key, human.Bytes(n), err)
	}
	got := &StoredArchive{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	if got.Size != e.Size || got.SHA256 != e.SHA256 {
		return got, fmt.Errorf("%s is %w: it has %s with SHA-256 %s, but was published with %s and %s; don't rely on it, run a new export",
			key, ErrDamaged, human.Bytes(got.Size), got.SHA256, human.Bytes(e.Size), e.SHA256)
	}
	var req Request
	if err := json.Unmarshal([]byte(e.Request), &req); err != nil {
		return got, fmt.Errorf("stored request of %s: %w", e.ID, err)
	}
	if req.Plaintext {
		return got, nil
	}
	got.KeyFile, err = s.storage.ArchiveKeyFile(ctx, e.Name)
	if errors.Is(err, storage.ErrNotFound) {
		return got, fmt.Errorf("%s is %w: its key file %s is missing, and without it nobody can open the archive", key, ErrDamaged, key+storage.KeyExt)
	}
	if err != nil {
		return got, fmt.Errorf("read %s%s: %w", key, storage.KeyExt, err)
	}
	if !bytes.HasPrefix(got.KeyFile, []byte("age-encryption.org/v1\n")) {
		return got, fmt.Errorf("%s is %w: its key file %s is not an age file", key, ErrDamaged, key+storage.KeyExt)
	}
	return got, nil
}

// VerifyStored checks a finished export's archive: CheckStored, then,
// when the archive is plaintext or one of the service's Identities opens
// it, every part, record, blob and signature inside (archive.Validate).
// It returns a one-paragraph result for people; damage is ErrDamaged.
func (s *Service) VerifyStored(ctx context.Context, e *store.Export) (string, error) {
	return s.verifyStored(ctx, e, progress.None)
}

// verifyStored is VerifyStored, counting the archive's bytes as they are
// read back and hashed into c.
func (s *Service) verifyStored(ctx context.Context, e *store.Export, c progress.Counter) (string, error) {
	got, err := s.checkStored(ctx, e, c)
	if err != nil {
		return "", err
	}
	outside := fmt.Sprintf("%s is intact (%s, SHA-256 %s as published", got.Key, human.Bytes(got.Size), got.SHA256)
	if got.KeyFile != nil {
		outside += ", key file present"
	}
	outside += ")"
	if got.KeyFile != nil && len(s.Identities) == 0 {
		return outside + "; its contents were not checked: no identity that opens archives is configured (encryption.identity_file). " +
			"Run `bot archive verify --identity FILE` on a download for a full check.", nil
	}
	src, err := s.storage.OpenArchive(ctx, e.Name)
	if err != nil {
		return "", err
	}
	r, err := archive.Open(ctx, src, archive.OpenOptions{KeyFile: got.KeyFile, Identities: s.Identities})
	if err != nil {
		if errors.Is(err, keywrap.ErrNoIdentity) {
			return outside + "; its contents were not checked: the configured identity is not among its recipients.", nil
		}
		return "", fmt.Errorf("%s is %w: it cannot be opened: %w", got.Key, ErrDamaged, err)
	}
	defer closeLogged(ctx, r, got.Key)
	rep, err := archive.Validate(ctx, r)
	if err != nil {
		if ctx.Err() != nil {
			return "", err
		}
		return "", fmt.Errorf("%s is %w: %w", got.Key, ErrDamaged, err)
	}
	if !rep.OK() {
		var first []string
		for _, p := range rep.Problems {
			if p.Severity == archive.SeverityError && len(first) < 3 {
				first = append(first, p.String())
			}
		}
		return "", fmt.Errorf("%s is %w: it opens, but %d records are invalid, first: %s", got.Key, ErrDamaged, rep.Errors(), strings.Join(first, "; "))
	}
	return fmt.Sprintf("%s; contents checked: %d records in %d files, %d events (%d signatures valid), %d media files, no errors.",
		outside, rep.Records, rep.Files, rep.Events, rep.Signatures.Valid, rep.Blobs), nil
}

// SubmitVerify queues a verification of a finished export's archive.
func (s *Service) SubmitVerify(ctx context.Context, id, exportID, requestedBy, via string) (*store.Export, error) {
	e, err := s.store.GetExport(ctx, exportID)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", exportID, err)
	}
	if e.Kind != store.KindExport || e.Status != store.StatusCompleted {
		return nil, fmt.Errorf("export %s is %s %s: only a completed export can be verified", exportID, e.Kind, e.Status)
	}
	body := mustJSON(VerifyRequest{Export: exportID})
	v := &store.Export{ID: id, Kind: store.KindVerify, RequestedBy: requestedBy, Via: via, Request: body, Name: e.Name}
	if err := s.enqueue(ctx, v, VerifyArgs{JobID: id}); err != nil {
		return nil, err
	}
	if err := s.audit(ctx, store.AuditEntry{Actor: requestedBy, Via: via, Action: "export.verify", Target: exportID, Outcome: "queued", Detail: "job " + id}); err != nil {
		return nil, fmt.Errorf("verification %s is queued, but %w", id, err)
	}
	return v, nil
}

// verifyWorker runs VerifyArgs.
type verifyWorker struct {
	river.WorkerDefaults[VerifyArgs]
	svc *Service
}

// Timeout: none. A verification cannot resume partway, so the run
// timeout (Config.RunTimeout), which puts a run back to resume from its
// checkpoint, would restart one longer than it for ever. Without a
// timeout River's rescuer leaves the job alone; a job whose instance
// stopped is resumed when it starts again (resumeInterrupted).
func (w *verifyWorker) Timeout(*river.Job[VerifyArgs]) time.Duration { return -1 }

func (w *verifyWorker) Work(ctx context.Context, job *river.Job[VerifyArgs]) error {
	return w.svc.work(ctx, job.JobRow, job.Args.JobID, func(ctx context.Context, v *store.Export, token int64) (string, error) {
		var req VerifyRequest
		if err := json.Unmarshal([]byte(v.Request), &req); err != nil {
			return "", permanent(fmt.Errorf("stored request: %w", err))
		}
		e, err := w.svc.store.GetExport(ctx, req.Export)
		if err != nil {
			return "", permanent(fmt.Errorf("export %s: %w", req.Export, err))
		}
		reading := "reading " + storage.ArchiveKey(e.Name)
		w.svc.saveProgress(ctx, v.ID, token, Progress{Stream: reading})
		result, err := w.svc.verifyStored(ctx, e, &progress.Reporting{Interval: 2 * time.Second, Report: func(done, total int64, _ bool) {
			p := Progress{Stream: reading}
			if total > 0 {
				p.Percent = min(100, 100*float64(done)/float64(total))
			}
			w.svc.saveProgress(ctx, v.ID, token, p)
		}})
		if errors.Is(err, ErrDamaged) {
			err = permanent(err)
		}
		outcome := "ok"
		if err != nil {
			outcome = "failed"
		}
		if err == nil || isPermanent(err) {
			if aerr := w.svc.auditRetrying(ctx, store.AuditEntry{Actor: v.RequestedBy, Via: v.Via, Action: "export.verify", Target: e.ID,
				Outcome: outcome, Detail: firstNonEmpty(result, errString(err))}); aerr != nil {
				// logged: a retry would only verify again
				zerolog.Ctx(ctx).Error().Err(aerr).Str("outcome", outcome).Msg("verification ended, but its audit entry could not be written")
			}
			if v.Via == "schedule" {
				kind := "verified"
				if err != nil {
					kind = "verify_failed"
				}
				w.svc.announce(Event{Schedule: strings.TrimPrefix(v.RequestedBy, "schedule:"), ExportID: e.ID, Kind: kind, Detail: firstNonEmpty(result, errString(err))})
			}
		}
		return result, err
	})
}

// countingReader counts what is read through it into c.
type countingReader struct {
	r io.Reader
	c progress.Counter
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.c.Add(int64(n))
	return n, err
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with plain structs
	}
	return string(b)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
