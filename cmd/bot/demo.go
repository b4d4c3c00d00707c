package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/archive/sample"
)

// newDemoCmd is the main job: by default the bot end to end on a real
// Dendrite, or with --homeserver synapse on a real Synapse (runBotDemo);
// with --sample, offline, the embedded sample
// server exported into an archive encrypted to a fresh age identity
// (write-only: the writer only sees the public recipient), then opened
// with the identity, every part, file and blob verified, and inspected.
func newDemoCmd() *cobra.Command {
	var d demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show Ferry end to end: a real Dendrite, the bot, !export full, download and verify",
		Long: `Demo runs the main job end to end (what make demo runs): Dendrite v0.15.2 on SQLite, Ferry's bot on
its embedded defaults, an admin who types !export full in a room, the progress message, the download
through the expiring link, and the verification with the admin's own key. Everything is removed at
the end unless --keep.

With --homeserver synapse (make demo HOMESERVER=synapse) the same story runs on Synapse 1.160 from
the chroot scripts/lib/synapse.sh installs (as root), on a private PostgreSQL cluster.

With --sample it needs no homeserver: the embedded sample server is exported into an archive
encrypted to a fresh age identity, then verified and inspected.`,
		Example: `  make demo                                  # builds Dendrite once, then runs bot demo --dendrite-dir ...
  bot demo --dendrite-dir ~/.cache/ferry/dendrite-v0.15.2
  make demo HOMESERVER=synapse               # installs Synapse once, then runs bot demo --homeserver synapse ...
  bot demo --homeserver synapse --synapse-chroot ~/.cache/ferry/synapse-1.160.0
  bot demo --sample                          # offline
  bot demo --sample --out /tmp/sample        # keep the archive and its identity`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return d.run(cmd.Context(), cmd.OutOrStdout()) },
	}
	cmd.Flags().BoolVar(&d.sample, "sample", false, "export the embedded sample server instead (no homeserver needed)")
	cmd.Flags().StringVar(&d.homeserver, "homeserver", "dendrite", "`NAME` of the homeserver to run the story on: dendrite or synapse")
	cmd.Flags().StringVar(&d.synapseChroot, "synapse-chroot", "", "`DIR`: the chroot with Synapse 1.160 (make demo HOMESERVER=synapse builds it; default $FERRY_SYNAPSE_CHROOT)")
	cmd.Flags().StringVar(&d.dendriteDir, "dendrite-dir", "", "`DIR` with Dendrite v0.15.2's dendrite, generate-config and generate-keys (make demo builds them; default $FERRY_DENDRITE_DIR)")
	cmd.Flags().BoolVar(&d.keep, "keep", false, "keep the demo's directory (configs, databases, logs, archive; with --sample the archive and its identity)")
	cmd.Flags().StringVar(&d.out, "out", "", "with --sample: `DIR` to write into, kept (default: a new temporary directory, removed)")
	cmd.Flags().IntVar(&d.messages, "messages", 200, "with --sample: `N` messages in the sample room")
	return cmd
}

type demoFlags struct {
	sample, keep                                bool
	homeserver, dendriteDir, synapseChroot, out string
	messages                                    int
}

// demoHomeservers are the homeservers the demo runs on: the environment
// variable naming their files when the flag does not, what to say when
// neither does, and how one starts.
var demoHomeservers = map[string]struct {
	env, missing string
	start        func(path string) startDemoHomeserver
}{
	"dendrite": {"FERRY_DENDRITE_DIR", "the demo runs a real Dendrite: run `make demo` (it builds Dendrite once), pass --dendrite-dir", demoDendrite},
	"synapse": {"FERRY_SYNAPSE_CHROOT", "the demo runs a real Synapse: run `make demo HOMESERVER=synapse` (it installs Synapse in a chroot once, as root), pass --synapse-chroot",
		demoSynapse},
}

func (d *demoFlags) run(ctx context.Context, stdout io.Writer) error {
	if !d.sample {
		hs, ok := demoHomeservers[d.homeserver]
		if !ok {
			return fmt.Errorf("--homeserver %q: the demo runs on dendrite or synapse", d.homeserver)
		}
		path := map[string]string{"dendrite": d.dendriteDir, "synapse": d.synapseChroot}[d.homeserver]
		if path == "" {
			path = os.Getenv(hs.env)
		}
		if path == "" {
			return errors.New(hs.missing + ", or use --sample for the offline archive demo")
		}
		return runBotDemo(ctx, hs.start(path), d.keep)
	}
	dir := d.out
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "ferry-demo-"); err != nil {
			return err
		}
		if !d.keep {
			// The directory holds an identity (a secret key): nothing of the
			// demo stays behind unless asked for.
			defer func() {
				if os.RemoveAll(dir) == nil {
					fmt.Fprintf(stdout, "\nremoved %s (the archive and the identity that opens it); --keep or --out DIR keeps them\n", dir)
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
	if err := sample.Write(w, d.messages); err != nil {
		w.Abort()
		return fmt.Errorf("export sample server: %w", err)
	}
	if _, err := w.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "exported the sample server to %s (key wrapped to %s)\n\n", archiveDir, recipient)
	keys := &keyFlags{identity: idFile}
	if err := runVerify(ctx, stdout, keys, false, archiveDir); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	if err := runInspect(ctx, stdout, keys, false, archiveDir); err != nil {
		return err
	}
	if d.keep || d.out != "" {
		fmt.Fprintf(stdout, "\nkept in %s: the archive (archive/) and the identity that opens it (identity.txt, a secret key: delete it when done)\n", dir)
		fmt.Fprintf(stdout, "the stock age tool opens the key: age -d -i %s %s\n", idFile, filepath.Join(archiveDir, container.KeyObjectName))
	}
	return nil
}
