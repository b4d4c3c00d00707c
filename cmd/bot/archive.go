package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivediff"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/fidelity"
)

type keyFlags struct {
	keyFile, identity, passphraseEnv string
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.keyFile, "key-file", "", "wrapped key (key.age) or plain key file")
	fs.StringVar(&k.identity, "identity", "", "age identity file or SSH private key that opens key.age")
	fs.StringVar(&k.passphraseEnv, "passphrase-env", "", "environment variable holding the age passphrase")
}

func (k *keyFlags) options() (archive.OpenOptions, error) {
	var o archive.OpenOptions
	if k.keyFile != "" {
		data, err := os.ReadFile(k.keyFile)
		if err != nil {
			return o, fmt.Errorf("read the key file (--key-file): %w", err)
		}
		switch keywrap.Classify(data) {
		case keywrap.KindIdentity:
			return o, fmt.Errorf("--key-file %s holds an age or SSH identity (a secret key), not an archive's key file: "+
				"pass it as --identity %s, and leave --key-file out when the key file (ARCHIVE.key.age) lies beside the archive, or name that file with --key-file",
				k.keyFile, k.keyFile)
		case keywrap.KindUnknown:
			return o, fmt.Errorf("--key-file %s is not an archive key: expected the wrapped key that came with the archive (key.age, or FILE.ferry.key.age beside a packed FILE.ferry) "+
				"or a key line as `bot archive key` prints it (ferry-archive-key-v1 ...). Check that you named the right file", k.keyFile)
		}
		o.KeyFile = data
	}
	if k.identity != "" {
		data, err := os.ReadFile(k.identity)
		if err != nil {
			return o, fmt.Errorf("read the identity (--identity): %w", err)
		}
		if kind := keywrap.Classify(data); kind == keywrap.KindWrapped || kind == keywrap.KindKeyLine {
			return o, fmt.Errorf("--identity %s is an archive's key file, not an identity: pass it as --key-file %s, and as --identity the age or SSH private key the archive was encrypted to",
				k.identity, k.identity)
		}
		ids, err := keywrap.ParseIdentities(data)
		if err != nil {
			return o, fmt.Errorf("--identity %s: %w (expected an age identity file, AGE-SECRET-KEY-1..., or an unencrypted SSH private key)", k.identity, err)
		}
		o.Identities = append(o.Identities, ids...)
	}
	if k.passphraseEnv != "" {
		p := os.Getenv(k.passphraseEnv)
		if p == "" {
			return o, fmt.Errorf("environment variable %s is empty: set it to the archive's passphrase (--passphrase-env names the variable, not the passphrase)", k.passphraseEnv)
		}
		id, err := keywrap.PassphraseIdentity(p)
		if err != nil {
			return o, err
		}
		o.Identities = append(o.Identities, []age.Identity{id}...)
	}
	return o, nil
}

// open opens the archive at loc with the key options. A key problem is
// explained in terms of the options: which one is wrong and what to give
// instead.
func (k *keyFlags) open(ctx context.Context, loc string) (*archive.Reader, error) {
	opts, err := k.options()
	if err != nil {
		return nil, err
	}
	r, err := archive.OpenLocation(ctx, loc, opts)
	if err != nil {
		return nil, k.explain(loc, err)
	}
	return r, nil
}

// explain rewrites an error of opening loc that is about its key.
func (k *keyFlags) explain(loc string, err error) error {
	keyFile := k.keyFile
	if keyFile == "" {
		keyFile = "the key file"
		if besideKeyFile(loc) != "" {
			keyFile = besideKeyFile(loc)
		}
	}
	var noID *keywrap.NoIdentityError
	switch {
	case errors.As(err, &noID) && noID.Passphrase && noID.GivenPassphrase:
		return fmt.Errorf("the passphrase in $%s does not open %s: wrong passphrase. Set %s to the passphrase the export was made with", k.passphraseEnv, keyFile, k.passphraseEnv)
	case errors.As(err, &noID) && noID.Passphrase:
		return fmt.Errorf("%s is wrapped to a passphrase, and the identity %s is not one: pass --passphrase-env VAR, VAR holding the passphrase the export was made with", keyFile, k.identity)
	case errors.As(err, &noID) && noID.GivenIdentities:
		return fmt.Errorf("the identity %s does not open %s: the key is wrapped to %s. Use the identity whose public key (age1... or ssh-...) the export was encrypted to",
			k.identity, keyFile, plural(int64(noID.Recipients), "other age/SSH recipient"))
	case errors.As(err, &noID):
		return fmt.Errorf("%s is wrapped to %s, not to a passphrase: pass --identity FILE, the age or SSH private key whose public key the export was encrypted to",
			keyFile, plural(int64(noID.Recipients), "age/SSH recipient"))
	case errors.Is(err, keywrap.ErrWrongArchive):
		return fmt.Errorf("%s is the key of another archive (%w): give the key file that came with %s", keyFile, err, loc)
	case errors.Is(err, keywrap.ErrNotKeyFile):
		return fmt.Errorf("%s is not an archive key (%w): give the key file that came with %s with --key-file", keyFile, err, loc)
	case errors.Is(err, os.ErrNotExist) && k.keyFile == "" && besideKeyFile(loc) != "":
		return fmt.Errorf("%s is a packed archive whose key file is not beside it (looked for %s): pass the key file that came with it (the .key.age download) with --key-file FILE", loc, besideKeyFile(loc))
	case errors.Is(err, container.ErrNeedKey) && k.given() == "":
		return fmt.Errorf("%s is encrypted and no key was given: pass --identity FILE (the age or SSH identity the export was encrypted to; "+
			"a packed archive's key file, FILE.ferry.key.age, is found beside it or named with --key-file), --key-file FILE with a key line, or --passphrase-env VAR", loc)
	case errors.Is(err, container.ErrNeedKey) && k.keyFile != "":
		return fmt.Errorf("--key-file %s is a wrapped key (key.age): it opens with the identity or passphrase it was wrapped to. Add --identity FILE or --passphrase-env VAR", k.keyFile)
	}
	return err
}

// besideKeyFile is where the key file of a packed archive in a local file
// lies ("" when loc is not a local file).
func besideKeyFile(loc string) string {
	path := strings.TrimPrefix(loc, "file://")
	if strings.Contains(path, "://") {
		return ""
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return ""
	}
	return path + container.PackedKeySuffix
}

// given names the key options given, for messages ("" when none was).
func (k *keyFlags) given() string {
	var flags []string
	for _, f := range []struct{ flag, value string }{{"--key-file", k.keyFile}, {"--identity", k.identity}, {"--passphrase-env", k.passphraseEnv}} {
		if f.value != "" {
			flags = append(flags, f.flag)
		}
	}
	return strings.Join(flags, ", ")
}

// archiveCmd is the shared shape of the archive subcommands: key flags,
// optional --json, and a fixed number of positional arguments.
type archiveCmd struct {
	name  string
	args  string // positional arguments, for messages
	nargs int
	fs    *flag.FlagSet
	keys  keyFlags
	json  *bool
}

func newArchiveCmd(name, args string, nargs int) *archiveCmd {
	c := &archiveCmd{name: name, args: args, nargs: nargs, fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.keys.register(c.fs)
	c.json = c.fs.Bool("json", false, "print JSON")
	return c
}

func (c *archiveCmd) parse(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if c.fs.NArg() != c.nargs {
		return fmt.Errorf("%s takes %s\n%s", c.name, c.args, usage)
	}
	return nil
}

// parseAndOpen parses the arguments and opens the first as an archive.
func (c *archiveCmd) parseAndOpen(ctx context.Context, args []string) (*archive.Reader, error) {
	if err := c.parse(args); err != nil {
		return nil, err
	}
	return c.open(ctx, c.fs.Arg(0))
}

func (c *archiveCmd) open(ctx context.Context, loc string) (*archive.Reader, error) {
	return c.keys.open(ctx, loc)
}

// plural is "1 error", "2 errors".
func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// runKey prints the key line of one archive (what `!import` asks for):
// it opens that archive only, unlike the identity that unwrapped it.
func runKey(ctx context.Context, args []string) error {
	c := newArchiveCmd("archive key", "ARCHIVE", 1)
	r, err := c.parseAndOpen(ctx, args)
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
	_, err = os.Stdout.Write(key.Encode(r.Manifest().ArchiveID))
	return err
}

func runInspect(ctx context.Context, args []string) error {
	c := newArchiveCmd("archive inspect", "ARCHIVE", 1)
	r, err := c.parseAndOpen(ctx, args)
	if err != nil {
		return err
	}
	defer r.Close()
	sum, err := archive.Summarize(ctx, r)
	if err != nil {
		return err
	}
	if *c.json {
		return printJSON(struct {
			Manifest *archive.Manifest `json:"manifest"`
			Summary  *archive.Summary  `json:"summary"`
		}{r.Manifest(), sum})
	}
	return printInspect(os.Stdout, r.Manifest(), sum)
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

// runVerify checks everything Validate checks and previews fidelity; it
// fails (exit 1) when any error-level problem is found.
func runVerify(ctx context.Context, args []string) error {
	c := newArchiveCmd("archive verify", "ARCHIVE", 1)
	r, err := c.parseAndOpen(ctx, args)
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
	if flags := c.keys.given(); flags != "" && r.Key() == nil {
		warnings = append(warnings, fmt.Sprintf("the archive is not encrypted (encryption %q), yet a key was given (%s) and not used: "+
			"this is not the encrypted archive the key is for. Check that it is the archive you meant; to verify a plaintext archive, give no key options", r.Manifest().Encryption, flags))
	}
	if *c.json {
		if err := printJSON(struct {
			OK         bool                      `json:"ok"`
			Warnings   []string                  `json:"warnings,omitempty"`
			Validation *archive.ValidationReport `json:"validation"`
			Fidelity   *fidelity.Report          `json:"fidelity"`
		}{rep.OK() && len(warnings) == 0, warnings, rep, preview}); err != nil {
			return err
		}
	} else {
		printValidation(os.Stdout, r.Manifest(), rep, warnings...)
		if preview != nil {
			fmt.Print(preview)
		} else {
			fmt.Println("Fidelity: not previewed, since the archive failed verification.")
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
	fmt.Fprintf(w, "archive %s: %d parts, %d files, %d records, %d media blobs (%d bytes)\n",
		m.ArchiveID, len(m.Parts)+1, rep.Files, rep.Records, rep.Blobs, rep.BlobBytes)
	fmt.Fprintf(w, "events %d in %d rooms; signatures: %d valid, %d invalid, %d missing, %d unverifiable offline; %d redacted (hash not checkable: redacted)\n",
		rep.Events, len(rep.Rooms), s.Valid, s.Invalid, s.Missing, s.Unverifiable, s.RedactedHashUncheckable)
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

func runPack(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("archive pack takes ARCHIVE OUT.ferry\n%s", usage)
	}
	src, err := container.Open(ctx, args[0])
	if err != nil {
		return err
	}
	defer src.Close()
	return writeNewFile(args[1], func(out io.Writer) error {
		_, err := container.Pack(ctx, src, out)
		return err
	})
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

// runDecrypt rewrites an encrypted archive as a plaintext one with the same
// archive ID and records. Secrets need --allow-secrets.
func runDecrypt(ctx context.Context, args []string) error {
	c := newArchiveCmd("archive decrypt", "ARCHIVE OUT (a directory, bucket URL, or a file ending in .ferry)", 2)
	allow := c.fs.Bool("allow-secrets", false, "write secrets (password hashes, tokens, private keys) in plaintext")
	r, err := c.parseAndOpen(ctx, args)
	if err != nil {
		return err
	}
	defer r.Close()
	m := r.Manifest()
	if len(m.Sensitive) > 0 && !*allow {
		return fmt.Errorf("the archive holds secrets (%s); a plaintext copy would expose them. Pass --allow-secrets if you mean it", strings.Join(m.Sensitive, ", "))
	}
	id, err := container.ParseArchiveID(m.ArchiveID)
	if err != nil {
		return err
	}
	opts := archive.WriterOptions{ArchiveID: id, Export: m.Export, Core: r.Core(), AllowPlaintextSecrets: *allow,
		Now: func() time.Time { return m.CreatedAt }}
	return writeArchive(ctx, c.fs.Arg(1), opts, nil, func(w *archive.Writer) error {
		_, err := archive.Copy(ctx, r, w, nil)
		return err
	})
}

// writeArchive writes a new archive at out: stored form in a directory or
// bucket prefix, or a single packed file when out ends in ".ferry". With
// wrapKey, the archive's wrapped key is stored as key.age beside the parts
// (or as OUT.ferry.key.age beside a packed file). Nothing that looks like a
// complete archive is left behind when fill fails.
func writeArchive(ctx context.Context, out string, opts archive.WriterOptions, wrapKey func(archiveID string) ([]byte, error), fill func(*archive.Writer) error) error {
	dest := out
	packed := strings.HasSuffix(out, ".ferry") && !strings.Contains(out, "://")
	if packed {
		for _, p := range []string{out, out + ".key.age"} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists: choose a new file", p)
			}
		}
		tmp, err := os.MkdirTemp(filepath.Dir(out), ".ferry-tmp-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dest = tmp
	}
	store, err := container.Create(ctx, dest)
	if err != nil {
		return err
	}
	defer store.Close()
	w, err := archive.NewWriter(ctx, store, opts)
	if err != nil {
		return err
	}
	if wrapKey != nil {
		wrapped, err := wrapKey(w.ArchiveID())
		if err != nil {
			w.Abort()
			return err
		}
		if packed {
			err = writeNewFile(out+".key.age", func(f io.Writer) error { _, err := f.Write(wrapped); return err })
		} else {
			err = store.WriteKey(ctx, wrapped)
		}
		if err != nil {
			w.Abort()
			return fmt.Errorf("store the wrapped key: %w", err)
		}
	}
	if err := fill(w); err != nil {
		w.Abort()
		if packed {
			os.Remove(out + ".key.age")
		}
		return err
	}
	if _, err := w.Close(); err != nil {
		return err
	}
	if !packed {
		fmt.Fprintf(os.Stderr, "wrote %s\n", out)
		return nil
	}
	src, err := container.Open(ctx, dest)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := writeNewFile(out, func(f io.Writer) error { _, err := container.Pack(ctx, src, f); return err }); err != nil {
		os.Remove(out + ".key.age")
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", out)
	return nil
}

// runExtract writes every file of an archive into a new directory, as
// stored (CBOR) or, with --jsonl, records as JSON lines. A failed extract
// leaves nothing behind: not the files, nor a directory it created.
func runExtract(ctx context.Context, args []string) error {
	c := newArchiveCmd("archive extract", "ARCHIVE DIR", 2)
	jsonl := c.fs.Bool("jsonl", false, "write record files as JSON lines (.jsonl) instead of CBOR")
	r, err := c.parseAndOpen(ctx, args)
	if err != nil {
		return err
	}
	defer r.Close()
	dir := c.fs.Arg(1)
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
	n, err := archive.Extract(ctx, r, root, archive.ExtractOptions{JSONL: *jsonl})
	root.Close()
	if err != nil {
		if created {
			os.Remove(dir) // Extract left it empty
		}
		return err
	}
	fmt.Printf("extracted %d files into %s\n", n, dir)
	return nil
}

// errDiffer makes `archive diff` exit 1 after printing the differences.
var errDiffer = errors.New("archives differ")

func runDiff(ctx context.Context, args []string) error {
	c := newArchiveCmd("archive diff", "A B", 2)
	var keysB keyFlags
	c.fs.StringVar(&keysB.keyFile, "key-file-b", "", "key file for archive B (default: the same key options as A)")
	c.fs.StringVar(&keysB.identity, "identity-b", "", "age identity for archive B")
	if err := c.parse(args); err != nil {
		return err
	}
	a, err := c.open(ctx, c.fs.Arg(0))
	if err != nil {
		return fmt.Errorf("archive A: %w", err)
	}
	defer a.Close()
	if keysB.keyFile != "" || keysB.identity != "" {
		c.keys.keyFile, c.keys.identity = keysB.keyFile, keysB.identity
	}
	b, err := c.open(ctx, c.fs.Arg(1))
	if err != nil {
		return fmt.Errorf("archive B: %w", err)
	}
	defer b.Close()
	res, err := archivediff.Compare(ctx, a, b)
	if err != nil {
		return err
	}
	if *c.json {
		if err := printJSON(res); err != nil {
			return err
		}
	} else {
		for _, d := range res.Differences {
			fmt.Println(d)
		}
		if res.Total > int64(len(res.Differences)) {
			fmt.Printf("... and %d more differences\n", res.Total-int64(len(res.Differences)))
		}
	}
	if !res.Equal() {
		return fmt.Errorf("%w: %d differences in %d records compared", errDiffer, res.Total, res.Compared)
	}
	fmt.Printf("equal: %d records compared\n", res.Compared)
	return nil
}
