package synapse

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/source"
)

// An archive without the server's private key: the target keeps its own
// key file untouched, the report says which export option carries the
// key, and the archive's public key is suggested for old_signing_keys, so
// that other servers can still verify the restored events.
func TestSigningKeyMissingFromArchive(t *testing.T) {
	ctx := context.Background()
	r := exportFixture(t, "synapse-1.67", source.Options{})
	var public archive.ServerKey
	archive.ReadSection(ctx, r, archive.SectionServerKeys, func(k *archive.ServerKey) error {
		if k.Kind == "own" {
			public = *k
		}
		return nil
	})
	if public.PublicKey == "" || len(public.PrivateKey) != 0 {
		t.Fatalf("want an archive with the public key only, got %+v", public)
	}
	keyFile := filepath.Join(t.TempDir(), "target.signing.key")
	os.WriteFile(keyFile, []byte("ed25519 target AAAA\n"), 0o600)
	target := NewTarget(Config{SigningKey: keyFile})
	res := &importer.Result{Report: &fidelity.Report{}}
	if err := target.installSigningKey(ctx, r, res); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(keyFile); string(data) != "ed25519 target AAAA\n" || len(res.Files) != 0 {
		t.Errorf("the target's key file became %q; files written: %v", data, res.Files)
	}
	if !strings.Contains(res.ConfigAdvice, "old_signing_keys:") || !strings.Contains(res.ConfigAdvice, public.KeyID) ||
		!strings.Contains(res.ConfigAdvice, public.PublicKey) {
		t.Errorf("config advice lacks %s %s:\n%s", public.KeyID, public.PublicKey, res.ConfigAdvice)
	}
	if text := res.Report.String(); !strings.Contains(text, "--private-server-key") {
		t.Errorf("the report does not say how to carry the key:\n%s", text)
	}

	// The target kept the server's key (the same key ID): suggesting it as
	// an old, expired key would have other servers refuse its new events.
	same := "ed25519 " + strings.TrimPrefix(public.KeyID, "ed25519:") + " AAAA\n"
	os.WriteFile(keyFile, []byte(same), 0o600)
	res = &importer.Result{Report: &fidelity.Report{}}
	if err := target.installSigningKey(ctx, r, res); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(res.ConfigAdvice, public.KeyID) {
		t.Errorf("the target's own key is suggested as an old one:\n%s", res.ConfigAdvice)
	}
}
