package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/store"
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
	jr := jobs.ImportRequest{Export: req.Export, Archive: req.Archive, Target: req.Target, DryRun: req.DryRun,
		Migration: req.Migration, AllowNonEmpty: req.ForceNonEmpty, Rooms: req.Rooms}
	e, err := s.Jobs.SubmitImport(r.Context(), "imp-"+newID(), jr, req.Key, "token:"+c.name, "api")
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, s.view(r.Context(), e, c))
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request, c caller) {
	if _, ok := s.lookup(w, r, store.KindExport); !ok {
		return
	}
	e, err := s.Jobs.SubmitVerify(r.Context(), "ver-"+newID(), r.PathValue("id"), "token:"+c.name, "api")
	if err != nil {
		writeError(w, http.StatusConflict, "M_CONFLICT", err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, s.view(r.Context(), e, c))
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, c caller) {
	kind := r.URL.Query().Get("kind")
	switch kind {
	case "", store.KindExport, store.KindImport, store.KindVerify:
	default:
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", fmt.Sprintf("kind %q: use export, import or verify", kind))
		return
	}
	s.listKind(w, r, c, kind, "jobs")
}

func (s *Server) jobStatus(w http.ResponseWriter, r *http.Request, c caller) {
	if e, ok := s.lookup(w, r, ""); ok {
		writeJSON(w, http.StatusOK, s.view(r.Context(), e, c))
	}
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, c caller) {
	ctx := r.Context()
	id := r.PathValue("id")
	if _, ok := s.lookup(w, r, ""); !ok {
		return
	}
	if err := s.Jobs.Cancel(ctx, id, "token:"+c.name, "api"); err != nil {
		writeError(w, http.StatusConflict, "M_CONFLICT", err.Error())
		return
	}
	e, _ := s.Jobs.Store.GetExport(ctx, id)
	writeJSON(w, http.StatusOK, s.view(ctx, e, c))
}
