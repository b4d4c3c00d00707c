package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/internal/human"
	"github.com/ferry-matrix/ferry/storage"
)

// followState is what the bot keeps with an export it follows
// (app.View.Follow, saved with SaveFollow), so that a restarted bot
// picks it up again.
type followState struct {
	Room    id.RoomID  `json:"room"`
	ReplyTo id.EventID `json:"reply_to,omitempty"`
	Message id.EventID `json:"message,omitempty"` // the progress message
	Type    string     `json:"type"`
	Reveal  string     `json:"reveal,omitempty"` // a personal export's one-time key link
	Done    bool       `json:"done,omitempty"`   // the outcome notice was posted
}

// follow posts one progress message for an export and edits it in place
// (m.replace) as the job advances — at most every EditInterval, and only
// when the text changed — until the job ends; then it posts the
// completion notice (size, SHA-256, expiring links) or the failure notice
// (cause and next step). It runs in the background until the bot stops;
// a restarted bot carries on (resumeFollows).
//
// reveal, for a personal export, is the one-time link to the user's key.
func (b *Bot) follow(room id.RoomID, replyTo id.EventID, exportID, typ, reveal string) {
	b.followWith(exportID, followState{Room: room, ReplyTo: replyTo, Type: typ, Reveal: reveal})
}

func (b *Bot) followWith(exportID string, f followState) {
	b.mu.Lock()
	ctx := b.runCtx
	b.mu.Unlock()
	b.tracked.Add(1)
	go func() {
		defer b.tracked.Done()
		b.track(ctx, exportID, f)
	}()
}

// resumeFollows picks up the exports a previous run of the bot was
// following: running ones get their progress message edited again, ended
// ones whose outcome was never posted get it now.
func (b *Bot) resumeFollows(ctx context.Context) {
	list, err := b.svc.List(ctx, app.KindExport, 1000)
	if err != nil {
		b.log.Warn().Err(err).Msg("cannot list exports to follow")
		return
	}
	for _, v := range list {
		var f followState
		if v.Follow == "" || json.Unmarshal([]byte(v.Follow), &f) != nil || f.Done {
			continue
		}
		b.log.Info().Str("export", v.ID).Msg("following again after a restart")
		b.followWith(v.ID, f)
	}
}

func (b *Bot) saveFollow(ctx context.Context, exportID string, f followState) {
	raw, err := json.Marshal(f)
	if err == nil {
		err = b.svc.SaveFollow(ctx, exportID, string(raw))
	}
	if err != nil {
		b.log.Warn().Err(err).Str("export", exportID).Msg("cannot save where the export is followed")
	}
}

func (b *Bot) track(ctx context.Context, exportID string, f followState) {
	log := b.log.With().Str("export", exportID).Logger()
	v, err := b.svc.Get(ctx, exportID)
	if err != nil {
		log.Warn().Err(err).Msg("cannot follow export")
		return
	}
	text := progressText(v, f.Type)
	if f.Message == "" {
		if f.Message = b.send(ctx, f.Room, f.ReplyTo, text); f.Message == "" {
			return
		}
		b.saveFollow(ctx, exportID, f)
	} else {
		text = "" // edit at once: the message shows an older state
	}
	lastEdit := time.Now()
	tick := time.NewTicker(b.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if v, err = b.svc.Get(ctx, exportID); err != nil {
			log.Debug().Err(err).Msg("cannot read the export's progress; trying again")
			continue
		}
		ended := !v.Running()
		next := progressText(v, f.Type)
		if next != text && (ended || text == "" || time.Since(lastEdit) >= b.EditInterval) {
			if err := b.edit(ctx, f.Room, f.Message, next); err != nil {
				log.Warn().Err(err).Msg("could not edit the progress message")
			}
			text, lastEdit = next, time.Now()
		}
		if ended {
			if b.send(ctx, f.Room, f.Message, b.outcomeText(ctx, v, f.Reveal)) != "" {
				f.Done = true
				b.saveFollow(ctx, exportID, f)
			}
			return
		}
	}
}

// progressText is the progress message: a text bar, counts, bytes, ETA.
func progressText(v *app.View, typ string) string {
	head := fmt.Sprintf("Export `%s` (%s)", v.ID, typ)
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

// outcomeText is the notice at the end of an export. reveal is the
// one-time key link of a personal export ("" for admins' exports, whose
// key is wrapped to their own age/SSH key).
func (b *Bot) outcomeText(ctx context.Context, v *app.View, reveal string) string {
	switch v.Status {
	case app.StatusCompleted:
		file := v.ArchiveFile()
		l, err := b.svc.DownloadLinks(ctx, v)
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
