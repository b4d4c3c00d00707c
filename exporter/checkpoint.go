package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferry-matrix/ferry/archive/keywrap"
)

// FileCheckpointer keeps an export's resume state in one file (bot
// export's, beside its output), so that the same command run again after
// an interruption continues the same archive. The file holds the archive
// key until the export is published, so it is written 0600 and removed
// by Done; an export abandoned for good should remove it too.
type FileCheckpointer struct {
	Path string
	// Plan identifies what is exported and for whom (the selection,
	// options and key delivery, as the caller words them): a state left
	// by a different export is refused instead of resumed.
	Plan string
	st   *fileState // as last read or written
}

// fileState is the file's content.
type fileState struct {
	Plan       string `json:"plan"`
	ArchiveID  string `json:"archive_id"`
	KeyLine    string `json:"key,omitempty"` // keywrap's key line; empty: plaintext
	Checkpoint []byte `json:"checkpoint,omitempty"`
}

// ErrOtherExport: the checkpoint file was left by an export of something else.
var ErrOtherExport = errors.New("the interrupted export there was of something else")

func (f *FileCheckpointer) read() (*fileState, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st fileState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s is not a checkpoint Ferry wrote: %w (remove it to start afresh)", f.Path, err)
	}
	return &st, nil
}

func (f *FileCheckpointer) write(st *fileState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), filepath.Base(f.Path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.Path)
}

// Load returns the state of an interrupted run of the same export.
func (f *FileCheckpointer) Load(context.Context) (*Resume, error) {
	st, err := f.read()
	if err != nil || st == nil {
		return nil, err
	}
	if st.Plan != f.Plan {
		return nil, fmt.Errorf("%w (its checkpoint is %s): run it again as it was, or remove that file (and what the export wrote) to start afresh", ErrOtherExport, f.Path)
	}
	f.st = st
	r := &Resume{ArchiveID: st.ArchiveID, Checkpoint: st.Checkpoint}
	if st.KeyLine != "" {
		if r.Key, err = keywrap.Decode([]byte(st.KeyLine), st.ArchiveID); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	return r, nil
}

// Start records a new archive's ID and key.
func (f *FileCheckpointer) Start(_ context.Context, archiveID string, key keywrap.Key) error {
	st := &fileState{Plan: f.Plan, ArchiveID: archiveID}
	if !key.IsZero() {
		st.KeyLine = string(key.Encode(archiveID))
	}
	if err := f.write(st); err != nil {
		return err
	}
	f.st = st
	return nil
}

// Save records the writer's checkpoint.
func (f *FileCheckpointer) Save(_ context.Context, checkpoint []byte) error {
	if f.st == nil {
		return errors.New("FileCheckpointer: Save before Start or Load")
	}
	st := *f.st
	st.Checkpoint = checkpoint
	if err := f.write(&st); err != nil {
		return err
	}
	f.st = &st
	return nil
}

// Done removes the file.
func (f *FileCheckpointer) Done(context.Context) error {
	if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
