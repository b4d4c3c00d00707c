package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/importer"
	idendrite "github.com/ferry-matrix/ferry/importer/dendrite"
)

const migrateUsage = `usage: bot migrate --db postgres://... --signing-key FILE [--media-store DIR|URL] [--synapse-config homeserver.yaml]
         --config dendrite.yaml [--migration] [--dry-run] [--force-non-empty] [--helper PATH]
         [--archive OUT (--recipient age1...|ssh-ed25519 ... | --recipients-file F | --passphrase-env VAR)]
Moves a Synapse server into a stopped Dendrite v0.15.2 of the same server_name, whose databases
Dendrite has initialised and which has no users or rooms: a full, encrypted export (with the private
signing key), validation, the import, the fidelity report, and a suggested dendrite.yaml section.
--migration also carries access tokens and devices, so clients stay logged in.
The archive lives in a temporary directory with a key held in memory, unless --archive keeps it
(then a key delivery is required). To move between machines, run bot export and bot import instead.`

func runMigrate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	var e exportFlags
	e.register(fs, false)
	var where targetFlags
	fs.StringVar(&where.config, "config", "", "the target's dendrite.yaml")
	fs.StringVar(&where.helper, "helper", "", "the ferry-dendrite-import helper binary")
	var opts importer.Options
	fs.BoolVar(&opts.DryRun, "dry-run", false, "export and validate, check the target, report what would be imported; write nothing into the target")
	fs.BoolVar(&opts.AllowNonEmpty, "force-non-empty", false, "import into a target that already has users or rooms")
	keep := fs.String("archive", "", "keep the archive here (a new directory, bucket URL or FILE.ferry)")
	var kc keyChoice
	kc.register(fs)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, migrateUsage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v\n%s", fs.Args(), migrateUsage)
	}
	if where.config == "" || e.synapse.Database == "" {
		return fmt.Errorf("--db (the Synapse database) and --config (the target's dendrite.yaml) are required\n%s", migrateUsage)
	}
	if len(e.rooms) > 0 || len(e.users) > 0 || !e.since.T.IsZero() || !e.until.T.IsZero() {
		return errors.New("a migration moves the whole server: --rooms, --users, --since and --until are for bot export")
	}
	e.o.PrivateServerKey = true // the Synapse key becomes Dendrite's
	opts.Migration = e.migration
	var key keywrap.Key
	var wrap func(string) ([]byte, error)
	out := *keep
	if out != "" {
		var err error
		if key, wrap, err = kc.resolve(); err != nil {
			return fmt.Errorf("--archive keeps the archive, so it needs a key delivery: %w", err)
		}
		if key.IsZero() {
			return errors.New("a migration archive holds secrets (password hashes, the signing key): --plaintext is not allowed")
		}
	} else {
		key = keywrap.New() // in memory only
		tmp, err := os.MkdirTemp("", "ferry-migrate-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		out = tmp + "/archive"
	}
	if err := e.resolve(true); err != nil {
		return err
	}
	progress := newImportProgress(os.Stderr, e.quiet)
	target, err := newImportTarget("dendrite", where, progress.logf)
	if err != nil {
		return err
	}
	src, err := e.open(ctx)
	if err != nil {
		return err
	}
	err = e.export(ctx, src, out, key, wrap)
	src.Close()
	if err != nil {
		return err
	}
	var oo archive.OpenOptions
	oo.Key = key
	r, err := archive.OpenLocation(ctx, out, oo)
	if err != nil {
		return err
	}
	defer r.Close()
	res, err := importer.Run(ctx, target, r, opts, progress)
	progress.end()
	if res != nil && (err == nil || res.Validation != nil && !res.Validation.OK()) {
		printImport(os.Stdout, r.Manifest(), res, opts.DryRun)
	}
	if err != nil {
		return err
	}
	suggestion, err := idendrite.SuggestConfig(ctx, r)
	if err != nil {
		return err
	}
	fmt.Print(suggestion)
	return nil
}
