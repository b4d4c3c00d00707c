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
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivediff"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/fidelity"
)

// newArchiveCmd groups the commands that work on archives.
func newArchiveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "archive",
		Short: "Inspect, verify, decrypt, extract, compare and pack archives",
		Long: `The archive commands read any archive: a directory (stored form), a packed FILE.ferry, or a bucket
URL. An encrypted archive opens with its key: --identity (the age or SSH identity the export was
encrypted to; the key file key.age, or FILE.ferry.key.age beside a packed file, is found by itself),
--key-file (the wrapped key elsewhere, or a key line from bot archive key) or --passphrase-env.`,
		Example: `  bot archive verify --identity id.txt download.ferry
  bot archive inspect --identity id.txt --json s3://backups/2026-11-23?endpoint=http://127.0.0.1:7070&use_path_style=true`,
		RunE: groupRunE,
	}
	cmd.AddCommand(newInspectCmd(), newVerifyCmd(), newKeyCmd(), newKeygenCmd(), newDecryptCmd(), newExtractCmd(), newDiffCmd(), newPackCmd())
	return cmd
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSON prints v as indented JSON on stdout.
func printJSON(v any) error { return writeJSON(os.Stdout, v) }

// oneArchiveCmd completes cmd as an archive command that reads one
// ARCHIVE with the key options, printing JSON when jsonUsage names --json.
func oneArchiveCmd(cmd *cobra.Command, jsonUsage string, run func(ctx context.Context, out io.Writer, keys *keyFlags, asJSON bool, loc string) error) *cobra.Command {
	var keys keyFlags
	var asJSON bool
	cmd.Args = takes(1, "ARCHIVE")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		return run(c.Context(), c.OutOrStdout(), &keys, asJSON, args[0])
	}
	keys.addFlags(cmd.Flags())
	if jsonUsage != "" {
		cmd.Flags().BoolVar(&asJSON, "json", false, jsonUsage)
	}
	return cmd
}

func newKeyCmd() *cobra.Command {
	return oneArchiveCmd(&cobra.Command{
		Use:   "key ARCHIVE",
		Short: "Print this archive's key line (for !import previews)",
		Long: `Key opens the archive with the key options and prints its key line (ferry-archive-key-v1 ...).
The line opens this one archive only, unlike the identity that unwrapped it: give it where one
archive must be opened (the bot's !import form, an import job's key).`,
		Example: `  bot archive key --identity id.txt download.ferry > download.key.txt`,
	}, "", runKey)
}

// runKey prints the key line of one archive.
func runKey(ctx context.Context, out io.Writer, keys *keyFlags, _ bool, loc string) error {
	r, err := keys.open(ctx, loc)
	if err != nil {
		return err
	}
	defer r.Close()
	if len(r.Key()) == 0 {
		return errors.New("this archive is not encrypted: it has no key")
	}
	key, err := keywrap.FromBytes(r.Key())
	if err != nil {
		return err
	}
	_, err = out.Write(key.Encode(r.Manifest().ArchiveID))
	return err
}

func newInspectCmd() *cobra.Command {
	return oneArchiveCmd(&cobra.Command{
		Use:   "inspect ARCHIVE",
		Short: "Show the manifest and what the archive holds",
		Long: `Inspect prints the manifest (archive ID, server, source, export type, encryption, parts) and counts:
records per section and namespace, events per room and type, media, the sections this reader does
not know, and the sensitive fields the archive holds.`,
		Example: `  bot archive inspect --identity id.txt download.ferry
  bot archive inspect --json plain-archive/ | jq .summary.sections`,
	}, "print the manifest and the counts as JSON", runInspect)
}

func runInspect(ctx context.Context, out io.Writer, keys *keyFlags, asJSON bool, loc string) error {
	r, err := keys.open(ctx, loc)
	if err != nil {
		return err
	}
	defer r.Close()
	sum, err := archive.Summarize(ctx, r)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(out, struct {
			Manifest *archive.Manifest `json:"manifest"`
			Summary  *archive.Summary  `json:"summary"`
		}{r.Manifest(), sum})
	}
	return printInspect(out, r.Manifest(), sum)
}

// plural is "1 error", "2 errors".
func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func printInspect(w io.Writer, m *archive.Manifest, s *archive.Summary) error {
	fmt.Fprintf(w, "archive    %s (format %s v%d.%d)\n", m.ArchiveID, m.Format, m.Version, m.Revision)
	fmt.Fprintf(w, "created    %s\n", m.CreatedAt.Format("2006-01-02 15:04:05Z07:00"))
	fmt.Fprintf(w, "server     %s (source %s)\n", m.Export.ServerName, sourceName(m.Export.Source.Implementation, m.Export.Source.Version, m.Export.Source.SchemaVersion))
	fmt.Fprintf(w, "export     %s\n", m.Export.Type)
	fmt.Fprintf(w, "encryption %s\n", m.Encryption)
	fmt.Fprintf(w, "parts      %d data + 1 final\n", len(m.Parts))
	fmt.Fprintf(w, "media      %d items, %d thumbnails, %d bytes of files\n", s.Media, s.Thumbnails, s.MediaBytes)
	fmt.Fprintln(w, "records by section:")
	printCounts(w, s.Sections)
	namespaces := map[string]int64{}
	for section, n := range s.Sections {
		ns := archive.ItemOf(section)
		if strings.HasPrefix(ns, "m.") {
			ns = "m.*"
		}
		namespaces[ns] += n
	}
	fmt.Fprintln(w, "records by namespace:")
	printCounts(w, namespaces)
	fmt.Fprintln(w, "events by room:")
	byRoom := map[string]int64{}
	for room, n := range s.EventsByRoom {
		byRoom[fmt.Sprintf("%s (v%s)", room, s.RoomVersions[room])] = n
	}
	printCounts(w, byRoom)
	fmt.Fprintln(w, "events by type:")
	printCounts(w, s.EventsByType)
	if unknown := m.UnknownItems(); len(unknown) > 0 {
		fmt.Fprintf(w, "skipped (unknown to this reader, kept on re-export): %v\n", unknown)
	}
	if len(m.Sensitive) > 0 {
		fmt.Fprintf(w, "sensitive: %v\n", m.Sensitive)
	} else {
		fmt.Fprintln(w, "sensitive: nothing")
	}
	return nil
}

func printCounts(w io.Writer, counts map[string]int64) {
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-48s %d\n", n, counts[n])
	}
}

func newVerifyCmd() *cobra.Command {
	return oneArchiveCmd(&cobra.Command{
		Use:   "verify ARCHIVE",
		Short: "Check every file, hash, signature and reference; exit 0 only when all pass",
		Long: `Verify reads the whole archive and checks every part, file, hash, record count, event signature and
reference (docs/FORMAT.md lists the checks), then previews what a target keeps (fidelity). It exits
0 only when every check passes; a key given for a plaintext archive fails it too (a mismatch).`,
		Example: `  bot archive verify --identity id.txt download.ferry       # download.ferry.key.age beside it
  bot archive verify --identity id.txt --key-file elsewhere/download.ferry.key.age download.ferry
  FERRY_PASS=... bot archive verify --passphrase-env FERRY_PASS backup.ferry
  bot archive verify --json plain-archive/`,
	}, "print the result as JSON: ok, warnings, the validation report and the fidelity preview", runVerify)
}

// runVerify checks everything Validate checks and previews fidelity; it
// fails (exit 1) when any error-level problem is found.
func runVerify(ctx context.Context, out io.Writer, keys *keyFlags, asJSON bool, loc string) error {
	r, err := keys.open(ctx, loc)
	if err != nil {
		return fmt.Errorf("verify failed: %w", err)
	}
	defer r.Close()
	rep, err := archive.Validate(ctx, r)
	if err != nil {
		return fmt.Errorf("verify failed: %w", err)
	}
	// A preview of what a target keeps means something only for an
	// archive that verifies: one that failed may hold anything.
	var preview *fidelity.Report
	if rep.OK() {
		preview = fidelity.Preview(r, rep, nil)
	}
	var warnings []string
	if flags := keys.given(); flags != "" && r.Key() == nil {
		warnings = append(warnings, fmt.Sprintf("the archive is not encrypted (encryption %q), yet a key was given (%s) and not used: "+
			"this is not the encrypted archive the key is for. Check that it is the archive you meant; to verify a plaintext archive, give no key options", r.Manifest().Encryption, flags))
	}
	if asJSON {
		if err := writeJSON(out, struct {
			OK         bool                      `json:"ok"`
			Warnings   []string                  `json:"warnings,omitempty"`
			Validation *archive.ValidationReport `json:"validation"`
			Fidelity   *fidelity.Report          `json:"fidelity"`
		}{rep.OK() && len(warnings) == 0, warnings, rep, preview}); err != nil {
			return err
		}
	} else {
		printValidation(out, r.Manifest(), rep, warnings...)
		if preview != nil {
			fmt.Fprint(out, preview)
		} else {
			fmt.Fprintln(out, "Fidelity: not previewed, since the archive failed verification.")
		}
	}
	if !rep.OK() {
		return fmt.Errorf("verify failed: %s (listed above): the archive is damaged, incomplete or was modified: fetch or copy it again, or export again", plural(rep.Errors(), "error"))
	}
	if len(warnings) > 0 {
		return fmt.Errorf("verify failed: %s", warnings[0])
	}
	return nil
}

// printValidation prints a validation report, then warnings: "ok" only
// when there are neither errors nor warnings.
func printValidation(w io.Writer, m *archive.Manifest, rep *archive.ValidationReport, warnings ...string) {
	s := rep.Signatures
	if rep.Files == 0 && rep.Blobs == 0 && !rep.OK() {
		// Nothing was read: counts of zero would read as an empty archive.
		fmt.Fprintf(w, "archive %s (%d parts): no file could be read\n", m.ArchiveID, len(m.Parts)+1)
	} else {
		fmt.Fprintf(w, "archive %s: %d parts, %d files, %d records, %d media blobs (%d bytes)\n",
			m.ArchiveID, len(m.Parts)+1, rep.Files, rep.Records, rep.Blobs, rep.BlobBytes)
		fmt.Fprintf(w, "events %d in %d rooms; signatures: %d valid, %d invalid, %d missing, %d unverifiable offline; %d redacted (hash not checkable: redacted)\n",
			rep.Events, len(rep.Rooms), s.Valid, s.Invalid, s.Missing, s.Unverifiable, s.RedactedHashUncheckable)
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(w, "  "+p.String())
	}
	var total int64
	for _, n := range rep.Counts {
		total += n
	}
	if total > int64(len(rep.Problems)) {
		fmt.Fprintf(w, "  ... %d more problems (counts by check: %v)\n", total-int64(len(rep.Problems)), rep.Counts)
	}
	for _, warning := range warnings {
		fmt.Fprintln(w, "warning: "+warning)
	}
	if rep.OK() && len(warnings) == 0 {
		fmt.Fprintln(w, "ok: every check passed")
	}
}

func newPackCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pack ARCHIVE OUT.ferry",
		Short: "Write an archive's stored form (directory or prefix) as one file",
		Long: `Pack writes the parts of an archive in stored form (a directory or bucket prefix) into one new file,
as a download serves it. Nothing is decrypted: the key file stays as it is (copy key.age to
OUT.ferry.key.age to keep it beside the packed file).`,
		Example: `  bot archive pack backups/2026-11-23 backup.ferry && cp backups/2026-11-23/key.age backup.ferry.key.age`,
		Args:    takes(2, "ARCHIVE OUT.ferry"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			src, err := container.Open(ctx, args[0])
			if err != nil {
				return err
			}
			defer src.Close()
			return writeNewFile(args[1], func(out io.Writer) error {
				_, err := container.Pack(ctx, src, out)
				return err
			})
		},
	}
}

// writeNewFile creates path (which must not exist) and removes it again
// when write fails, so that no partial file is left behind.
func writeNewFile(path string, write func(io.Writer) error) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := write(out); err != nil {
		out.Close()
		os.Remove(path)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

func newDecryptCmd() *cobra.Command {
	var keys keyFlags
	var allow bool
	cmd := &cobra.Command{
		Use:   "decrypt ARCHIVE OUT",
		Short: "Write a plaintext copy (a directory, bucket URL or FILE.ferry)",
		Long: `Decrypt rewrites an encrypted archive as a plaintext one with the same archive ID and records, into
OUT: a new directory, a bucket URL, or a new FILE.ferry. An archive that holds secrets (password
hashes, access tokens, private keys) is refused unless --allow-secrets says you mean it.`,
		Example: `  bot archive decrypt --identity id.txt download.ferry plain.ferry`,
		Args:    takes(2, "ARCHIVE OUT (a directory, bucket URL, or a file ending in .ferry)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDecrypt(cmd.Context(), &keys, allow, args[0], args[1])
		},
	}
	keys.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&allow, "allow-secrets", false, "write secrets (password hashes, tokens, private keys) in plaintext")
	return cmd
}

// runDecrypt rewrites an encrypted archive as a plaintext one with the same
// archive ID and records. Secrets need allow.
func runDecrypt(ctx context.Context, keys *keyFlags, allow bool, loc, out string) error {
	r, err := keys.open(ctx, loc)
	if err != nil {
		return err
	}
	defer r.Close()
	m := r.Manifest()
	if len(m.Sensitive) > 0 && !allow {
		return fmt.Errorf("the archive holds secrets (%s); a plaintext copy would expose them. Pass --allow-secrets if you mean it", strings.Join(m.Sensitive, ", "))
	}
	id, err := container.ParseArchiveID(m.ArchiveID)
	if err != nil {
		return err
	}
	opts := archive.WriterOptions{ArchiveID: id, Export: m.Export, Core: r.Core(), AllowPlaintextSecrets: allow,
		Now: func() time.Time { return m.CreatedAt }}
	return writeArchive(ctx, out, opts, func(w *archive.Writer) error {
		_, err := archive.Copy(ctx, r, w, nil)
		return err
	})
}

// writeArchive writes a new archive at out (outDestination) with fill:
// bot archive decrypt's copy. Nothing that looks like a complete archive
// is left behind when fill fails.
func writeArchive(ctx context.Context, out string, opts archive.WriterOptions, fill func(*archive.Writer) error) error {
	d, err := newOutDestination(ctx, out, false)
	if err != nil {
		return err
	}
	defer d.Close()
	sink, err := d.Stage(ctx, opts.ArchiveID.String())
	if err != nil {
		return err
	}
	w, err := archive.NewWriter(ctx, sink, opts)
	if err != nil {
		return err
	}
	if err := fill(w); err != nil {
		w.Abort()
		return err
	}
	if _, err := w.Close(); err != nil {
		return err
	}
	_, err = d.Publish(ctx, w.ArchiveID())
	return err
}

// outDestination is where the CLI writes an archive (an
// exporter.Destination): the stored form in a directory or bucket prefix,
// or one packed file when out ends in ".ferry", with the wrapped key in
// OUT.ferry.key.age beside it. A packed file is staged in the directory
// OUT.ferry.partial beside it, packed when the archive is complete.
//
// A resumable destination keeps what was staged when the export stops,
// with the export's checkpoint file, so that the same command run again
// continues it. The checkpoint holds the archive key, so it stays on this
// machine: in the directory written or staged in, and for a bucket URL
// (file:// included) in the user's cache directory, named by the URL's
// hash; never in the bucket beside the encrypted parts.
type outDestination struct {
	out, dir   string // dir: where the parts are staged (local), or "" for a bucket URL
	packed     bool
	resumable  bool
	checkpoint string // the checkpoint file's path when resumable
	store      *container.BucketStore
	closeStore func() error
}

// newOutDestination checks that out is new, or (resumable) holds an
// interrupted export's checkpoint.
func newOutDestination(ctx context.Context, out string, resumable bool) (*outDestination, error) {
	d := &outDestination{out: out, packed: strings.HasSuffix(out, ".ferry") && !strings.Contains(out, "://")}
	switch {
	case d.packed:
		d.dir = out + ".partial"
	case !strings.Contains(out, "://"):
		d.dir = out
	}
	d.resumable = resumable
	switch {
	case resumable && d.dir != "":
		d.checkpoint = filepath.Join(d.dir, checkpointFile)
	case resumable:
		cache, err := os.UserCacheDir()
		dir := filepath.Join(cache, "ferry", "exports")
		if err == nil {
			err = os.MkdirAll(dir, 0o700)
		}
		if err != nil { // the export runs all the same, as it did before resume
			fmt.Fprintf(os.Stderr, "warning: this export cannot resume if interrupted: no place for its checkpoint (%v); set XDG_CACHE_HOME or HOME\n", err)
			d.resumable = false
			break
		}
		sum := sha256.Sum256([]byte(out))
		d.checkpoint = filepath.Join(dir, hex.EncodeToString(sum[:16])+".json")
	}
	if d.packed {
		if _, err := os.Stat(out); err == nil {
			return nil, fmt.Errorf("%s exists: choose a new file", out)
		}
		if _, err := os.Stat(out + container.PackedKeySuffix); err == nil && !d.interrupted() {
			return nil, fmt.Errorf("%s exists: choose a new file", out+container.PackedKeySuffix)
		}
		if !d.resumable { // a staging directory of its own, gone when done
			tmp, err := os.MkdirTemp(filepath.Dir(out), ".ferry-tmp-")
			if err != nil {
				return nil, err
			}
			d.dir = tmp
		} else if err := os.MkdirAll(d.dir, 0o700); err != nil { // for the user only, as a temporary one is
			return nil, err
		}
	}
	loc := out
	if d.dir != "" {
		loc = d.dir
	}
	if d.interrupted() { // the parts of the export to resume
		src, err := container.Open(ctx, loc)
		if err == nil {
			bs, ok := src.(*container.BucketStore)
			if !ok {
				src.Close()
				return nil, fmt.Errorf("%s is a packed archive, not the parts of the interrupted export: remove %s to start afresh elsewhere", out, d.checkpoint)
			}
			d.store, d.closeStore = bs, bs.Close
			return d, nil
		}
		// No part to continue after (none committed yet, or removed
		// since): the export starts afresh, with a new archive.
		fmt.Fprintf(os.Stderr, "warning: %s holds no part of the interrupted export (%v): it starts afresh\n", loc, err)
		if err := os.Remove(d.checkpoint); err != nil {
			return nil, err
		}
	}
	store, err := container.Create(ctx, loc)
	if err != nil {
		if d.packed && !d.resumable {
			os.RemoveAll(d.dir)
		}
		return nil, err
	}
	d.store, d.closeStore = store, store.Close
	return d, nil
}

// checkpointFile is the name of bot export's checkpoint in the directory
// it writes or stages in.
const checkpointFile = "ferry-export-checkpoint.json"

// abandon says how to give up an interrupted export for good.
func (d *outDestination) abandon() string {
	if d.dir != "" {
		return "remove " + d.dir
	}
	return fmt.Sprintf("remove %s and the parts under %s", d.checkpoint, d.out)
}

// interrupted reports whether an earlier export left its checkpoint here.
func (d *outDestination) interrupted() bool {
	if d.checkpoint == "" {
		return false
	}
	_, err := os.Stat(d.checkpoint)
	return err == nil
}

func (d *outDestination) Stage(context.Context, string) (container.Sink, error) { return d.store, nil }

// WriteKey keeps the wrapped key as key.age beside the parts (a packed
// file's is put beside it when published).
func (d *outDestination) WriteKey(ctx context.Context, _ string, wrapped []byte) error {
	return d.store.WriteKey(ctx, wrapped)
}

// Publish packs a packed file's parts into it and puts its key file beside
// it; the stored form is in place already.
func (d *outDestination) Publish(ctx context.Context, _ string) (exporter.Published, error) {
	pub := exporter.Published{Location: d.out}
	if d.packed {
		src, err := container.Open(ctx, d.dir)
		if err != nil {
			return pub, err
		}
		defer src.Close()
		wrapped, err := os.ReadFile(filepath.Join(d.dir, container.KeyObjectName))
		switch {
		case err == nil:
			pub.KeyFile = d.out + container.PackedKeySuffix
			if err := os.WriteFile(pub.KeyFile, wrapped, 0o600); err != nil {
				return pub, err
			}
		case !errors.Is(err, os.ErrNotExist): // none: a plaintext archive
			return pub, err
		}
		if err := writeNewFile(d.out, func(f io.Writer) error { _, err := container.Pack(ctx, src, f); return err }); err != nil {
			if pub.KeyFile != "" {
				os.Remove(pub.KeyFile)
			}
			return pub, err
		}
		if err := os.RemoveAll(d.dir); err != nil {
			return pub, fmt.Errorf("%s is written, but its staging directory %s is left: %w", d.out, d.dir, err)
		}
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", d.out)
	return pub, nil
}

// Close closes the store. A destination that is not resumable removes
// what it staged for a packed file (published or not), and a directory it
// created for an archive that was not completed.
func (d *outDestination) Close() error {
	err := d.closeStore()
	if !d.resumable && d.packed {
		os.RemoveAll(d.dir)
	}
	return err
}

func newExtractCmd() *cobra.Command {
	var keys keyFlags
	var jsonl bool
	cmd := &cobra.Command{
		Use:   "extract ARCHIVE DIR",
		Short: "Write every file of an archive into a new directory",
		Long: `Extract writes every file of the archive into DIR (new, or empty): records as stored (CBOR), or as
JSON lines with --jsonl, and media files under m.media/. A failed extract leaves nothing behind.`,
		Example: `  bot archive extract --identity mydata-key.txt --key-file export.ferry.key.age --jsonl export.ferry mydata/`,
		Args:    takes(2, "ARCHIVE DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExtract(cmd.Context(), cmd.OutOrStdout(), &keys, jsonl, args[0], args[1])
		},
	}
	keys.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&jsonl, "jsonl", false, "write record files as JSON lines (.jsonl) instead of CBOR")
	return cmd
}

// runExtract writes every file of an archive into a new directory, as
// stored (CBOR) or, with jsonl, records as JSON lines. A failed extract
// leaves nothing behind: not the files, nor a directory it created.
func runExtract(ctx context.Context, stdout io.Writer, keys *keyFlags, jsonl bool, loc, dir string) error {
	r, err := keys.open(ctx, loc)
	if err != nil {
		return err
	}
	defer r.Close()
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: extract into a new directory", dir)
	}
	_, statErr := os.Stat(dir)
	created := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir) // no entry can escape dir, whatever its name
	if err != nil {
		return err
	}
	n, err := archive.Extract(ctx, r, root, archive.ExtractOptions{JSONL: jsonl})
	root.Close()
	if err != nil {
		if created {
			os.Remove(dir) // Extract left it empty
		}
		return err
	}
	fmt.Fprintf(stdout, "extracted %d files into %s\n", n, dir)
	return nil
}

// errDiffer makes `archive diff` exit 1 after printing the differences.
var errDiffer = errors.New("archives differ")

func newDiffCmd() *cobra.Command {
	var keys, keysB keyFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "diff A B",
		Short: "Compare two archives record by record; exit 1 when they differ",
		Long: `Diff compares two archives record by record, by each record's natural key (a user ID, an event ID,
...), and prints the differences. It exits 0 when the archives hold the same records, 1 when they
differ. Archive B opens with the key options of A unless --key-file-b or --identity-b is given.`,
		Example: `  bot archive diff --identity id.txt before.ferry after.ferry
  bot archive diff --key-file a.key.txt --key-file-b b.key.txt a/ b/`,
		Args: takes(2, "A B"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiff(cmd.Context(), cmd.OutOrStdout(), &keys, &keysB, asJSON, args[0], args[1])
		},
	}
	keys.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&keysB.keyFile, "key-file-b", "", "key `FILE` for archive B (default: the same key options as A)")
	cmd.Flags().StringVar(&keysB.identity, "identity-b", "", "age or SSH identity `FILE` for archive B (default: the same key options as A)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the differences as JSON")
	return cmd
}

func runDiff(ctx context.Context, out io.Writer, keys, keysB *keyFlags, asJSON bool, locA, locB string) error {
	a, err := keys.open(ctx, locA)
	if err != nil {
		return fmt.Errorf("archive A: %w", err)
	}
	defer a.Close()
	if keysB.keyFile != "" || keysB.identity != "" {
		keysB.passphraseEnv = keys.passphraseEnv
	} else {
		keysB = keys
	}
	b, err := keysB.open(ctx, locB)
	if err != nil {
		return fmt.Errorf("archive B: %w", err)
	}
	defer b.Close()
	res, err := archivediff.Compare(ctx, a, b)
	if err != nil {
		return err
	}
	if asJSON {
		if err := writeJSON(out, res); err != nil {
			return err
		}
	} else {
		for _, d := range res.Differences {
			fmt.Fprintln(out, d)
		}
		if res.Total > int64(len(res.Differences)) {
			fmt.Fprintf(out, "... and %d more differences\n", res.Total-int64(len(res.Differences)))
		}
	}
	if !res.Equal() {
		return fmt.Errorf("%w: %d differences in %d records compared", errDiffer, res.Total, res.Compared)
	}
	fmt.Fprintf(out, "equal: %d records compared\n", res.Compared)
	return nil
}
