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
	isynapse "github.com/ferry-matrix/ferry/importer/synapse"
)

// migrateFlags are bot migrate's options: the source (--from: Synapse by
// default, or Dendrite), the target (--to: Dendrite by default, or
// Synapse), and where (if anywhere) to keep the archive.
type migrateFlags struct {
	e        exportFlags
	from, to string
	where    targetFlags
	opts     importer.Options
	keep     string
	kc       keyChoice
}

// names of the implementations, for messages.
var implName = map[string]string{"synapse": "Synapse", "dendrite": "Dendrite"}

func newMigrateCmd() *cobra.Command {
	var m migrateFlags
	cmd := &cobra.Command{
		Use:   "migrate [--from synapse|dendrite] [--to dendrite|synapse] [source and target options]",
		Short: "Move a server into a stopped homeserver of another implementation in one step",
		Long: `Migrate moves a Synapse server into a stopped Dendrite v0.15.2 (the default), or a Dendrite server
(--from dendrite --from-config dendrite.yaml) into a stopped Synapse 1.160 (--to synapse --to-db URL
--to-media-store DIR --to-synapse-config homeserver.yaml), of the same server_name, whose databases
the target has initialised and which has no users or rooms: a full, encrypted export (with the
private signing key), validation, the import, the fidelity report, and a suggested section of the
target's config. --migration also carries access tokens and devices, so clients stay logged in.

The archive lives in a temporary directory with a key held in memory, removed at the end, unless
--archive keeps it (then a key delivery is required). To move between machines, run bot export and
bot import instead.`,
		Example: `  bot migrate --db postgres://synapse@db/synapse --media-store /var/lib/synapse/media_store \
    --signing-key /etc/synapse/example.org.signing.key --synapse-config /etc/synapse/homeserver.yaml \
    --config /etc/dendrite/dendrite.yaml --migration
  bot migrate --db postgres://synapse@db/synapse --signing-key example.org.signing.key \
    --config /etc/dendrite/dendrite.yaml --dry-run --archive move.ferry --recipient age1...
  bot migrate --from dendrite --from-config /etc/dendrite/dendrite.yaml --to synapse \
    --to-db postgres://synapse@localhost/synapse --to-media-store /var/lib/matrix-synapse/media \
    --to-synapse-config /etc/matrix-synapse/homeserver.yaml --migration`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return m.run(cmd.Context(), cmd.OutOrStdout()) },
	}
	fs := cmd.Flags()
	m.e.addFlags(fs, false)
	m.where.addFlags(fs)
	fs.StringVar(&m.from, "from", "synapse", "the source's implementation: synapse or dendrite")
	fs.StringVar(&m.e.dendriteConfig, "from-config", "", "Dendrite source: its `dendrite.yaml` (databases, media and key are read from it)")
	fs.StringVar(&m.to, "to", "dendrite", "the target's implementation: dendrite or synapse")
	fs.StringVar(&m.where.db, "to-db", "", "Synapse target: PostgreSQL `URL` of its database, initialised by Synapse 1.160 and holding no users, rooms or media yet")
	fs.StringVar(&m.where.mediaStore, "to-media-store", "", "Synapse target: its media store `DIR`")
	fs.StringVar(&m.where.synapseConfig, "to-synapse-config", "", "Synapse target: its `homeserver.yaml`")
	fs.StringVar(&m.where.signingKey, "to-signing-key-file", "", "Synapse target: where to write the signing key (`FILE`; default: signing_key_path of its homeserver.yaml)")
	fs.StringVar(&m.where.updateSynapseDatabase, "update-synapse-database", "", "Synapse target: run this `update_synapse_database` with --run-background-updates after the restore")
	fs.BoolVar(&m.opts.DryRun, "dry-run", false, "export and validate, check the target, report what would be imported; write nothing into the target")
	fs.BoolVar(&m.opts.AllowNonEmpty, "force-non-empty", false, "import into a target that already has users or rooms (Dendrite; a Synapse target refuses it)")
	fs.StringVar(&m.keep, "archive", "", "keep the archive at `OUT` (a new directory, bucket URL or FILE.ferry); needs a key delivery")
	m.kc.addFlags(fs)
	m.e.completions(cmd)
	cmd.RegisterFlagCompletionFunc("from", noFiles("synapse", "dendrite"))
	cmd.RegisterFlagCompletionFunc("to", noFiles("dendrite", "synapse"))
	return cmd
}

func (m *migrateFlags) run(ctx context.Context, stdout io.Writer) error {
	e, opts := &m.e, m.opts
	e.impl = m.from
	switch {
	case m.from == m.to:
		return fmt.Errorf("--from %s --to %s: a migration moves a server to another implementation; to restore a server of the same one, use bot export and bot import", m.from, m.to)
	case m.from == "synapse" && e.synapse.Database == "":
		return errors.New("--db (the Synapse database) is required (bot migrate --help shows the options)")
	case m.from == "dendrite" && e.dendriteConfig == "":
		return errors.New("--from-config (the Dendrite source's dendrite.yaml) is required with --from dendrite")
	case m.to == "dendrite" && m.where.config == "":
		return errors.New("--config (the target's dendrite.yaml) is required (bot migrate --help shows the options)")
	case m.to == "synapse" && (m.where.db == "" || m.where.mediaStore == "" || m.where.synapseConfig == ""):
		return errors.New("--to-db, --to-media-store and --to-synapse-config (the target Synapse's database, media store and homeserver.yaml) are required with --to synapse")
	}
	if len(e.rooms) > 0 || len(e.users) > 0 || !e.since.T.IsZero() || !e.until.T.IsZero() {
		return errors.New("a migration moves the whole server: --rooms, --users, --since and --until are for bot export")
	}
	e.o.PrivateServerKey = true // the source's key becomes the target's
	opts.Migration = e.migration
	// The key is kept in memory to read the archive back: the export's
	// wrap hands it over, and wraps it for the kept archive's readers.
	var key keywrap.Key
	var wrapKept func(keywrap.Key, string) ([]byte, error)
	out := m.keep
	if out != "" {
		var err error
		if wrapKept, err = m.kc.resolve(); err != nil {
			return fmt.Errorf("--archive keeps the archive, so it needs a key delivery: %w", err)
		}
		if wrapKept == nil {
			return errors.New("a migration archive holds secrets (password hashes, the signing key): --plaintext is not allowed")
		}
	} else {
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
	ctx = progress.logger().WithContext(ctx)
	target, err := newImportTarget(m.to, m.where)
	if err != nil {
		return err
	}
	src, err := e.open(ctx)
	if err != nil {
		return err
	}
	err = e.export(ctx, src, out, func(k keywrap.Key, id string) ([]byte, error) {
		key = k
		if wrapKept == nil {
			return nil, nil // a temporary archive: no key file
		}
		return wrapKept(k, id)
	}, false)
	src.Close()
	if err != nil {
		return fmt.Errorf("the export from %s failed, before anything was written into %s: %w", implName[m.from], implName[m.to], err)
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
	suggest := idendrite.SuggestConfig
	if m.to == "synapse" {
		suggest = isynapse.SuggestConfig
	}
	suggestion, err := suggest(ctx, r)
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
		return fmt.Errorf("migration stopped before anything was written into %s: the data exported from %s fails validation (%s), "+
			"so the source is at fault (its data, or Ferry's reading of it), not %[1]s. %[4]s", implName[m.to], m.sourceName(), importer.FirstErrors(res.Validation, 3), examine)
	}
	return fmt.Errorf("migration stopped before anything was written into %[1]s: the target (%[2]s) refused the import. "+
		"The %[1]s side is at fault, not the %[3]s data, which was only read: %[4]w", implName[m.to], m.targetWhere(), implName[m.from], err)
}

// sourceName says what the migration reads, for messages.
func (m *migrateFlags) sourceName() string {
	if m.from == "dendrite" {
		return "the Dendrite server"
	}
	return "the Synapse database"
}

// targetWhere names the target by its config file.
func (m *migrateFlags) targetWhere() string {
	if m.to == "synapse" {
		return m.where.synapseConfig
	}
	return m.where.config
}
