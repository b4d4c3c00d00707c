package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/importer"
	idendrite "github.com/ferry-matrix/ferry/importer/dendrite"
)

// migrateFlags are bot migrate's options: a Synapse source, a Dendrite
// target, and where (if anywhere) to keep the archive.
type migrateFlags struct {
	e     exportFlags
	where targetFlags
	opts  importer.Options
	keep  string
	kc    keyChoice
}

func newMigrateCmd() *cobra.Command {
	var m migrateFlags
	cmd := &cobra.Command{
		Use:   "migrate --db URL --signing-key FILE --config dendrite.yaml",
		Short: "Move a Synapse server into a stopped Dendrite in one step",
		Long: `Migrate moves a Synapse server into a stopped Dendrite v0.15.2 of the same server_name, whose
databases Dendrite has initialised and which has no users or rooms: a full, encrypted export (with
the private signing key), validation, the import, the fidelity report, and a suggested dendrite.yaml
section. --migration also carries access tokens and devices, so clients stay logged in.

The archive lives in a temporary directory with a key held in memory, removed at the end, unless
--archive keeps it (then a key delivery is required). To move between machines, run bot export and
bot import instead.`,
		Example: `  bot migrate --db postgres://synapse@db/synapse --media-store /var/lib/synapse/media_store \
    --signing-key /etc/synapse/example.org.signing.key --synapse-config /etc/synapse/homeserver.yaml \
    --config /etc/dendrite/dendrite.yaml --migration
  bot migrate --db postgres://synapse@db/synapse --signing-key example.org.signing.key \
    --config /etc/dendrite/dendrite.yaml --dry-run --archive move.ferry --recipient age1...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return m.run(cmd.Context(), cmd.OutOrStdout()) },
	}
	fs := cmd.Flags()
	m.e.addFlags(fs, false)
	m.where.addFlags(fs)
	fs.BoolVar(&m.opts.DryRun, "dry-run", false, "export and validate, check the target, report what would be imported; write nothing into the target")
	fs.BoolVar(&m.opts.AllowNonEmpty, "force-non-empty", false, "import into a target that already has users or rooms")
	fs.StringVar(&m.keep, "archive", "", "keep the archive at `OUT` (a new directory, bucket URL or FILE.ferry); needs a key delivery")
	m.kc.addFlags(fs)
	m.e.completions(cmd)
	return cmd
}

func (m *migrateFlags) run(ctx context.Context, stdout io.Writer) error {
	e, opts := &m.e, m.opts
	if m.where.config == "" || e.synapse.Database == "" {
		return errors.New("--db (the Synapse database) and --config (the target's dendrite.yaml) are required (bot migrate --help shows the options)")
	}
	if len(e.rooms) > 0 || len(e.users) > 0 || !e.since.T.IsZero() || !e.until.T.IsZero() {
		return errors.New("a migration moves the whole server: --rooms, --users, --since and --until are for bot export")
	}
	e.o.PrivateServerKey = true // the Synapse key becomes Dendrite's
	opts.Migration = e.migration
	var key keywrap.Key
	var wrap func(string) ([]byte, error)
	out := m.keep
	if out != "" {
		var err error
		if key, wrap, err = m.kc.resolve(); err != nil {
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
	target, err := newImportTarget("dendrite", m.where, progress.logf)
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
		return fmt.Errorf("the export from the Synapse database failed, before anything was written into Dendrite: %w", err)
	}
	r, err := archive.OpenLocation(ctx, out, archive.OpenOptions{Key: key})
	if err != nil {
		return err
	}
	defer r.Close()
	res, err := importer.Run(ctx, target, r, opts, progress)
	progress.end()
	if res != nil && (err == nil || res.Validation != nil && !res.Validation.OK()) {
		printImport(stdout, r.Manifest(), res, target.Capabilities(), opts.DryRun)
	}
	if err != nil {
		return m.refusal(res, err)
	}
	suggestion, err := idendrite.SuggestConfig(ctx, r)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, suggestion)
	return nil
}

// refusal says which side stopped a migration, and what to do: the
// archive was exported from the Synapse database moments before, so a
// validation failure is the source data's (Dendrite is untouched), and a
// refusal after validation is the target's.
func (m *migrateFlags) refusal(res *importer.Result, err error) error {
	if !errors.Is(err, importer.ErrRefused) {
		return err
	}
	if res != nil && res.Validation != nil && !res.Validation.OK() {
		examine := "The archive was temporary and is removed: to examine it, run bot migrate again with --archive OUT " +
			"and a key (--recipient or --passphrase-env), then bot archive verify OUT"
		if m.keep != "" {
			examine = fmt.Sprintf("The archive is kept: bot archive verify %s lists every problem", m.keep)
		}
		return fmt.Errorf("migration stopped before anything was written into Dendrite: the data exported from the Synapse database fails validation (%s), "+
			"so the source is at fault (its data, or Ferry's reading of it), not Dendrite. %s", importer.FirstErrors(res.Validation, 3), examine)
	}
	return fmt.Errorf("migration stopped before anything was written into Dendrite: the target (%s) refused the import. "+
		"The Dendrite side is at fault, not the Synapse data, which was only read: %w", m.where.config, err)
}
