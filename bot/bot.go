// Package bot is Ferry's Matrix appservice bot: it answers chat
// commands in admin rooms and direct chats, and posts job progress and
// schedule announcements. It holds no export logic of its own: it
// authorises each command and runs its handler (package commands), which
// calls one verb of the application layer (commands.Service, app.Service:
// the verbs the HTTP API calls too) and formats the reply; the bot is the
// handlers' chat side (commands.Chat).
//
// Events arrive as appservice transactions (mautrix's appservice package
// authenticates them with hs_token and drops a transaction ID seen
// before); the bot additionally drops an event ID seen before (the same
// event in two transactions), its own messages, and commands sent before
// it started (the homeserver redelivers after downtime: an old command is
// answered with a note, never run late).
package bot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/commands"
	"github.com/ferry-matrix/ferry/config"
	"github.com/ferry-matrix/ferry/internal/ratelimit"
)

// Bot is one running appservice bot.
type Bot struct {
	cfg *config.Config
	svc commands.Service
	as  *appservice.AppService
	cli *mautrix.Client
	me  id.UserID
	log zerolog.Logger

	commands commands.Registry
	// started: commands sent before it are not run.
	started time.Time

	// EditInterval is the shortest time between two edits of a progress
	// message (default 3 s); PollInterval how often a job's progress is
	// read (default 1 s).
	EditInterval, PollInterval time.Duration

	seen    *recent
	confirm pending[pendingAction]
	unlock  pending[pendingUnlock]
	// perUser limits each user's commands (limits.commands_per_minute):
	// a loop or a script in a room can't queue work without end.
	perUser *ratelimit.Limiter
	mu      sync.Mutex
	dms     map[id.UserID]id.RoomID // unencrypted direct chats the bot opened
	warned  map[id.UserID]time.Time // last encrypted-room explanation per user
	runCtx  context.Context
	tracked sync.WaitGroup
}

// New builds the bot from Ferry's configuration (validated) and the
// application service it shares with the HTTP API.
func New(cfg *config.Config, svc commands.Service, log zerolog.Logger) (*Bot, error) {
	reg := &appservice.Registration{ID: cfg.Appservice.ID, URL: cfg.Appservice.Address,
		AppToken: string(cfg.Appservice.ASToken), ServerToken: string(cfg.Appservice.HSToken),
		SenderLocalpart: cfg.Appservice.BotLocalpart}
	as, err := appservice.CreateFull(appservice.CreateOpts{Registration: reg, HomeserverDomain: cfg.Homeserver.Domain,
		HomeserverURL: cfg.Homeserver.URL})
	if err != nil {
		return nil, fmt.Errorf("appservice: %w", err)
	}
	as.Log = log.With().Str("component", "appservice").Logger()
	b := &Bot{cfg: cfg, svc: svc, as: as, me: as.BotMXID(), log: log,
		EditInterval: 3 * time.Second, PollInterval: time.Second, runCtx: context.Background(),
		seen: newRecent(4096), perUser: ratelimit.New(float64(cfg.Limits.CommandsPerMinute)/60, max(cfg.Limits.CommandsPerMinute/2, 1)), dms: map[id.UserID]id.RoomID{}, warned: map[id.UserID]time.Time{}}
	b.cli = as.BotClient()
	h := &commands.Handlers{Svc: svc, Chat: chat{b}, Config: cfg, Registry: &b.commands}
	b.commands.Add(h.List()...)
	return b, nil
}

// Handler serves the appservice API (/_matrix/app/v1/...): mount it on
// Ferry's listener beside the HTTP API.
func (b *Bot) Handler() http.Handler { return b.as.Router }

// UserID is the bot's Matrix ID.
func (b *Bot) UserID() id.UserID { return b.me }

// Run makes sure the bot user exists and handles events until ctx ends.
// Progress trackers stop with it.
func (b *Bot) Run(ctx context.Context) error {
	b.mu.Lock()
	b.started = time.Now()
	b.runCtx = ctx
	b.mu.Unlock()
	// The homeserver may start after Ferry: keep trying.
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		err := b.as.BotIntent().EnsureRegistered(ctx)
		if err == nil {
			break
		}
		b.log.Warn().Err(err).Stringer("retry_in", wait).Msg("homeserver not reachable or bot user not registered yet")
		select {
		case <-ctx.Done():
			return fmt.Errorf("bot user %s: %w", b.me, err)
		case <-time.After(wait):
		}
	}
	b.as.Ready = true
	b.log.Info().Stringer("user", b.me).Msg("bot ready")
	b.resumeFollows(ctx)
	for {
		select {
		case <-ctx.Done():
			b.tracked.Wait()
			return nil
		case evt := <-b.as.Events:
			b.handle(ctx, evt)
		}
	}
}

// handle is one event of a transaction.
func (b *Bot) handle(ctx context.Context, evt *event.Event) {
	if evt.ID != "" && !b.seen.add(string(evt.ID)) {
		return // the same event in a second transaction
	}
	if evt.Sender == b.me {
		return
	}
	log := b.log.With().Stringer("room", evt.RoomID).Stringer("sender", evt.Sender).Stringer("event", evt.ID).Logger()
	switch evt.Type {
	case event.StateMember:
		if evt.GetStateKey() == b.me.String() {
			b.onMembership(ctx, evt, log)
		}
	case event.EventMessage:
		msg := evt.Content.AsMessage()
		if msg == nil || msg.RelatesTo != nil && msg.RelatesTo.GetReplaceID() != "" {
			return // edits are not commands
		}
		if !strings.HasPrefix(strings.TrimSpace(msg.Body), commands.Prefix) {
			return
		}
		if sent := time.UnixMilli(evt.Timestamp); sent.Before(b.started) {
			log.Info().Time("sent", sent).Msg("command sent before the bot started: not run")
			b.audit(ctx, evt.Sender, evt.RoomID, firstWord(msg.Body), "ignored", "sent before the bot started")
			b.reply(ctx, evt, fmt.Sprintf("I was not running when this was sent (%s), so I did not run it late: "+
				"a surprise export hours later helps nobody. Send it again if you still want it.", sent.UTC().Format("2006-01-02 15:04:05 UTC")))
			return
		}
		b.onCommand(ctx, evt, msg.Body, log)
	case event.EventEncrypted:
		b.onEncrypted(ctx, evt, log)
	}
}

// onMembership joins admin rooms and direct chats from local users when
// invited, and refuses every other invite.
func (b *Bot) onMembership(ctx context.Context, evt *event.Event, log zerolog.Logger) {
	mem := evt.Content.AsMember()
	if mem == nil || mem.Membership != event.MembershipInvite {
		return
	}
	why := ""
	switch {
	case b.isAdminRoom(evt.RoomID):
	case mem.IsDirect && b.isLocal(evt.Sender):
	case mem.IsDirect:
		why = "Ferry answers direct chats from users of " + b.cfg.Homeserver.Domain + " only"
	default:
		why = "Ferry joins only its admin rooms (admins.rooms in its config) and direct chats"
	}
	if why != "" {
		log.Info().Str("reason", why).Msg("refusing invite")
		b.audit(ctx, evt.Sender, evt.RoomID, "invite", "refused", why)
		if _, err := b.cli.LeaveRoom(ctx, evt.RoomID, &mautrix.ReqLeave{Reason: why}); err != nil {
			log.Warn().Err(err).Msg("could not reject the invite")
		}
		return
	}
	if _, err := b.cli.JoinRoomByID(ctx, evt.RoomID); err != nil {
		log.Warn().Err(err).Msg("could not join")
		return
	}
	log.Info().Msg("joined")
	b.audit(ctx, evt.Sender, evt.RoomID, "invite", "joined", "")
}

// onCommand parses, authorises and runs one command.
func (b *Bot) onCommand(ctx context.Context, evt *event.Event, body string, log zerolog.Logger) {
	inv, err := b.commands.Parse(body)
	if errors.Is(err, commands.ErrNotCommand) {
		return
	}
	if err != nil {
		b.audit(ctx, evt.Sender, evt.RoomID, firstWord(body), "usage error", err.Error())
		b.reply(ctx, evt, err.Error())
		return
	}
	if !b.perUser.Allow(evt.Sender.String()) {
		b.audit(ctx, evt.Sender, evt.RoomID, firstWord(body), "refused", "rate limited")
		b.reply(ctx, evt, fmt.Sprintf("You are sending commands faster than I take them (%d a minute); wait a minute and send it again.", b.cfg.Limits.CommandsPerMinute))
		return
	}
	inv.Sender, inv.RoomID, inv.EventID = evt.Sender.String(), evt.RoomID.String(), evt.ID.String()
	inv.Admin = b.isAdmin(evt.Sender) && b.isAdminRoom(evt.RoomID)
	name := inv.Command.Name()
	if refusal := b.authorise(inv); refusal != "" {
		log.Info().Str("command", name).Msg("refused")
		b.audit(ctx, evt.Sender, evt.RoomID, name, "refused", refusal)
		b.reply(ctx, evt, refusal)
		return
	}
	text, err := inv.Command.Run(ctx, inv)
	if err != nil {
		log.Warn().Err(err).Str("command", name).Msg("command failed")
		b.audit(ctx, evt.Sender, evt.RoomID, name, "failed", err.Error())
		b.reply(ctx, evt, "✗ "+err.Error())
		return
	}
	b.audit(ctx, evt.Sender, evt.RoomID, name, "ok", strings.Join(inv.Args, " "))
	if text != "" {
		b.reply(ctx, evt, text)
	}
}

// authorise returns why inv may not run ("" when it may): admin commands
// need a configured admin in a configured admin room; every command needs
// a user of this homeserver.
func (b *Bot) authorise(inv *commands.Invocation) string {
	sender, room := id.UserID(inv.Sender), id.RoomID(inv.RoomID)
	switch {
	case !b.isLocal(sender):
		return "Ferry answers users of " + b.cfg.Homeserver.Domain + " only."
	case !inv.Command.Admin:
		return ""
	case !b.isAdmin(sender):
		return fmt.Sprintf("Only Ferry's admins may use %s, and you are not one of them (admins are listed in Ferry's config, admins.users). `!help` shows what you can do.", inv.Command.Name())
	case !b.isAdminRoom(room):
		return fmt.Sprintf("%s works only in an admin room (admins.rooms in Ferry's config), not here.", inv.Command.Name())
	}
	return ""
}

func (b *Bot) isAdmin(u id.UserID) bool {
	for _, a := range b.cfg.Admins.Users {
		if a == u.String() {
			return true
		}
	}
	return false
}

func (b *Bot) isAdminRoom(r id.RoomID) bool {
	for _, a := range b.cfg.Admins.Rooms {
		if a == r.String() {
			return true
		}
	}
	return false
}

func (b *Bot) isLocal(u id.UserID) bool { return u.Homeserver() == b.cfg.Homeserver.Domain }

// onEncrypted answers a message the bot cannot read: appservices get no
// to-device messages on Dendrite, so the bot has no room keys. It opens
// (or reuses) an unencrypted direct chat and explains, at most once an
// hour per user.
func (b *Bot) onEncrypted(ctx context.Context, evt *event.Event, log zerolog.Logger) {
	if !b.isLocal(evt.Sender) {
		return
	}
	b.mu.Lock()
	if time.Since(b.warned[evt.Sender]) < time.Hour {
		b.mu.Unlock()
		return
	}
	b.warned[evt.Sender] = time.Now()
	b.mu.Unlock()
	room, err := b.directChat(ctx, evt.Sender)
	if err != nil {
		log.Warn().Err(err).Msg("could not open a direct chat to explain encryption")
		return
	}
	b.send(ctx, room, "", "I can't read encrypted messages (an appservice bot receives no room keys), so I could not see "+
		"what you sent in "+evt.RoomID.String()+". Send your command here instead: this chat is not encrypted. "+
		"I never ask for keys or passphrases in chat, so nothing secret needs to be typed here.")
}

// directChat returns the unencrypted direct chat the bot opened with u,
// creating it the first time, and again when the one it opened holds
// others now (or u left it).
func (b *Bot) directChat(ctx context.Context, u id.UserID) (id.RoomID, error) {
	b.mu.Lock()
	room, ok := b.dms[u]
	b.mu.Unlock()
	if ok {
		only, err := b.onlyWith(ctx, room, u)
		if err != nil {
			return "", fmt.Errorf("could not read who is in our direct chat: %w", err)
		}
		if only {
			return room, nil
		}
	}
	resp, err := b.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{u}, IsDirect: true,
		Preset: "trusted_private_chat", Name: "Ferry"})
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	b.dms[u] = resp.RoomID
	b.mu.Unlock()
	return resp.RoomID, nil
}

// audit records a command, refusal or membership decision (a failed
// write is logged: the event it records has happened).
func (b *Bot) audit(ctx context.Context, sender id.UserID, room id.RoomID, action, outcome, detail string) {
	if err := b.svc.Audit(ctx, app.AuditEntry{Actor: sender.String(), Via: "room " + room.String(),
		Action: "command " + action, Outcome: outcome, Detail: detail}); err != nil {
		b.log.Error().Err(err).Msg("audit log write failed")
	}
}

func firstWord(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// recent is a bounded set of recently seen IDs.
type recent struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring []string
	next int
}

func newRecent(n int) *recent { return &recent{set: map[string]struct{}{}, ring: make([]string, n)} }

// add reports whether s was new.
func (r *recent) add(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.set[s]; ok {
		return false
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = s
	r.next = (r.next + 1) % len(r.ring)
	r.set[s] = struct{}{}
	return true
}
