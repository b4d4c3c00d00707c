package app

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/fidelity"
)

// ErrNeedKey: the archive is encrypted, and neither Ferry nor the request
// holds its key.
var ErrNeedKey = container.ErrNeedKey

// PreviewRequest names an archive to preview an import of.
type PreviewRequest struct {
	// Export is a completed export's ID, or Location an archive's URL,
	// which must lie in Ferry's storage or storage.import_from.
	Export, Location string
	// Key is the archive's key line (`bot archive key`), for an encrypted
	// archive; it is used for this preview only.
	Key string
	By  Actor
}

// Preview is what an import of an archive would carry and lose.
type Preview struct {
	// Label names the archive for people (its file name or URL); set with
	// ErrNeedKey too.
	Label      string
	Manifest   *archive.Manifest
	Validation *archive.ValidationReport
	// Target is the implementation previewed into; Fidelity the preview
	// of what it would carry and lose (fidelity.Preview).
	Target   string
	Fidelity string
}

// OK reports whether the archive validated without errors.
func (p *Preview) OK() bool { return p.Validation.OK() }

// Preview validates an archive and previews its import into the
// configured preview target, writing nothing. An encrypted archive
// without its key is ErrNeedKey, with the Preview's Label set. Every
// preview is audited (import.preview).
func (s *Service) Preview(ctx context.Context, r PreviewRequest) (*Preview, error) {
	p, src, err := s.openPreview(ctx, r)
	if err == nil {
		defer src.Close()
		err = s.preview(ctx, src, r.Key, p)
	}
	entry := AuditEntry{Actor: r.By.Name, Via: r.By.Via, Action: "import.preview", Target: p.Label, Outcome: "ok"}
	switch {
	case errors.Is(err, ErrNeedKey):
		entry.Outcome = "key needed"
	case err != nil:
		entry.Outcome, entry.Detail = "failed", err.Error()
	}
	if aerr := s.audit(ctx, entry); aerr != nil {
		return p, aerr
	}
	return p, err
}

// openPreview opens the archive a request names.
func (s *Service) openPreview(ctx context.Context, r PreviewRequest) (*Preview, container.Source, error) {
	p := &Preview{Label: r.Location}
	if r.Location != "" {
		loc, err := allowImport(r.Location, s.importLocations())
		if err != nil {
			return p, nil, err
		}
		src, err := container.Open(ctx, loc)
		if err != nil {
			return p, nil, fmt.Errorf("can't open %s: %w", p.Label, err)
		}
		return p, src, nil
	}
	e, err := s.completed(ctx, r.Export, "import (or give an archive URL: s3://..., file:///...)")
	if err != nil {
		return p, nil, err
	}
	p.Label = e.Name + ".ferry"
	src, err := s.storage.OpenArchive(ctx, e.Name)
	if err != nil {
		return p, nil, fmt.Errorf("can't open %s: %w", p.Label, err)
	}
	return p, src, nil
}

// preview opens src (with the key line, if any), validates it and fills p.
func (s *Service) preview(ctx context.Context, src container.Source, keyLine string, p *Preview) error {
	var opts archive.OpenOptions
	if keyLine = strings.TrimSpace(keyLine); keyLine != "" {
		fields := strings.Fields(keyLine)
		if len(fields) != 3 {
			return errors.New("that is not an archive key line (`ferry-archive-key-v1 <archive id> <key>`); `bot archive key` prints it")
		}
		key, err := keywrap.Decode([]byte(keyLine), fields[1])
		if err != nil {
			return fmt.Errorf("the key line does not decode: %w", err)
		}
		opts.Key = key
	}
	r, err := archive.Open(ctx, src, opts)
	switch {
	case errors.Is(err, ErrNeedKey):
		return err
	case err != nil && keyLine != "":
		return fmt.Errorf("`%s` does not open with that key (a key of another archive?): %w", p.Label, err)
	case err != nil:
		return fmt.Errorf("`%s` can't be read: %w", p.Label, err)
	}
	defer r.Close()
	rep, err := archive.Validate(ctx, r)
	if err != nil {
		return fmt.Errorf("`%s` could not be validated: %w", p.Label, err)
	}
	m := r.Manifest()
	caps := s.cfg.PreviewTarget().Capabilities()
	p.Manifest, p.Validation, p.Target, p.Fidelity = m, rep, caps.Name, fidelity.Preview(r, rep, caps).String()
	return nil
}
