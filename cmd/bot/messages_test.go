package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/importer"
	idendrite "github.com/ferry-matrix/ferry/importer/dendrite"
)

// packedSample writes the sample server as a packed archive dir/name and
// returns its path, key and archive ID.
func packedSample(t *testing.T, dir, name string) (string, keywrap.Key, string) {
	t.Helper()
	key := keywrap.New()
	stored := filepath.Join(dir, name+".stored")
	id := archivetest.WriteSample(t, stored, key, 3)
	packed := filepath.Join(dir, name)
	if err := run(context.Background(), []string{"archive", "pack", stored, packed}); err != nil {
		t.Fatal(err)
	}
	return packed, key, id
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Each bad input a new admin may give says what is wrong and what to do:
// the messages are golden (testdata/messages/*.golden, -update rewrites
// them). A downloaded archive verifies as README.md shows it, its key file
// found beside it.
func TestMessages(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Chdir(dir)

	identity, _ := age.GenerateX25519Identity()
	idFile := writeFile(t, "id.txt", []byte(identity.String()+"\n"))
	stranger, _ := age.GenerateX25519Identity()
	writeFile(t, "stranger.txt", []byte(stranger.String()+"\n"))
	writeFile(t, "random.bin", []byte("\x89PNG\r\n\x1a\nnot a key at all"))

	// download.ferry with download.ferry.key.age, as a download link names them.
	download, key, id := packedSample(t, ".", "download.ferry")
	wrapped, err := keywrap.Wrap(key, id, identity.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, download+".key.age", wrapped)
	if err := run(ctx, []string{"archive", "verify", "--identity", idFile, download}); err != nil {
		t.Fatalf("verify of a packed archive with its key file beside it: %v", err)
	}
	// A packed archive whose key file lies elsewhere.
	alone, key2, id2 := packedSample(t, ".", "alone.ferry")
	wrapped2, _ := keywrap.Wrap(key2, id2, identity.Recipient())
	writeFile(t, "elsewhere.key.age", wrapped2)
	if err := run(ctx, []string{"archive", "verify", "--identity", idFile, "--key-file", "elsewhere.key.age", alone}); err != nil {
		t.Fatalf("verify with --key-file: %v", err)
	}
	// A passphrase-wrapped one.
	secret, key3, id3 := packedSample(t, ".", "secret.ferry")
	byPass, err := keywrap.WrapPassphrase(key3, id3, "the right passphrase", 10)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, secret+".key.age", byPass)
	t.Setenv("RIGHT_PASS", "the right passphrase")
	t.Setenv("WRONG_PASS", "not the passphrase at all")
	t.Setenv("EMPTY_PASS", "")
	if err := run(ctx, []string{"archive", "verify", "--passphrase-env", "RIGHT_PASS", secret}); err != nil {
		t.Fatalf("verify with the passphrase: %v", err)
	}
	// A corrupted copy: verify fails and previews no fidelity.
	corrupt := filepath.Join(dir, "corrupt.ferry")
	data, _ := os.ReadFile(download)
	data[len(data)/2] ^= 0x40
	writeFile(t, corrupt, data)
	writeFile(t, corrupt+".key.age", wrapped)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"verify-packed-key-missing", []string{"archive", "verify", "--identity", idFile, alone}},
		{"verify-no-key", []string{"archive", "verify", download}},
		{"key-file-is-identity", []string{"archive", "verify", "--key-file", idFile, download}},
		{"key-file-random", []string{"archive", "verify", "--identity", idFile, "--key-file", "random.bin", download}},
		{"key-file-needs-identity", []string{"archive", "verify", "--key-file", download + ".key.age", download}},
		{"key-file-of-another-archive", []string{"archive", "verify", "--identity", idFile, "--key-file", "elsewhere.key.age", download}},
		{"identity-is-key-file", []string{"archive", "verify", "--identity", download + ".key.age", download}},
		{"identity-not-a-recipient", []string{"archive", "verify", "--identity", "stranger.txt", download}},
		{"wrong-passphrase", []string{"archive", "verify", "--passphrase-env", "WRONG_PASS", secret}},
		{"empty-passphrase", []string{"archive", "verify", "--passphrase-env", "EMPTY_PASS", secret}},
		{"passphrase-for-recipients", []string{"archive", "verify", "--passphrase-env", "WRONG_PASS", download}},
		{"identity-for-passphrase", []string{"archive", "verify", "--identity", idFile, secret}},
		{"verify-corrupt", []string{"archive", "verify", "--identity", idFile, corrupt}},
		{"db-not-a-url", []string{"export", "--db", "synapse", "--plaintext", "--to", "out"}},
		{"db-not-postgres", []string{"export", "--db", "mysql://ferry:s3cret@db/synapse", "--plaintext", "--to", "out"}},
		{"db-malformed", []string{"export", "--db", "postgres://ferry:s3 cret@db:5432/synapse", "--plaintext", "--to", "out"}},
		{"import-synapse-flags-without-target", []string{"import", "--db", "postgres://synapse@db/synapse", "--media-store", "media",
			"--synapse-config", "homeserver.yaml", download}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(ctx, tc.args)
			if err == nil {
				t.Fatal("no error")
			}
			text := errorText(err, dir)
			if strings.Contains(text, "s3cret") || strings.Contains(text, "age-encryption.org") || strings.Contains(text, "failed to read header") {
				t.Errorf("the message leaks a secret or a raw age error: %s", text)
			}
			golden(t, "messages/"+tc.name, text)
		})
	}
	if _, err := os.Stat("out"); err == nil {
		t.Error("a refused export left output behind")
	}
}

// Export progress counts a stream's records against that stream's count
// only, and media files apart from records; summaries name a source
// without a schema number it does not have.
func TestProgressAndSummaryText(t *testing.T) {
	got := progressText(exporter.Progress{Stream: "media", Streams: 13, Done: 12, Records: 53, StreamRecords: 4, Blobs: 4, BlobBytes: 2048})
	if want := "media (stream 13 of 13): 4 records; 53 records and 4 media files (2.0 KiB) in all"; got != want {
		t.Errorf("progress:\n got %s\nwant %s", got, want)
	}
	got = progressText(exporter.Progress{Stream: "media", Streams: 13, Done: 13, Records: 53, StreamRecords: 4, Blobs: 4, BlobBytes: 2048})
	if want := "all 13 streams done; 53 records and 4 media files (2.0 KiB) in all"; got != want {
		t.Errorf("progress:\n got %s\nwant %s", got, want)
	}
	got = progressText(exporter.Progress{Stream: "users", Streams: 13, Done: 1, Records: 3, StreamRecords: 2, StreamTotal: 3})
	if want := "users (stream 2 of 13): 2 of 3 records; 3 records and 0 media files (0 B) in all"; got != want {
		t.Errorf("progress:\n got %s\nwant %s", got, want)
	}
	for _, tc := range []struct {
		impl, version string
		schema        int
		want          string
	}{{"dendrite", "v0.15.2", 0, "dendrite v0.15.2"}, {"dendrite", "", 0, "dendrite"}, {"synapse", "", 94, "synapse, schema 94"}} {
		if got := sourceName(tc.impl, tc.version, tc.schema); got != tc.want {
			t.Errorf("sourceName(%q, %q, %d) = %q, want %q", tc.impl, tc.version, tc.schema, got, tc.want)
		}
	}
}

// bot demo --sample leaves nothing behind in the temporary directory (its
// identity is a secret key), unless --keep asks for it.
func TestSampleDemoLeavesNothing(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	if err := run(context.Background(), []string{"demo", "--sample", "--messages", "5"}); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("the demo left %s behind", left[0].Name())
	}
	if err := run(context.Background(), []string{"demo", "--sample", "--messages", "5", "--keep"}); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "ferry-demo-*", "identity.txt")); len(left) != 1 {
		t.Errorf("--keep kept %v", left)
	}
}

// bot migrate's refusals say which side is at fault and point at no
// archive that is gone.
func TestMigrateRefusals(t *testing.T) {
	invalid := &importer.Result{Validation: &archive.ValidationReport{Problems: []archive.Problem{
		{Check: archive.CheckMissingAuthEvent, Severity: archive.SeverityError, Where: "$abc", Message: "auth event $def is not in the archive"}}}}
	valid := &importer.Result{Validation: &archive.ValidationReport{}}
	for _, tc := range []struct {
		name string
		keep string
		res  *importer.Result
		err  error
	}{
		{"migrate-source-invalid", "", invalid, importer.Refuse("the archive failed validation")},
		{"migrate-source-invalid-kept", "move.ferry", invalid, importer.Refuse("the archive failed validation")},
		{"migrate-target-refused", "", valid, importer.Refuse("the target Dendrite is not empty (1 users, 0 rooms)")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &migrateFlags{keep: tc.keep, from: "synapse", to: "dendrite", where: targetFlags{config: "/etc/dendrite/dendrite.yaml"}}
			golden(t, "messages/"+tc.name, errorText(m.refusal(tc.res, tc.err), "/nowhere"))
		})
	}
}

// The section table of an import says why a count in the target differs
// from the archive's, so that it does not read as data loss.
func TestImportSectionTable(t *testing.T) {
	res := &importer.Result{Validation: &archive.ValidationReport{}, Target: &importer.State{Name: "Dendrite v0.15.2"},
		InArchive: map[string]int64{archive.SectionStateSnapshots: 274, archive.SectionPushers: 1, archive.SectionFilters: 1, archive.SectionUsers: 12},
		InTarget:  map[string]int64{archive.SectionStateSnapshots: 129, archive.SectionPushers: 0, archive.SectionFilters: 0, archive.SectionUsers: 12}}
	var out strings.Builder
	printImport(&out, &archive.Manifest{ArchiveID: "ARCHIVE-ID"}, res, idendrite.NewTarget(idendrite.Config{}).Capabilities(), false)
	golden(t, "messages/import-section-table", out.String())
}
