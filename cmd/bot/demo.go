package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/archive/sample"
)

// runDemo is the main job: by default the bot end to end on a real
// Dendrite (runBotDemo); with --sample, offline, the embedded sample
// server exported into an archive encrypted to a fresh age identity
// (write-only: the writer only sees the public recipient), then opened
// with the identity, every part, file and blob verified, and inspected.
func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	sampleOnly := fs.Bool("sample", false, "export the embedded sample server instead (no homeserver needed)")
	dendriteDir := fs.String("dendrite-dir", os.Getenv("FERRY_DENDRITE_DIR"), "directory with Dendrite v0.15.2's dendrite, generate-config and generate-keys (make demo builds them)")
	keep := fs.Bool("keep", false, "keep the demo's directory (configs, databases, logs, archive; with --sample the archive and its identity)")
	out := fs.String("out", "", "with --sample: directory to write into (default: a new temporary directory)")
	messages := fs.Int("messages", 200, "with --sample: messages in the sample room")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*sampleOnly {
		if *dendriteDir == "" {
			return errors.New("the demo runs a real Dendrite: run `make demo` (it builds Dendrite once), pass --dendrite-dir, or use --sample for the offline archive demo")
		}
		return runBotDemo(ctx, *dendriteDir, *keep)
	}
	dir := *out
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "ferry-demo-"); err != nil {
			return err
		}
		if !*keep {
			// The directory holds an identity (a secret key): nothing of the
			// demo stays behind unless asked for.
			defer func() {
				if os.RemoveAll(dir) == nil {
					fmt.Printf("\nremoved %s (the archive and the identity that opens it); --keep or --out DIR keeps them\n", dir)
				}
			}()
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	identity, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	idFile := filepath.Join(dir, "identity.txt")
	if err := os.WriteFile(idFile, []byte(identity.String()+"\n"), 0o600); err != nil {
		return err
	}
	archiveDir := filepath.Join(dir, "archive")
	bucket, err := container.OpenDirBucket(archiveDir, true)
	if err != nil {
		return err
	}
	defer bucket.Close()
	store := &container.BucketStore{Bucket: bucket}
	key := keywrap.New()
	w, err := archive.NewWriter(ctx, store, archive.WriterOptions{Key: key, Export: sample.Export(), PartSize: 64 << 10, ChunkSize: 16 << 10})
	if err != nil {
		return err
	}
	recipient := identity.Recipient()
	wrapped, err := keywrap.Wrap(key, w.ArchiveID(), recipient)
	if err != nil {
		return err
	}
	if err := store.WriteKey(ctx, wrapped); err != nil {
		return err
	}
	if err := sample.Write(w, *messages); err != nil {
		w.Abort()
		return fmt.Errorf("export sample server: %w", err)
	}
	if _, err := w.Close(); err != nil {
		return err
	}
	fmt.Printf("exported the sample server to %s (key wrapped to %s)\n\n", archiveDir, recipient)
	if err := runVerify(ctx, []string{"--identity", idFile, archiveDir}); err != nil {
		return err
	}
	fmt.Println()
	if err := runInspect(ctx, []string{"--identity", idFile, archiveDir}); err != nil {
		return err
	}
	if *keep || *out != "" {
		fmt.Printf("\nkept in %s: the archive (archive/) and the identity that opens it (identity.txt, a secret key: delete it when done)\n", dir)
		fmt.Printf("the stock age tool opens the key: age -d -i %s %s\n", idFile, filepath.Join(archiveDir, container.KeyObjectName))
	}
	return nil
}
