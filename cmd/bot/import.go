package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer"
	idendrite "github.com/ferry-matrix/ferry/importer/dendrite"
	isynapse "github.com/ferry-matrix/ferry/importer/synapse"
	"github.com/ferry-matrix/ferry/internal/flagvalue"
)

func newImportCmd() *cobra.Command {
	var kind string
	var where targetFlags
	var opts importer.Options
	var rooms flagvalue.List
	var keys keyFlags
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:   "import --target dendrite|synapse [target options] ARCHIVE",
		Short: "Import an archive into a stopped, empty Dendrite or Synapse",
		Long: `Import writes ARCHIVE into a stopped homeserver of the archive's server_name that has no users or
rooms. Everything is checked before the first write: the archive is validated, the target checked,
and what the target cannot hold is previewed. An interrupted import run again continues where it
stopped; --dry-run checks and reports only. --migration (encrypted migration exports only) keeps
devices and access tokens: clients stay logged in. The key options are those of bot archive.

Dendrite v0.15.2 (--config): its databases initialised by Dendrite (start it once, then stop it).
Synapse 1.160 (--db, --media-store, --synapse-config): a database that Synapse's
update_synapse_database --database-config homeserver.yaml initialised and no Synapse has served;
the restore writes the tables directly and Synapse rebuilds its search index, auth chains, user
directory and room stats (--update-synapse-database runs that before Synapse starts). This is
disaster recovery: a whole server back from its archive. With --rooms, rooms deleted from a Synapse
(the delete-room admin API) come back from a full archive into that same Synapse, stopped, which
keeps everything else it holds.`,
		Example: `  bot import --target dendrite --config /etc/dendrite/dendrite.yaml --identity id.txt --dry-run move.ferry
  bot import --target dendrite --config /etc/dendrite/dendrite.yaml --identity id.txt --migration move.ferry
  bot import --target synapse --db postgres://synapse@localhost/synapse --media-store /var/lib/matrix-synapse/media \
    --synapse-config /etc/matrix-synapse/homeserver.yaml --identity id.txt --migration backup.ferry
  bot import --target synapse --db postgres://synapse@localhost/synapse --media-store /var/lib/matrix-synapse/media \
    --synapse-config /etc/matrix-synapse/homeserver.yaml --identity id.txt --rooms '!abc:example.org' last-night.ferry`,
		Args: takes(1, "ARCHIVE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Rooms = rooms
			return runImport(cmd.Context(), cmd.OutOrStdout(), kind, where, opts, &keys, asJSON, quiet, args[0])
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&kind, "target", "dendrite", "homeserver implementation to import into: dendrite or synapse")
	where.addFlags(fs)
	where.addSynapseFlags(fs)
	fs.BoolVar(&opts.DryRun, "dry-run", false, "validate the archive, check the target and report what would be imported; write nothing")
	fs.BoolVar(&opts.Migration, "migration", false, "keep devices and access tokens (encrypted archives exported with access tokens)")
	fs.BoolVar(&opts.AllowNonEmpty, "force-non-empty", false, "import into a target that already has users or rooms (Dendrite; a Synapse target refuses it: use --rooms)")
	fs.Var(&rooms, "rooms", "import only these rooms (comma-separated room `IDs`). Dendrite: users, account data and media are still imported. Synapse: restores rooms deleted from an existing, stopped Synapse, from a full archive (docs/SYNAPSE-RESTORE.md)")
	fs.BoolVar(&opts.Unblock, "unblock", false, "Synapse, with --rooms: lift the target's block on a room being restored")
	keys.addFlags(fs)
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines")
	cmd.RegisterFlagCompletionFunc("target", noFiles("dendrite", "synapse"))
	return cmd
}

func runImport(ctx context.Context, out io.Writer, kind string, where targetFlags, opts importer.Options, keys *keyFlags, asJSON, quiet bool, loc string) error {
	progress := newImportProgress(os.Stderr, quiet)
	ctx = progress.logger().WithContext(ctx)
	target, err := newImportTarget(kind, where)
	if err != nil {
		return err
	}
	r, err := keys.open(ctx, loc)
	if err != nil {
		return fmt.Errorf("import refused before any write: %w", err)
	}
	defer r.Close()
	res, err := importer.Run(ctx, target, r, opts, progress)
	progress.end()
	if res != nil && (err == nil || res.Validation != nil && !res.Validation.OK()) {
		if asJSON {
			if perr := writeJSON(out, res); perr != nil && err == nil {
				err = perr
			}
		} else {
			printImport(out, r.Manifest(), res, target.Capabilities(), opts.DryRun)
		}
	}
	return err
}

// targetFlags say where an import target lives: bot import's flags, and
// an import_targets entry of the config.
type targetFlags struct {
	config string // the target's config file (dendrite.yaml)
	helper string // Dendrite: the ferry-dendrite-import binary
	// Synapse: its database, media store, homeserver.yaml, and the
	// update_synapse_database that runs its background updates.
	db, mediaStore, synapseConfig, signingKey, updateSynapseDatabase string
}

func (t *targetFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&t.config, "config", "", "Dendrite: the target's `dendrite.yaml`")
	fs.StringVar(&t.helper, "helper", "", "Dendrite: the ferry-dendrite-import helper binary (`PATH`; default: beside bot, $FERRY_DENDRITE_IMPORT, or $PATH)")
}

// addSynapseFlags adds the Synapse target's flags (bot import only: bot
// migrate's --db and --media-store name its Synapse source).
func (t *targetFlags) addSynapseFlags(fs *pflag.FlagSet) {
	fs.StringVar(&t.db, "db", "", "Synapse: PostgreSQL `URL` of the target database, initialised by Synapse 1.160 (update_synapse_database) and holding no users, rooms or media yet; with --rooms, the Synapse the rooms were deleted from")
	fs.StringVar(&t.mediaStore, "media-store", "", "Synapse: the target's media store `DIR` (media_store_path)")
	fs.StringVar(&t.synapseConfig, "synapse-config", "", "Synapse: the target's `homeserver.yaml` (server_name, pid_file and signing_key_path are used)")
	fs.StringVar(&t.signingKey, "signing-key-file", "", "Synapse: where to write the archive's signing key (`FILE`; default: signing_key_path of --synapse-config, which is a path inside the container when Synapse runs in one)")
	fs.StringVar(&t.updateSynapseDatabase, "update-synapse-database", "", "Synapse: run this `update_synapse_database` with --run-background-updates after the restore, as its own phase (default: Synapse runs them when it starts)")
}

// newImportTarget makes the import target of implementation kind: the one
// place that names the implementations (a new one is a new case). The
// target's own lines (its helper's, for Dendrite) go to the logger of the
// context its methods are called with.
func newImportTarget(kind string, where targetFlags) (importer.Target, error) {
	switch kind {
	case "dendrite":
		if where.config == "" && (where.db != "" || where.mediaStore != "" || where.synapseConfig != "") {
			return nil, errors.New("--db, --media-store and --synapse-config name a Synapse target: add --target synapse (the default target is dendrite)")
		}
		if where.config == "" {
			return nil, errors.New("--config (the target's dendrite.yaml) is required for --target dendrite, the default; for Synapse, give --target synapse")
		}
		return idendrite.NewTarget(idendrite.Config{ConfigPath: where.config, Helper: where.helper}), nil
	case "synapse":
		if where.db == "" || where.mediaStore == "" || where.synapseConfig == "" {
			return nil, errors.New("--db (the target database), --media-store and --synapse-config (its homeserver.yaml) are required for --target synapse")
		}
		cfg := isynapse.Config{Database: where.db, MediaStore: where.mediaStore, HomeserverConfig: where.synapseConfig, SigningKey: where.signingKey}
		if bin := where.updateSynapseDatabase; bin != "" {
			cfg.RunBackgroundUpdates = func(ctx context.Context) error {
				out, err := exec.CommandContext(ctx, bin, "--database-config", where.synapseConfig, "--run-background-updates").CombinedOutput()
				if err != nil {
					return fmt.Errorf("%s --run-background-updates: %w\n%s", bin, err, tail(out, 2000))
				}
				return nil
			}
		}
		return isynapse.NewTarget(cfg), nil
	}
	return nil, fmt.Errorf("--target %q: dendrite and synapse are supported", kind)
}

// tail is the last n bytes of out.
func tail(out []byte, n int) []byte {
	if len(out) > n {
		return out[len(out)-n:]
	}
	return out
}

// printImport prints an import's result: the section table (with a note
// where the target's count differs from the archive's), the fidelity
// report, the files written, advice and notes.
func printImport(w io.Writer, m *archive.Manifest, res *importer.Result, caps *fidelity.Target, dry bool) {
	if res.Validation != nil && !res.Validation.OK() {
		printValidation(w, m, res.Validation)
	}
	if res.InArchive == nil {
		return
	}
	verb := "imported"
	if dry {
		verb = "would import"
		var users, rooms int64
		if res.Target != nil {
			users, rooms = res.Target.Users, res.Target.Rooms
		}
		fmt.Fprintf(w, "dry run: the target holds %d users and %d rooms; nothing was written\n", users, rooms)
	}
	// A dry run counts no target: its table has no target column.
	if res.InTarget == nil {
		fmt.Fprintf(w, "%-32s %12s\n", "section", "in archive")
	} else {
		fmt.Fprintf(w, "%-32s %12s %12s\n", "section", "in archive", "in target")
	}
	for _, s := range sortedSections(res.InArchive) {
		if res.InTarget == nil {
			fmt.Fprintf(w, "%-32s %12d\n", s, res.InArchive[s])
			continue
		}
		line := fmt.Sprintf("%-32s %12d %12d", s, res.InArchive[s], res.InTarget[s])
		if res.InTarget[s] != res.InArchive[s] {
			if note := caps.CountNote(s); note != "" {
				line += "  " + note
			}
		}
		fmt.Fprintln(w, line)
	}
	if res.Skipped > 0 {
		fmt.Fprintf(w, "%d items were already in the target (a rerun) and were skipped\n", res.Skipped)
	}
	if res.Report != nil {
		fmt.Fprint(w, res.Report)
	}
	if len(res.Files) > 0 {
		fmt.Fprintln(w, "Files written or replaced:")
		for _, f := range res.Files {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	if res.ConfigAdvice != "" {
		fmt.Fprintf(w, "Add to the target's config file by hand:\n%s", indent(res.ConfigAdvice, "  "))
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "Note: %s\n", n)
	}
	if !dry && res.InTarget != nil {
		name := "the homeserver"
		if res.Target != nil && res.Target.Name != "" {
			name = strings.Fields(res.Target.Name)[0] // "Dendrite v0.15.2": Dendrite
		}
		fmt.Fprintf(w, "%s %s; start %s on it\n", verb, m.ArchiveID, name)
	}
}

// importProgress prints an import's phases and the helper's lines on
// stderr, and in a phase of known size its count and an ETA: a live line
// on a terminal, a line every 5 s elsewhere (a log file, a job's progress
// through out).
type importProgress struct {
	out   func(line string, live bool)
	quiet bool
	// the current phase
	name        string
	total, done int64
	started     time.Time
	last        time.Time // when a count was last shown
	shown       bool      // a count was shown in this phase
	live        bool      // a live line is drawn
	terminal    bool      // stderr is one: live lines
}

func newImportProgress(w *os.File, quiet bool) *importProgress {
	st, err := w.Stat()
	p := &importProgress{quiet: quiet, terminal: err == nil && st.Mode()&os.ModeCharDevice != 0}
	p.out = func(line string, live bool) {
		switch {
		case live:
			fmt.Fprintf(w, "\r\033[K%s", line)
		case p.live:
			fmt.Fprintf(w, "\r\033[K%s\n", line)
		default:
			fmt.Fprintln(w, line)
		}
		p.live = live
	}
	return p
}

func (p *importProgress) Phase(name string, total int64) {
	p.end()
	now := time.Now()
	p.name, p.total, p.done, p.started, p.last, p.shown = name, total, 0, now, now, false
	if !p.quiet {
		p.out(name, false)
	}
}

func (p *importProgress) Add(n int64) {
	p.done += n
	if p.quiet || p.total <= 0 {
		return
	}
	now := time.Now()
	every := 5 * time.Second
	if p.terminal {
		every = 200 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last, p.shown = now, true
	p.out(p.count(now), p.terminal)
}

// count is "importing events: 1200/5000 (24%), ETA 3m10s".
func (p *importProgress) count(now time.Time) string {
	frac := float64(p.done) / float64(p.total)
	line := fmt.Sprintf("%s: %d/%d (%.0f%%)", p.name, p.done, p.total, 100*frac)
	if frac > 0 && frac < 1 {
		eta := time.Duration(float64(now.Sub(p.started)) * (1 - frac) / frac)
		line += ", ETA " + eta.Round(time.Second).String()
	}
	return line
}

// end closes a phase of known size with its final count, when progress
// was shown for it.
func (p *importProgress) end() {
	if p.shown {
		p.out(fmt.Sprintf("%s: %d/%d", p.name, p.done, p.total), false)
	}
	p.total, p.shown = 0, false
}

// logger is the import's logger on the command line: the target's own
// lines (info and above) printed between the progress lines, message
// first, as a person reads them; nothing with --quiet.
func (p *importProgress) logger() zerolog.Logger {
	if p.quiet {
		return zerolog.Nop()
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: lineWriter(func(line string) { p.out(line, false) }),
		NoColor: true, PartsOrder: []string{zerolog.MessageFieldName}, FieldsExclude: []string{"component"}}).Level(zerolog.InfoLevel)
}

// lineWriter hands each write (one log line) on without its newline.
type lineWriter func(string)

func (w lineWriter) Write(b []byte) (int, error) {
	w(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func sortedSections(m map[string]int64) []string { return slices.Sorted(maps.Keys(m)) }

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}
