package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ferry-matrix/ferry/app"
)

// ImportRequest is the body of POST /api/v1/imports.
type ImportRequest struct {
	Export        string   `json:"export"`  // a completed export's ID
	Archive       string   `json:"archive"` // or a published archive's name
	Target        string   `json:"target"`  // a configured import target
	DryRun        bool     `json:"dry_run"`
	Migration     bool     `json:"migration"`
	ForceNonEmpty bool     `json:"force_non_empty"`
	Rooms         []string `json:"rooms"`
	// Key is the archive's key line (`bot archive key`), for an encrypted
	// archive that Ferry's own identity doesn't open. It is kept only until
	// the job ends and never returned or logged.
	Key string `json:"key"`
}

func (s *Server) createImport(w http.ResponseWriter, r *http.Request, c caller) {
	var req ImportRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "request body: "+err.Error())
		return
	}
	jr := app.ImportRequest{Export: req.Export, Archive: req.Archive, Target: req.Target, DryRun: req.DryRun,
		Migration: req.Migration, AllowNonEmpty: req.ForceNonEmpty, Rooms: req.Rooms}
	v, err := s.Svc.SubmitImport(r.Context(), "", jr, req.Key, c.actor())
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, s.view(r.Context(), v, c))
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request, c caller) {
	j, ok := s.lookup(w, r, app.KindExport)
	if !ok {
		return
	}
	v, err := s.Svc.Verify(r.Context(), "", j.ID, c.actor())
	if err != nil {
		writeError(w, http.StatusConflict, "M_CONFLICT", err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, s.view(r.Context(), v, c))
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, c caller) {
	kind := app.Kind(r.URL.Query().Get("kind"))
	switch kind {
	case "", app.KindExport, app.KindImport, app.KindVerify:
	default:
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", fmt.Sprintf("kind %q: use export, import or verify", kind))
		return
	}
	s.listKind(w, r, c, kind, "jobs")
}

func (s *Server) jobStatus(w http.ResponseWriter, r *http.Request, c caller) {
	if j, ok := s.lookup(w, r, ""); ok {
		writeJSON(w, http.StatusOK, s.view(r.Context(), j, c))
	}
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, c caller) {
	j, ok := s.lookup(w, r, "")
	if !ok {
		return
	}
	v, err := s.Svc.Cancel(r.Context(), j.ID, c.actor())
	if err != nil {
		writeError(w, http.StatusConflict, "M_CONFLICT", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.view(r.Context(), v, c))
}
