package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
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
			return o, fmt.Errorf("read key file: %w", err)
		}
		o.KeyFile = data
	}
	if k.identity != "" {
		data, err := os.ReadFile(k.identity)
		if err != nil {
			return o, fmt.Errorf("read identity: %w", err)
		}
		ids, err := keywrap.ParseIdentities(data)
		if err != nil {
			return o, err
		}
		o.Identities = append(o.Identities, ids...)
	}
	if k.passphraseEnv != "" {
		p := os.Getenv(k.passphraseEnv)
		if p == "" {
			return o, fmt.Errorf("environment variable %s is empty", k.passphraseEnv)
		}
		id, err := keywrap.PassphraseIdentity(p)
		if err != nil {
			return o, err
		}
		o.Identities = append(o.Identities, []age.Identity{id}...)
	}
	return o, nil
}

func openArchive(ctx context.Context, name string, args []string) (*archive.Reader, *flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var kf keyFlags
	kf.register(fs)
	fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() != 1 {
		return nil, nil, fmt.Errorf("%s takes exactly one archive location\n%s", name, usage)
	}
	opts, err := kf.options()
	if err != nil {
		return nil, nil, err
	}
	r, err := archive.OpenLocation(ctx, fs.Arg(0), opts)
	return r, fs, err
}

func runInspect(ctx context.Context, args []string) error {
	r, fs, err := openArchive(ctx, "archive inspect", args)
	if err != nil {
		return err
	}
	defer r.Close()
	m := r.Manifest()
	if fs.Lookup("json").Value.String() == "true" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	return printInspect(os.Stdout, m)
}

func printInspect(w io.Writer, m *archive.Manifest) error {
	fmt.Fprintf(w, "archive    %s (format %s v%d.%d)\n", m.ArchiveID, m.Format, m.Version, m.Revision)
	fmt.Fprintf(w, "created    %s\n", m.CreatedAt.Format("2006-01-02 15:04:05Z07:00"))
	fmt.Fprintf(w, "server     %s (source %s %s, schema %d)\n", m.Export.ServerName, m.Export.Source.Implementation, m.Export.Source.Version, m.Export.Source.SchemaVersion)
	fmt.Fprintf(w, "export     %s\n", m.Export.Type)
	fmt.Fprintf(w, "encryption %s\n", m.Encryption)
	fmt.Fprintf(w, "parts      %d data + 1 final\n", len(m.Parts))
	var blobs, blobBytes int64
	for _, p := range m.Parts {
		blobs += p.Blobs
		blobBytes += p.BlobBytes
	}
	fmt.Fprintf(w, "media      %d blobs, %d bytes\n", blobs, blobBytes)
	counts := map[string]int64{}
	for _, f := range m.Files {
		counts[archive.SectionOf(f.Path)] += f.Records
	}
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "records:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-32s %d\n", n, counts[n])
	}
	if unknown := m.UnknownItems(); len(unknown) > 0 {
		fmt.Fprintf(w, "skipped (unknown to this reader, kept on re-export): %v\n", unknown)
	}
	if len(m.Sensitive) > 0 {
		fmt.Fprintf(w, "sensitive: %v\n", m.Sensitive)
	}
	return nil
}

func runVerify(ctx context.Context, args []string) error {
	r, _, err := openArchive(ctx, "archive verify", args)
	if err != nil {
		return fmt.Errorf("verify failed: %w", err)
	}
	defer r.Close()
	var files, blobs int
	err = r.Walk(ctx, func(f *archive.File) error {
		if f.Blob != nil {
			blobs++
		} else {
			files++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("verify failed: %w", err)
	}
	fmt.Printf("ok: archive %s: %d parts, %d files and %d media blobs verified\n", r.Manifest().ArchiveID, len(r.Manifest().Parts)+1, files, blobs)
	return nil
}

func runPack(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("archive pack takes ARCHIVE OUT\n%s", usage)
	}
	src, err := container.Open(ctx, args[0])
	if err != nil {
		return err
	}
	defer src.Close()
	out, err := os.OpenFile(args[1], os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := container.Pack(ctx, src, out); err != nil {
		out.Close()
		os.Remove(args[1])
		return err
	}
	return out.Close()
}
