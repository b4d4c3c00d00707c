package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An import preview by URL (`!import URL`) reads only from Ferry's storage
// and storage.import_from: no file path elsewhere on Ferry's host, no
// other bucket or endpoint. A refusal says where Ferry reads from and how
// to allow more.
func TestImportURLOnlyFromConfiguredLocations(t *testing.T) {
	dir := t.TempDir()
	storageDir := filepath.Join(dir, "archives")
	extraDir := filepath.Join(dir, "incoming")
	outside := filepath.Join(dir, "private")
	for _, d := range []string{storageDir, extraDir, outside, storageDir + "-evil"} {
		os.MkdirAll(d, 0o700)
	}
	os.WriteFile(filepath.Join(outside, "secret.ferry"), []byte("not yours"), 0o600)
	os.Symlink(outside, filepath.Join(storageDir, "link-out"))
	golden, _ := filepath.Glob("../archive/testdata/golden/*plain.ferry")
	if len(golden) == 0 {
		t.Fatal("no golden plaintext archive under archive/testdata/golden")
	}
	data, err := os.ReadFile(golden[0])
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(extraDir, "sample.ferry"), data, 0o600)

	const s3 = "s3://ferry-archives/ferry?endpoint=http://127.0.0.1:9000&region=us-east-1&use_path_style=true"
	r := setup(t, Config{StorageURL: "file://" + storageDir, ImportFrom: []string{"file://" + extraDir, s3}})
	run := func(loc string) (string, error) {
		p, err := r.svc.Preview(context.Background(), PreviewRequest{Location: loc, By: admin})
		if err != nil {
			return "", err
		}
		verdict := "❌ invalid"
		if p.OK() {
			verdict = "✅ valid"
		}
		return verdict + " " + p.Fidelity, nil
	}
	for _, loc := range []string{
		"file:///etc/passwd",
		"file://" + filepath.Join(outside, "secret.ferry"),
		"file://" + storageDir + "/../private/secret.ferry",
		"file://" + storageDir + "/%2e%2e/private/secret.ferry",
		"file://" + storageDir + "-evil/x.ferry",
		"file://" + storageDir + "/link-out/secret.ferry",
		"file://localhost" + storageDir + "/x.ferry",
		"s3://ferry-archives/ferry/x.ferry?endpoint=http://169.254.169.254&region=us-east-1&use_path_style=true",
		"s3://ferry-archives/ferry/x.ferry?endpoint=http://127.0.0.1:9000&region=us-east-1&use_path_style=true&profile=other",
		"s3://other-bucket/ferry/x.ferry?endpoint=http://127.0.0.1:9000&region=us-east-1&use_path_style=true",
		"s3://ferry-archives/elsewhere/x.ferry?endpoint=http://127.0.0.1:9000&region=us-east-1&use_path_style=true",
		"s3://ferry-archives/ferry/../elsewhere/x.ferry?endpoint=http://127.0.0.1:9000&region=us-east-1&use_path_style=true",
		"gs://ferry-archives/ferry/x.ferry",
		"http://169.254.169.254/latest/meta-data",
		"mem://x/y",
	} {
		reply, err := run(loc)
		if err == nil || !strings.Contains(err.Error(), "I don't read archives from") || !strings.Contains(err.Error(), "storage.import_from") ||
			!strings.Contains(err.Error(), "`file://"+storageDir+"`") || strings.Contains(err.Error()[strings.Index(err.Error(), "I read only"):], "127.0.0.1:9000") {
			t.Errorf("%s: %q %v, want a refusal naming the allowed locations (without their parameters)", loc, reply, err)
		}
	}
	// Allowed: an archive in import_from is previewed; a missing one in
	// Ferry's storage is looked for (and not found).
	reply, err := run("file://" + filepath.Join(extraDir, "sample.ferry"))
	if err != nil || !strings.Contains(reply, "✅ valid") {
		t.Errorf("an archive in storage.import_from: %q %v", reply, err)
	}
	if _, err := run("file://" + filepath.Join(storageDir, "archives", "nope.ferry")); err == nil || strings.Contains(err.Error(), "I don't read") {
		t.Errorf("a missing archive in Ferry's storage: %v", err)
	}
	// The same bucket and parameters, in another order: allowed.
	if _, err := allowImport("s3://ferry-archives/ferry/archives/x.ferry?use_path_style=true&region=us-east-1&endpoint=http://127.0.0.1:9000", r.svc.importLocations()); err != nil {
		t.Errorf("a location in the configured bucket: %v", err)
	}
}
