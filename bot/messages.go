package bot

import (
	"context"
	"html"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// notice builds an m.notice from text in the bot's small markup: `code`
// spans and line breaks become HTML; everything else is escaped.
func notice(text string) *event.MessageEventContent {
	return &event.MessageEventContent{MsgType: event.MsgNotice, Body: text, Format: event.FormatHTML, FormattedBody: toHTML(text)}
}

func toHTML(text string) string {
	var sb strings.Builder
	for i, part := range strings.Split(text, "`") {
		esc := html.EscapeString(part)
		if i%2 == 1 {
			sb.WriteString("<code>" + esc + "</code>")
		} else {
			sb.WriteString(esc)
		}
	}
	return strings.ReplaceAll(sb.String(), "\n", "<br/>")
}

// send posts text to room, as a reply to replyTo when set; it returns the
// new event's ID ("" when sending failed: logged, not fatal to the bot).
func (b *Bot) send(ctx context.Context, room id.RoomID, replyTo id.EventID, text string) id.EventID {
	content := notice(text)
	if replyTo != "" {
		content.RelatesTo = &event.RelatesTo{InReplyTo: &event.InReplyTo{EventID: replyTo}}
	}
	resp, err := b.cli.SendMessageEvent(context.WithoutCancel(ctx), room, event.EventMessage, content)
	if err != nil {
		b.log.Warn().Err(err).Stringer("room", room).Msg("could not send a message")
		return ""
	}
	return resp.EventID
}

// reply answers the event evt.
func (b *Bot) reply(ctx context.Context, evt *event.Event, text string) id.EventID {
	return b.send(ctx, evt.RoomID, evt.ID, text)
}

// edit replaces the text of the bot's message orig (m.replace).
func (b *Bot) edit(ctx context.Context, room id.RoomID, orig id.EventID, text string) error {
	content := notice(text)
	content.SetEdit(orig)
	_, err := b.cli.SendMessageEvent(context.WithoutCancel(ctx), room, event.EventMessage, content)
	return err
}
