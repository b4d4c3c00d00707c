package archive

import (
	"errors"
	"fmt"
)

// FormatError reports that an archive is damaged or not what it claims to be.
// File is the path inside the archive (or the part/object name) and Offset the
// byte offset within it where the problem was found, -1 when not applicable.
type FormatError struct {
	File   string
	Offset int64
	Reason string
	Err    error
}

func (e *FormatError) Error() string {
	where := e.File
	if where == "" {
		where = "archive"
	}
	if e.Offset >= 0 {
		where = fmt.Sprintf("%s at offset %d", where, e.Offset)
	}
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", where, e.Reason, e.Err)
	}
	return fmt.Sprintf("%s: %s", where, e.Reason)
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(file string, offset int64, reason string, err error) error {
	return &FormatError{File: file, Offset: offset, Reason: reason, Err: err}
}

// Sentinels callers branch on. They are wrapped, so use errors.Is.
var (
	// ErrUnsupportedVersion: the archive's format major version is newer than
	// this reader understands.
	ErrUnsupportedVersion = errors.New("unsupported archive format version")
	// ErrIncomplete: the archive has no final part (the export was interrupted
	// or is still running).
	ErrIncomplete = errors.New("archive is incomplete")
	// ErrSensitiveInPlaintext: a record carries a secret but the archive is
	// not encrypted.
	ErrSensitiveInPlaintext = errors.New("sensitive data in a plaintext archive")
)
