// Command bot is Ferry's CLI: archive tools and, for now, a demo export.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if path := os.Getenv("FERRY_CPUPROFILE"); path != "" { // for scripts/bench-export investigations
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(ctx, os.Args[1:]); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bot:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  bot demo [--dendrite-dir D] [--keep] a real Dendrite, the bot, an admin typing !export full, download and verify (make demo)
  bot demo --sample [--out DIR]        offline: export the embedded sample server into an encrypted archive, verify and inspect it
  bot export --source synapse --db URL --signing-key F --to OUT [filters] (--recipient R | --passphrase-env V | --plaintext)
  bot export --source dendrite --config dendrite.yaml --to OUT [filters] (key delivery as above)
                                       export a homeserver (bot export -h for all options)
  bot import --target dendrite --config dendrite.yaml [key options] [--dry-run] [--migration] ARCHIVE
                                       import into a stopped, empty Dendrite (bot import -h)
  bot migrate --db URL --signing-key F [--media-store D] [--synapse-config Y] --config dendrite.yaml [--migration]
                                       Synapse -> Dendrite in one step: export, validate, import, report (bot migrate -h)
  bot run -c config.yaml               the Matrix bot (appservice) with everything serve runs
  bot serve -c config.yaml             job workers, schedules, the HTTP API (/api/v1/exports), /metrics, /download
  bot generate-registration -c config.yaml [-o registration.yaml]   (or bot -g) the appservice registration for the homeserver
  bot archive inspect [key options] ARCHIVE
  bot archive verify  [key options] ARCHIVE   exit 0 only when every check passes
  bot archive pack    ARCHIVE OUT.ferry        stored form (directory/prefix) -> single file
  bot archive key     [key options] ARCHIVE    print this archive's key line (opens it only; for !import previews)
  bot archive decrypt [key options] [--allow-secrets] ARCHIVE OUT   plaintext copy (OUT: directory, bucket URL or FILE.ferry)
  bot archive extract [key options] [--jsonl] ARCHIVE DIR          every file into a new directory
  bot archive diff    [key options] [--key-file-b F] A B           compare record by record; exit 1 when they differ
(inspect, verify and diff take --json)

ARCHIVE is a directory, a packed file, or a bucket URL (s3://bucket/path?endpoint=...).
key options: --key-file FILE (key.age or plain key line), --identity FILE (age or SSH identity),
             --passphrase-env VAR (age passphrase from an environment variable)`

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command given\n%s", usage)
	}
	switch args[0] {
	case "demo":
		return runDemo(ctx, args[1:])
	case "export":
		return runExport(ctx, args[1:])
	case "serve":
		return runServe(ctx, args[1:])
	case "run":
		return runBot(ctx, args[1:])
	case "import":
		return runImport(ctx, args[1:])
	case "migrate":
		return runMigrate(ctx, args[1:])
	case "generate-registration", "-g":
		return runGenerateRegistration(ctx, args[1:])
	case "archive":
		if len(args) < 2 {
			return fmt.Errorf("archive needs a subcommand\n%s", usage)
		}
		switch args[1] {
		case "inspect":
			return runInspect(ctx, args[2:])
		case "verify":
			return runVerify(ctx, args[2:])
		case "pack":
			return runPack(ctx, args[2:])
		case "decrypt":
			return runDecrypt(ctx, args[2:])
		case "extract":
			return runExtract(ctx, args[2:])
		case "diff":
			return runDiff(ctx, args[2:])
		case "key":
			return runKey(ctx, args[2:])
		}
		return fmt.Errorf("unknown archive subcommand %q\n%s", args[1], usage)
	case "help", "-h", "--help":
		fmt.Println(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}
