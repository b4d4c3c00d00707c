package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/internal/personalview"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/links"
	"github.com/ferry-matrix/ferry/store"
)

// A personal export's key is a fresh age identity made for the request.
// It never appears in a room: it is kept in Ferry's state, sealed, under
// a one-time reveal token until the user opens the reveal link. The
// secret's purpose names the archive ("mydata <user> <archive name>"),
// so that revealing the key also shows the readable view of what it
// opens (renderPersonal); both ends of that format are in this file.
const mydataPurpose = "mydata"

// via of personal exports in job records (their quota counts them).
const viaMydata = "mydata"

// Personal is a submitted personal export.
type Personal struct {
	*View
	// RevealURL shows the user's key once, with a readable view of the
	// archive, until the links expire.
	RevealURL string
}

// PersonalExport submits user's personal export (archive type user:
// exporter.Options.Personal) under job ID id, within the user's daily
// quota (Config.MydataPerDay), with a fresh key for the user alone. A
// second request of the same ID is ErrDuplicate.
func (s *Service) PersonalExport(ctx context.Context, id, user string) (*Personal, error) {
	since := time.Now().Add(-24 * time.Hour)
	n, err := s.store.CountRequested(ctx, user, viaMydata, since)
	if err != nil {
		return nil, err
	}
	if n >= s.cfg.MydataPerDay {
		return nil, fmt.Errorf("you have asked for your data %d times in the last 24 hours, and the limit is %d; the links I sent you still work until they expire", n, s.cfg.MydataPerDay)
	}
	if _, err := s.store.GetExport(ctx, id); err == nil {
		return nil, ErrDuplicate
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	identity, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, err
	}
	local, _, _ := strings.Cut(strings.TrimPrefix(user, "@"), ":")
	name := "mydata-" + local + "-" + time.Now().UTC().Format("20060102-150405") + "-" + id[:min(6, len(id))]
	token := links.NewRevealToken()
	if err := s.store.PutSecret(ctx, token, identity.String(), mydataPurpose+" "+user+" "+name, time.Now().Add(s.cfg.LinkTTL)); err != nil {
		return nil, err
	}
	req := jobs.Request{Source: s.cfg.Source, Personal: user, Recipients: []string{identity.Recipient().String()}, Name: name}
	e, err := s.jobs.Submit(ctx, id, req, user, viaMydata)
	if err != nil {
		return nil, fmt.Errorf("could not start your export: %w", err)
	}
	return &Personal{View: view(e), RevealURL: s.cfg.BaseURL + links.RevealPath + token}, nil
}

// RevealHandler serves the one-time reveal links (/reveal/...): a
// personal export's key, with the readable view of its archive.
func (s *Service) RevealHandler() http.Handler {
	return &links.RevealHandler{Store: s.store, Render: s.renderPersonal}
}

// renderPersonal is the readable view shown with a personal export's
// key: the archive is opened with the key being revealed, once, and
// never stored in the clear.
func (s *Service) renderPersonal(ctx context.Context, w io.Writer, purpose, secret string) error {
	f := strings.Fields(purpose)
	if len(f) != 3 || f[0] != mydataPurpose {
		return nil
	}
	user, name := f[1], f[2]
	ids, err := keywrap.ParseIdentities([]byte(secret))
	if err != nil {
		return err
	}
	wrapped, err := s.storage.ArchiveKeyFile(ctx, name)
	if err != nil {
		return fmt.Errorf("the archive's key file is gone: %w", err)
	}
	src, err := s.storage.OpenArchive(ctx, name)
	if err != nil {
		return err
	}
	r, err := archive.Open(ctx, src, archive.OpenOptions{Identities: ids, KeyFile: wrapped})
	if err != nil {
		src.Close()
		return err
	}
	defer r.Close()
	return personalview.Render(ctx, w, r, user)
}
