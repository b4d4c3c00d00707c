package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/config"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/internal/flagvalue"
	"github.com/ferry-matrix/ferry/internal/human"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sources"
	"github.com/ferry-matrix/ferry/source/synapse"
	"github.com/ferry-matrix/ferry/store"
)

// keyChoice is how an export's key is delivered.
type keyChoice struct {
	recipients    flagvalue.List
	recipientFile string
	passphraseEnv string
	plaintext     bool
}

func (k *keyChoice) addFlags(fs *pflag.FlagSet) {
	fs.Var(&k.recipients, "recipient", "age recipient (age1...) or SSH public key (ssh-ed25519 ...) that can open the archive (`RECIPIENT`); repeatable, or comma-separated")
	fs.StringVar(&k.recipientFile, "recipients-file", "", "`FILE` of recipients, one per line")
	fs.StringVar(&k.passphraseEnv, "passphrase-env", "", "name of the environment variable (`VAR`) holding a passphrase that opens the archive (12 characters at least)")
	fs.BoolVar(&k.plaintext, "plaintext", false, "write an unencrypted archive (no secrets in it); for tests and pipelines")
}

// resolve returns the function that wraps an archive's key for its
// readers (exporter.Plan.Wrap), or nil for --plaintext.
func (k *keyChoice) resolve() (func(keywrap.Key, string) ([]byte, error), error) {
	var recips []age.Recipient
	if len(k.recipients) > 0 {
		r, err := keywrap.ParseRecipients(k.recipients)
		if err != nil {
			return nil, err
		}
		recips = append(recips, r...)
	}
	if k.recipientFile != "" {
		r, err := keywrap.ParseRecipientsFile(k.recipientFile)
		if err != nil {
			return nil, err
		}
		recips = append(recips, r...)
	}
	var pass string
	if k.passphraseEnv != "" {
		if pass = os.Getenv(k.passphraseEnv); pass == "" {
			return nil, fmt.Errorf("environment variable %s is empty", k.passphraseEnv)
		}
	}
	switch {
	case k.plaintext && (len(recips) > 0 || pass != ""):
		return nil, errors.New("--plaintext contradicts --recipient/--passphrase-env: choose one")
	case k.plaintext:
		return nil, nil
	case len(recips) > 0 && pass != "":
		return nil, errors.New("use either recipients or a passphrase, not both")
	case len(recips) > 0:
		return func(key keywrap.Key, id string) ([]byte, error) { return keywrap.Wrap(key, id, recips...) }, nil
	case pass != "":
		return func(key keywrap.Key, id string) ([]byte, error) { return keywrap.WrapPassphrase(key, id, pass, 18) }, nil
	}
	return nil, errors.New("no key delivery chosen: pass --recipient age1... (or ssh-ed25519 ...), --passphrase-env VAR, or --plaintext")
}

// exportFlags are the flags that choose a source and what to export, shared
// by bot export and bot migrate.
type exportFlags struct {
	impl, dendriteConfig string
	synapse              synapse.Config
	migration            bool
	media                string
	sel                  exporter.Selection // resolve's
	rooms, users         flagvalue.List
	since, until         flagvalue.Time
	o                    source.Options
	quiet                bool
	partSize             int64         // archive parts (0: the writer's default); tests set it
	result               *exportResult // of the last export
}

func (e *exportFlags) addFlags(fs *pflag.FlagSet, dendriteSource bool) {
	if dendriteSource {
		fs.StringVar(&e.impl, "source", "synapse", "homeserver implementation: synapse or dendrite")
		fs.StringVar(&e.dendriteConfig, "config", "", "the server's `dendrite.yaml`, for --source dendrite (its databases, media and key are read from it)")
	} else {
		e.impl = "synapse"
	}
	fs.BoolVar(&e.migration, "migration", false, "a migration export: --access-tokens and --private-server-key, what bot import --migration needs")
	fs.StringVar(&e.synapse.Database, "db", "", "PostgreSQL `URL` of the Synapse database, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (a read-only role is enough)")
	fs.StringVar(&e.synapse.MediaStore, "media-store", "", "Synapse's media store: a directory (media_store_path) or a bucket URL (`DIR|URL`)")
	fs.StringVar(&e.synapse.SigningKey, "signing-key", "", "the server's signing key `FILE` (signing_key_path)")
	fs.StringVar(&e.synapse.HomeserverConfig, "synapse-config", "", "Synapse's `homeserver.yaml` (exported with secrets handled; old keys and pepper are read from it)")
	fs.Var(&e.rooms, "rooms", "export only these rooms (comma-separated room `IDs`; repeatable)")
	fs.Var(&e.users, "users", "export only these users' data (comma-separated user `IDs`; and, without --rooms, their rooms)")
	fs.Var(&e.since, "since", "events at or after this `TIME`: a date (2026-11-23) or RFC 3339")
	fs.Var(&e.until, "until", "events before this `TIME`: a date (2026-11-23) or RFC 3339")
	fs.StringVar(&e.media, "media", "", "which media files (`MODE`): all, referenced (only what exported events use) or none; default all for full exports, referenced for partial ones")
	fs.BoolVar(&e.o.AccessTokens, "access-tokens", false, "include device access tokens (migrations; encrypted archives only)")
	fs.BoolVar(&e.o.OneTimeKeys, "one-time-keys", false, "include unclaimed e2ee one-time keys")
	fs.BoolVar(&e.o.RedactedOriginals, "redacted-originals", false, "include the original content of redacted events (admin only; encrypted archives only)")
	fs.BoolVar(&e.o.PrivateServerKey, "private-server-key", false, "include the server's private signing key (encrypted archives only)")
	fs.BoolVar(&e.quiet, "quiet", false, "no progress or summary on stderr, only warnings and errors (--json still prints its result)")
}

// completions completes the values of the export options that have a
// fixed set.
func (e *exportFlags) completions(cmd *cobra.Command) {
	cmd.RegisterFlagCompletionFunc("source", noFiles("synapse", "dendrite"))
	cmd.RegisterFlagCompletionFunc("media", noFiles("all", "referenced", "none"))
}

// resolve completes the selection and options from the flags, and
// refuses up front, with the message chat and the API give, a selection
// the source cannot export.
func (e *exportFlags) resolve(encrypted bool) error {
	if e.migration {
		e.o.AccessTokens, e.o.PrivateServerKey = true, true
	}
	e.sel = exporter.Selection{Rooms: e.rooms, Users: e.users, Since: e.since.T, Until: e.until.T, Media: e.media}
	if err := e.sel.Validate(); err != nil {
		return err
	}
	caps, err := sources.Capabilities(e.impl)
	if err != nil {
		return fmt.Errorf("--%w", err)
	}
	if err := e.sel.Check(caps); err != nil {
		return err
	}
	if !encrypted && (e.o.AccessTokens || e.o.RedactedOriginals || e.o.PrivateServerKey) {
		return errors.New("--access-tokens, --redacted-originals, --private-server-key and --migration need an encrypted archive (drop --plaintext)")
	}
	return nil
}

// open opens the chosen source (resolve has checked its name).
func (e *exportFlags) open(ctx context.Context) (source.Source, error) {
	switch {
	case e.impl == sources.Synapse && e.synapse.Database == "":
		return nil, errors.New("--db is required for a Synapse source: the URL of its PostgreSQL database, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
	case e.impl == sources.Dendrite && e.dendriteConfig == "":
		return nil, errors.New("--config (the server's dendrite.yaml) is required for --source dendrite")
	}
	return sources.Open(ctx, sources.Config{Implementation: e.impl, Synapse: e.synapse, DendriteConfig: e.dendriteConfig})
}

// export writes src into a new archive at out (exporter.Run into an
// outDestination). A resumable export keeps a checkpoint beside what it
// wrote, so that the same command run again after an interruption
// continues it; wrap nil writes a plaintext archive.
func (e *exportFlags) export(ctx context.Context, src source.Source, out string, wrap func(keywrap.Key, string) ([]byte, error), resumable bool) error {
	info := src.Info()
	for _, w := range info.Warnings {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	plan, err := exporter.NewPlan(e.sel, e.o, "", wrap != nil)
	if err != nil {
		return err
	}
	plan.Wrap, plan.PartSize, plan.Concurrency, plan.Level = wrap, e.partSize, runtime.GOMAXPROCS(0), zstd.SpeedFastest
	dst, err := newOutDestination(ctx, out, resumable)
	if err != nil {
		return err
	}
	defer dst.Close()
	cp := exporter.NoCheckpoints
	if dst.resumable {
		fp, err := e.fingerprint(wrap != nil)
		if err != nil {
			return err
		}
		cp = &exporter.FileCheckpointer{Path: dst.checkpoint, Plan: fp}
		if dst.interrupted() {
			fmt.Fprintf(os.Stderr, "resuming the interrupted export into %s\n", out)
		}
	}
	bar := newProgressPrinter(os.Stderr, e.quiet)
	res, err := exporter.Run(ctx, plan, src, dst, cp, bar.print)
	bar.done()
	if err != nil {
		if dst.interrupted() && !errors.Is(err, exporter.ErrOtherExport) {
			return fmt.Errorf("%w (run the same command again to resume the export from its last complete part, or %s to start afresh)", err, dst.abandon())
		}
		return err
	}
	took := time.Since(res.Started)
	typ := plan.Type()
	e.result = &exportResult{Archive: out, KeyFile: res.Published.KeyFile, ArchiveID: res.ArchiveID, ServerName: info.ServerName, Type: typ,
		Source:  archive.SourceInfo{Implementation: info.Implementation, Version: info.Version, SchemaVersion: info.SchemaVersion},
		Records: res.ArchiveRecords, MediaFiles: res.Blobs, MediaBytes: res.BlobBytes, Omissions: res.Omissions, Seconds: took.Seconds(),
		Size: res.Published.Size, SHA256: res.Published.SHA256}
	if !e.quiet {
		fmt.Fprintf(os.Stderr, "exported %s (%s, from %s): %d records, %d media files (%s), %d omissions reported in the archive, in %s\n",
			info.ServerName, typ, sourceName(info.Implementation, info.Version, info.SchemaVersion), res.ArchiveRecords, res.Blobs, human.Bytes(res.BlobBytes), res.Omissions,
			took.Round(time.Millisecond))
	}
	return nil
}

// fingerprint identifies this export for its checkpoint (the source,
// the selection and options, encrypted or not), so that a rerun with
// other flags is refused instead of mixed into the interrupted archive.
// Only a hash is kept: the database URL may hold a password.
func (e *exportFlags) fingerprint(encrypted bool) (string, error) {
	b, err := json.Marshal(struct {
		Impl, DendriteConfig string
		Synapse              synapse.Config
		Selection            exporter.Selection
		Options              source.Options
		Encrypted            bool
	}{e.impl, e.dendriteConfig, e.synapse, e.sel, e.o, encrypted})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// exportResult is what bot export --json prints.
type exportResult struct {
	Archive    string             `json:"archive"`
	KeyFile    string             `json:"key_file,omitempty"`
	ArchiveID  string             `json:"archive_id"`
	ServerName string             `json:"server_name"`
	Type       string             `json:"type"`
	Source     archive.SourceInfo `json:"source"`
	Records    int64              `json:"records"`
	MediaFiles int64              `json:"media_files"`
	MediaBytes int64              `json:"media_bytes"`
	Omissions  int64              `json:"omissions"`
	Seconds    float64            `json:"seconds"`
	Size       int64              `json:"size,omitempty"`   // bytes, when the destination counted them
	SHA256     string             `json:"sha256,omitempty"` // hex, when the destination hashed the archive
	// Recorded is the export's ID in Ferry's state database (--record).
	Recorded string `json:"recorded,omitempty"`
}

func newExportCmd() *cobra.Command {
	var e exportFlags
	var kc keyChoice
	var to, record string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "export --to OUT (--recipient R | --recipients-file F | --passphrase-env VAR | --plaintext)",
		Short: "Export a homeserver (Synapse or Dendrite) into a new encrypted archive",
		Long: `Export reads a homeserver's data from a consistent snapshot and writes it into a new archive at OUT:
a new directory, a bucket URL (s3://bucket/prefix?...), or FILE.ferry (one file, its key beside it
in FILE.ferry.key.age). A Synapse source is its PostgreSQL database (--db), media store, signing key
and homeserver.yaml; a Dendrite source is its dendrite.yaml (--config).

The archive key is wrapped to age or SSH recipients (the writer only needs public keys), or to a
passphrase; --plaintext writes none, and no secrets. --rooms, --users, --since and --until make a
partial export; --migration adds what a move to another server needs (access tokens, the private
signing key). Progress goes to stderr; --json prints the result on stdout.

An interrupted export (Ctrl-C, a crash) resumes from its last complete part when the same command
runs again on this machine. Its checkpoint holds the archive key until the export is done, so it
stays local: in OUT, in FILE.ferry.partial beside the file, or for a bucket URL in the user's cache
directory (~/.cache/ferry/exports). The error names what to remove to start afresh.

--record config.yaml records the finished export in the state database of Ferry's bot (bot run,
bot serve): its dashboard and audit log list it as made through the CLI, with where the archive went.`,
		Example: `  bot export --source synapse --db postgres://ferry_reader@db/synapse --media-store /var/lib/synapse/media_store \
    --signing-key /etc/synapse/example.org.signing.key --synapse-config /etc/synapse/homeserver.yaml \
    --recipient age1... --to backup.ferry
  bot export --source dendrite --config /etc/dendrite/dendrite.yaml --migration --recipient age1... --to move.ferry
  bot export --db postgres://ferry_reader@db/synapse --signing-key example.org.signing.key \
    --rooms '!abc:example.org' --since 2026-01-01 --media referenced --passphrase-env FERRY_PASS --to room.ferry
  bot export --db postgres://ferry_reader@db/synapse --signing-key example.org.signing.key --recipient age1... \
    --to /backups/full.ferry --record /etc/ferry/config.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := e.run(cmd.Context(), &kc, to, record); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), e.result)
			}
			return nil
		},
	}
	e.addFlags(cmd.Flags(), true)
	cmd.Flags().StringVar(&to, "to", "", "where to write the archive (`OUT`): a new directory, a bucket URL, or FILE.ferry")
	kc.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result (archive, key file, archive ID, counts) as JSON on stdout")
	cmd.Flags().StringVar(&record, "record", "", "Ferry's configuration `FILE` (config.yaml of bot run or bot serve): record the finished export in its state database, so its dashboard and audit log list it")
	e.completions(cmd)
	return cmd
}

// run is bot export: a new archive at to from the chosen source, recorded
// in the state database of the Ferry configuration file record, if given
// (opened first, so that a wrong file stops the export before it starts).
func (e *exportFlags) run(ctx context.Context, kc *keyChoice, to, record string) error {
	if to == "" {
		return errors.New("--to is required: a new directory, a bucket URL, or FILE.ferry (bot export --help shows the options)")
	}
	var ledger *store.Store
	if record != "" {
		cfg, err := config.Load(record)
		if err != nil {
			return fmt.Errorf("--record: %w", err)
		}
		if ledger, err = store.Open(ctx, string(cfg.State.Database), store.KeyFile(cfg.State.KeyFile), store.Existing()); err != nil {
			return fmt.Errorf("--record %s: %w", record, err)
		}
		defer ledger.Close()
	}
	wrap, err := kc.resolve()
	if err != nil {
		return err
	}
	if err := e.resolve(wrap != nil); err != nil {
		return err
	}
	src, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	started := time.Now()
	if err := e.export(ctx, src, to, wrap, true); err != nil || ledger == nil {
		return err
	}
	return e.record(ctx, ledger, record, to, wrap == nil, started)
}

// record puts the export just made into the ledger of Ferry's state
// database, as run by this machine's user through the CLI.
func (e *exportFlags) record(ctx context.Context, ledger *store.Store, configFile, to string, plaintext bool, started time.Time) error {
	location := to
	if !strings.Contains(to, "://") {
		if abs, err := filepath.Abs(to); err == nil {
			location = abs
		}
	}
	who := "cli"
	if u, err := user.Current(); err == nil {
		who += ":" + u.Username
	}
	if host, err := os.Hostname(); err == nil {
		who += "@" + host
	}
	res := e.result
	id, err := app.RecordCLIExport(ctx, ledger, app.CLIExport{RequestedBy: who, Location: location, ArchiveID: res.ArchiveID,
		Size: res.Size, SHA256: res.SHA256, Started: started,
		Request: jobs.Request{Source: e.impl, Selection: e.sel, Options: e.o, Plaintext: plaintext, Name: filepath.Base(strings.TrimSuffix(to, "/"))}})
	if err != nil {
		return fmt.Errorf("the archive is complete at %s, but recording it in the state database of %s failed: %w", location, configFile, err)
	}
	res.Recorded = id
	if !e.quiet {
		fmt.Fprintf(os.Stderr, "recorded as export %s in the state database of %s (its dashboard lists it)\n", id, configFile)
	}
	return nil
}

// progressPrinter draws a live bar on a terminal and plain lines elsewhere.
type progressPrinter struct {
	w     io.Writer
	tty   bool
	quiet bool
	last  time.Time
	drawn bool
}

func newProgressPrinter(w *os.File, quiet bool) *progressPrinter {
	st, err := w.Stat()
	return &progressPrinter{w: w, quiet: quiet, tty: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

func (p *progressPrinter) print(pr exporter.Progress) {
	if p.quiet {
		return
	}
	now := time.Now()
	if !p.tty && now.Sub(p.last) < 5*time.Second && pr.Done < pr.Streams {
		return
	}
	p.last = now
	frac := pr.Fraction()
	eta := ""
	if d := pr.ETA(now); d > 0 {
		eta = " ETA " + d.Round(time.Second).String()
	}
	line := fmt.Sprintf("%s %5.1f%% %s", human.Bar(frac, 24, "#", "."), frac*100, progressText(pr))
	line += fmt.Sprintf(", snapshot age %s%s", now.Sub(pr.SnapshotAt).Round(time.Second), eta)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// progressText says where an export is: the stream and its records
// (against its count, when the source gave one), then the whole so far.
// Records and media files are counted apart: a media record describes a
// file, and the files are what fills the archive.
func progressText(pr exporter.Progress) string {
	stream := fmt.Sprintf("%d records", pr.StreamRecords)
	if pr.StreamTotal > 0 {
		stream = fmt.Sprintf("%d of %d records", pr.StreamRecords, pr.StreamTotal)
	}
	if pr.Done >= pr.Streams {
		stream = fmt.Sprintf("all %d streams done", pr.Streams)
	} else {
		stream = fmt.Sprintf("%s (stream %d of %d): %s", pr.Stream, pr.Done+1, pr.Streams, stream)
	}
	return fmt.Sprintf("%s; %d records and %d media files (%s) in all", stream, pr.Records, pr.Blobs, human.Bytes(pr.BlobBytes))
}

// sourceName names a source for summaries: "synapse 1.160, schema 94",
// "dendrite v0.15.2"; a schema version only where the source has one.
func sourceName(impl, version string, schema int) string {
	s := impl
	if version != "" {
		s += " " + version
	}
	if schema > 0 {
		s += fmt.Sprintf(", schema %d", schema)
	}
	return s
}

func (p *progressPrinter) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
