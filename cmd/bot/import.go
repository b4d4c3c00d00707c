package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/importer"
	idendrite "github.com/ferry-matrix/ferry/importer/dendrite"
	"github.com/ferry-matrix/ferry/internal/flagvalue"
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
	kind := fs.String("target", "dendrite", "homeserver implementation to import into: dendrite")
	var where targetFlags
	fs.StringVar(&where.config, "config", "", "the target's dendrite.yaml")
	fs.StringVar(&where.helper, "helper", "", "the ferry-dendrite-import helper binary (default: beside bot, $FERRY_DENDRITE_IMPORT, or $PATH)")
	var opts importer.Options
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
	opts.Rooms = rooms
	progress := newImportProgress(os.Stderr, *quiet)
	target, err := newImportTarget(*kind, where, progress.logf)
	if err != nil {
		return err
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
	res, err := importer.Run(ctx, target, r, opts, progress)
	progress.end()
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

// targetFlags say where an import target lives: bot import's flags, and
// an import_targets entry of the config.
type targetFlags struct {
	config string // the target's config file (dendrite.yaml)
	helper string // Dendrite: the ferry-dendrite-import binary
}

// newImportTarget makes the import target of implementation kind: the one
// place that names the implementations (a new one is a new case). log
// receives the target's own lines (its helper's, for Dendrite).
func newImportTarget(kind string, where targetFlags, log func(string, ...any)) (importer.Target, error) {
	switch kind {
	case "dendrite":
		if where.config == "" {
			return nil, fmt.Errorf("--config (the target's dendrite.yaml) is required\n%s", importUsage)
		}
		return idendrite.NewTarget(idendrite.Config{ConfigPath: where.config, Helper: where.helper, Log: log}), nil
	}
	return nil, fmt.Errorf("--target %q: only dendrite is supported", kind)
}

func printImport(w io.Writer, m *archive.Manifest, res *importer.Result, dry bool) {
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
			name = res.Target.Name
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

// logf prints one of the target's own lines.
func (p *importProgress) logf(format string, a ...any) {
	if !p.quiet {
		p.out(fmt.Sprintf(format, a...), false)
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
