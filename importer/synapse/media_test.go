package synapse

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
)

// The real fixture's media comes back into Synapse 1.160's media store:
// every file and every pre-generated thumbnail is served byte for byte.
func TestRestoredMedia(t *testing.T) {
	ctx := context.Background()
	r := exportFixture(t, "synapse-1.67", source.Options{})
	s := testenv.NewSynapse(t, r.Core().ServerName)
	media := func(ctx context.Context, tx pgx.Tx, r *archive.Reader) (int64, error) {
		return restoreMedia(ctx, tx, r, s.MediaStore, importer.NoProgress)
	}
	counts := restoreSlices(t, s, r, restoreUsers, media)
	if _, err := os.Stat(filepath.Join(s.MediaStore, stagingDir)); err == nil {
		t.Error("the staging directory was left in the media store")
	}
	s.Start(t)
	token, code, err := s.Login("nina", "nina-Fixtur3pw")
	if code != 200 {
		t.Fatal(err)
	}
	files, thumbnails := 0, 0
	err = archive.ReadSection(ctx, r, archive.SectionMedia, func(m *archive.Media) error {
		if m.Origin != r.Core().ServerName || m.Path == "" {
			return nil
		}
		if code, sum := download(t, s, token, fmt.Sprintf("/_matrix/client/v1/media/download/%s/%s", m.Origin, m.MediaID)); code != 200 || sum != m.SHA256 {
			t.Errorf("media %s: HTTP %d, SHA-256 %s, want %s", m.MediaID, code, sum, m.SHA256)
		}
		files++
		for _, th := range m.Thumbnails {
			code, sum := download(t, s, token, fmt.Sprintf("/_matrix/client/v1/media/thumbnail/%s/%s?width=%d&height=%d&method=%s", m.Origin, m.MediaID, th.Width, th.Height, th.Method))
			if code != 200 || sum != th.SHA256 {
				t.Errorf("thumbnail %dx%d %s of %s: HTTP %d, SHA-256 %s, want %s", th.Width, th.Height, th.Method, m.MediaID, code, sum, th.SHA256)
			}
			thumbnails++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// INVENTORY.md: 31 thumbnails.
	restored := counts[1]
	if files == 0 || int64(files) != restored || thumbnails != 31 {
		t.Fatalf("checked %d media files (restored %v) and %d thumbnails", files, counts, thumbnails)
	}
}
