package bot

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/commands"
)

// followState is what the bot keeps of an export it follows, in its own
// table (SaveFollow, read back with Follows), so that a restarted bot
// picks it up again. Once the outcome is posted the state is forgotten.
type followState struct {
	Room    id.RoomID  `json:"room"`
	ReplyTo id.EventID `json:"reply_to,omitempty"`
	Message id.EventID `json:"message,omitempty"` // the progress message
	Type    string     `json:"type"`
	Reveal  string     `json:"reveal,omitempty"` // a personal export's one-time key link
	Done    bool       `json:"done,omitempty"`   // the outcome notice was posted (kept by releases before the bot's own table)
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
	follows, err := b.svc.Follows(ctx)
	if err != nil {
		b.log.Warn().Err(err).Msg("cannot read the exports to follow")
		return
	}
	for _, id := range slices.Sorted(maps.Keys(follows)) {
		var f followState
		if json.Unmarshal([]byte(follows[id]), &f) != nil || f.Done {
			b.forgetFollow(ctx, id)
			continue
		}
		b.log.Info().Str("export", id).Msg("following again after a restart")
		b.followWith(id, f)
	}
}

// forgetFollow drops a follow state once there is nothing left to post.
func (b *Bot) forgetFollow(ctx context.Context, exportID string) {
	if err := b.svc.SaveFollow(ctx, exportID, ""); err != nil {
		b.log.Warn().Err(err).Str("export", exportID).Msg("cannot forget where the export was followed")
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
	text := commands.ProgressText(v, f.Type)
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
		next := commands.ProgressText(v, f.Type)
		if next != text && (ended || text == "" || time.Since(lastEdit) >= b.EditInterval) {
			if err := b.edit(ctx, f.Room, f.Message, next); err != nil {
				log.Warn().Err(err).Msg("could not edit the progress message")
			}
			text, lastEdit = next, time.Now()
		}
		if ended {
			if b.send(ctx, f.Room, f.Message, commands.OutcomeText(ctx, b.svc, v, f.Reveal)) != "" {
				b.forgetFollow(ctx, exportID)
			}
			return
		}
	}
}
