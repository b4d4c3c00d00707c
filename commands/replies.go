package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/internal/human"
	"github.com/ferry-matrix/ferry/storage"
)

// ProgressText is a job's progress message (label: "full", "your data",
// ...): a text bar, counts, bytes, ETA.
func ProgressText(v *app.View, label string) string {
	head := fmt.Sprintf("Export `%s` (%s)", v.ID, label)
	p := v.Progress
	switch v.Status {
	case app.StatusQueued:
		return head + ": queued, waiting for a worker"
	case app.StatusCompleted:
		return fmt.Sprintf("%s: done, %s\n%s 100%%", head, human.Bytes(v.Size), bar(100))
	case app.StatusFailed:
		return fmt.Sprintf("%s: failed at %.0f%%", head, p.Percent)
	case app.StatusCancelled:
		return fmt.Sprintf("%s: cancelled at %.0f%%", head, p.Percent)
	case app.StatusDeleted:
		return head + ": deleted"
	}
	line := fmt.Sprintf("%s: exporting %s\n%s %.0f%%", head, p.Stream, bar(p.Percent), p.Percent)
	if p.Total > 0 {
		line += fmt.Sprintf(" · %d of %d records", p.Records, p.Total)
	} else if p.Records > 0 {
		line += fmt.Sprintf(" · %d records", p.Records)
	}
	if p.Blobs > 0 {
		line += fmt.Sprintf(" · %d media files, %s", p.Blobs, human.Bytes(p.BlobBytes))
	}
	if p.EstimatedBytes > 0 {
		line += " · about " + human.Bytes(p.EstimatedBytes) + " in all"
	}
	if p.ETA != "" {
		line += " · ETA " + p.ETA
	}
	return line
}

// bar draws a 20-cell text progress bar.
func bar(percent float64) string { return human.Bar(percent/100, 20, "█", "░") }

// OutcomeText is the notice at the end of an export, with fresh download
// links from svc. reveal is the one-time key link of a personal export
// ("" for admins' exports, whose key is wrapped to their own age/SSH key).
func OutcomeText(ctx context.Context, svc Service, v *app.View, reveal string) string {
	switch v.Status {
	case app.StatusCompleted:
		file := v.ArchiveFile()
		l, err := svc.DownloadLinks(ctx, v)
		if err != nil {
			return fmt.Sprintf("Export `%s` is complete (`%s`, %s, SHA-256 `%s`), but I can't make a download link: %v. Fetch it from the bucket directly.",
				v.ID, file, human.Bytes(v.Size), v.SHA256, err)
		}
		expires := l.Expires.Format("2006-01-02 15:04 UTC")
		if reveal != "" {
			return fmt.Sprintf("✅ Your data is ready: `%s`, %s, SHA-256 `%s`.\n"+
				"Archive: %s\nKey file: %s\n"+
				"Your personal key and a readable view of your data, shown once: %s (open it, press the button, save the key line as `mydata-key.txt` and the page if you like; nobody else ever sees them).\n"+
				"The links expire %s. Open the archive with `bot archive extract --identity mydata-key.txt --key-file %s%s %s DIR`.",
				file, human.Bytes(v.Size), v.SHA256, l.Archive, l.Key, reveal, expires, file, storage.KeyExt, file)
		}
		return fmt.Sprintf("✅ Export `%s` is ready: `%s`, %s, SHA-256 `%s`.\n"+
			"Archive: %s\nKey (encrypted to your own key; Ferry can't read it): %s\n"+
			"Both links expire %s. Check the download with `bot archive verify --identity YOUR-IDENTITY-FILE --key-file %s%s %s`.",
			v.ID, file, human.Bytes(v.Size), v.SHA256, l.Archive, l.Key, expires, file, storage.KeyExt, file)
	case app.StatusCancelled:
		return fmt.Sprintf("Export `%s` was cancelled (%s); nothing was published.", v.ID, strings.TrimPrefix(v.Error, "cancelled "))
	case app.StatusFailed:
		return fmt.Sprintf("❌ Export `%s` failed: %s\nNothing was published. Fix the cause and run the command again; `!export status %s` shows the details.",
			v.ID, v.Error, v.ID)
	}
	return fmt.Sprintf("Export `%s` ended: %s", v.ID, v.Status)
}
