package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/ferry-matrix/ferry/internal/flagvalue"
	"io"
	"os"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
	idendrite "github.com/ferry-matrix/ferry/importer/dendrite"
)

const importUsage = `usage: bot import --target dendrite --config dendrite.yaml [key options] [--dry-run] [--rooms !a:x,...]
         [--migration] [--force-non-empty] [--helper PATH] [--json] ARCHIVE
Imports ARCHIVE into a stopped Dendrite v0.15.2 whose databases Dendrite has initialised (start it
once, then stop it) and that has no users or rooms. Everything is checked before the first write;
an interrupted import run again continues where it stopped. --dry-run checks and reports only.
--migration (encrypted migration exports only) keeps devices and access tokens: clients stay logged in.
key options: --key-file FILE, --identity FILE, --passphrase-env VAR (as for bot archive).`

func runImport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	target := fs.String("target", "dendrite", "homeserver implementation to import into: dendrite")
	var opts idendrite.Options
	fs.StringVar(&opts.Config, "config", "", "the target's dendrite.yaml")
	fs.StringVar(&opts.Helper, "helper", "", "the ferry-dendrite-import helper binary (default: beside bot, $FERRY_DENDRITE_IMPORT, or $PATH)")
	fs.BoolVar(&opts.DryRun, "dry-run", false, "validate the archive, check the target and report what would be imported; write nothing")
	fs.BoolVar(&opts.Migration, "migration", false, "keep devices and access tokens (encrypted archives exported with access tokens)")
	fs.BoolVar(&opts.AllowNonEmpty, "force-non-empty", false, "import into a target that already has users or rooms")
	var rooms flagvalue.List
	fs.Var(&rooms, "rooms", "import only these rooms (users, account data and media are still imported)")
	var keys keyFlags
	keys.register(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	quiet := fs.Bool("quiet", false, "no progress lines")
	fs.Usage = func() { fmt.Fprintln(os.Stderr, importUsage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("import takes one ARCHIVE\n%s", importUsage)
	}
	if *target != "dendrite" {
		return fmt.Errorf("--target %q: only dendrite is supported", *target)
	}
	if opts.Config == "" {
		return fmt.Errorf("--config (the target's dendrite.yaml) is required\n%s", importUsage)
	}
	opts.Rooms = rooms
	if !*quiet {
		opts.Log = func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	}
	oo, err := keys.options()
	if err != nil {
		return err
	}
	r, err := archive.OpenLocation(ctx, fs.Arg(0), oo)
	if err != nil {
		return fmt.Errorf("import refused before any write: %w", err)
	}
	defer r.Close()
	res, err := idendrite.Import(ctx, r, opts)
	if res != nil && (err == nil || res.Validation != nil && !res.Validation.OK()) {
		if *asJSON {
			if perr := printJSON(res); perr != nil && err == nil {
				err = perr
			}
		} else {
			printImport(os.Stdout, r.Manifest(), res, opts.DryRun)
		}
	}
	return err
}

func printImport(w io.Writer, m *archive.Manifest, res *idendrite.Result, dry bool) {
	if res.Validation != nil && !res.Validation.OK() {
		printValidation(w, m, res.Validation)
	}
	if res.InArchive == nil {
		return
	}
	verb := "imported"
	if dry {
		verb = "would import"
		fmt.Fprintf(w, "dry run: the target holds %d users and %d rooms; nothing was written\n", res.TargetUsers, res.TargetRooms)
	}
	fmt.Fprintf(w, "%-32s %12s %12s\n", "section", "in archive", map[bool]string{true: "", false: "in target"}[dry])
	for _, s := range sortedSections(res.InArchive) {
		target := ""
		if res.InTarget != nil {
			target = fmt.Sprint(res.InTarget[s])
		}
		fmt.Fprintf(w, "%-32s %12d %12s\n", s, res.InArchive[s], target)
	}
	if res.Skipped > 0 {
		fmt.Fprintf(w, "%d items were already in the target (a rerun) and were skipped\n", res.Skipped)
	}
	if res.Report != nil {
		fmt.Fprint(w, res.Report)
	}
	if res.OldKeysConfig != "" {
		fmt.Fprintf(w, "The archive's retired signing keys stay verifiable once you add to dendrite.yaml, under global:\n%s",
			indent(res.OldKeysConfig, "  "))
	}
	if !dry && res.InTarget != nil {
		fmt.Fprintf(w, "%s %s; start Dendrite on it\n", verb, m.ArchiveID)
	}
}

func sortedSections(m map[string]int64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}
