package exporter_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/source"
)

// dirDestination stages and "publishes" in one directory.
type dirDestination struct {
	t       *testing.T
	dir     string
	wrapped []byte
}

func (d *dirDestination) Stage(context.Context, string) (container.Sink, error) {
	return newStore(d.t, d.dir), nil
}
func (d *dirDestination) WriteKey(_ context.Context, _ string, wrapped []byte) error {
	d.wrapped = wrapped
	return nil
}
func (d *dirDestination) Publish(context.Context, string) (exporter.Published, error) {
	return exporter.Published{Location: d.dir}, nil
}

// Run resumes an interrupted export from its checkpointer's state: the
// same archive ID and key, the source continued from its cursor, the key
// wrapped again; and refuses to continue an encrypted archive as a
// plaintext one.
func TestRunResumes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var key keywrap.Key
	plan, err := exporter.NewPlan(exporter.Selection{}, source.Options{}, "", true)
	if err != nil {
		t.Fatal(err)
	}
	wraps := 0
	plan.Wrap = func(k keywrap.Key, id string) ([]byte, error) { key = k; wraps++; return k.Encode(id), nil }
	plan.PartSize = 8 << 10
	cp := &exporter.FileCheckpointer{Path: filepath.Join(dir, "checkpoint.json"), Plan: "test"}
	src := &fakeSource{users: 2000, onRecord: func(i int) error {
		if i == 1234 {
			return errCrash
		}
		return nil
	}}
	dst := &dirDestination{t: t, dir: filepath.Join(dir, "archive")}
	if _, err := exporter.Run(ctx, plan, src, dst, cp, nil); !errors.Is(err, errCrash) {
		t.Fatalf("first run: %v", err)
	}
	first := key

	plain := plan
	plain.Wrap = nil
	if _, err := exporter.Run(ctx, plain, src, dst, cp, nil); !errors.Is(err, exporter.ErrPermanent) {
		t.Fatalf("an encrypted export resumed as a plaintext one: %v", err)
	}

	src.onRecord = nil
	res, err := exporter.Run(ctx, plan, src, dst, cp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || wraps != 2 || string(key.Bytes()) != string(first.Bytes()) || res.Records != 2000 {
		t.Fatalf("not resumed with the same key, or its records not counted on from the checkpoint: resumed %v, %d wraps, %d records", res.Resumed, wraps, res.Records)
	}
	r, err := archive.OpenLocation(ctx, dst.dir, archive.OpenOptions{KeyFile: dst.wrapped})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Manifest().ArchiveID != res.ArchiveID || r.Manifest().Export.Type != exporter.TypeFull {
		t.Errorf("manifest %+v", r.Manifest())
	}
	if rep, err := archive.Validate(ctx, r); err != nil || !rep.OK() || rep.Records != res.ArchiveRecords || res.ArchiveRecords <= res.Records {
		// The archive holds the 2,000 streamed users and more (an
		// omission, the media index): the export counts them as verify does.
		t.Fatalf("resumed archive: the export says %d records (%d streamed): %v %+v", res.ArchiveRecords, res.Records, err, rep)
	}
	if st, err := cp.Load(ctx); err != nil || st != nil {
		t.Errorf("the checkpoint is left after publishing: %+v %v", st, err)
	}
}

// NewPlan holds every caller to the same rules.
func TestNewPlan(t *testing.T) {
	for _, c := range []struct {
		sel       exporter.Selection
		o         source.Options
		personal  string
		encrypted bool
		ok        bool
	}{
		{exporter.Selection{}, source.Options{}, "", false, true},
		{exporter.Selection{Type: "partial"}, source.Options{}, "", true, false},
		{exporter.Selection{}, source.Options{AccessTokens: true}, "", false, false},
		{exporter.Selection{}, source.Options{AccessTokens: true}, "", true, true},
		{exporter.Selection{Rooms: []string{"!r:x"}}, source.Options{}, "@u:x", true, false},
		{exporter.Selection{}, source.Options{OneTimeKeys: true}, "@u:x", true, false},
		{exporter.Selection{}, source.Options{}, "@u:x", true, true},
	} {
		p, err := exporter.NewPlan(c.sel, c.o, c.personal, c.encrypted)
		if (err == nil) != c.ok {
			t.Errorf("%+v %+v %q encrypted %v: %v", c.sel, c.o, c.personal, c.encrypted, err)
		}
		if err == nil && c.personal != "" && p.Type() != exporter.TypeUser {
			t.Errorf("personal plan of type %s", p.Type())
		}
	}
}
