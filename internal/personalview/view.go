// Package personalview renders a personal export (archive type "user")
// as one HTML page a person can read without tools: their profile,
// devices, account data, rooms with the messages they can see (their own
// marked), and their media. It streams: records are written as they are
// read, so a long history does not grow memory.
package personalview

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"time"

	"github.com/ferry-matrix/ferry/archive"
)

// Render writes the page for the archive r of user.
func Render(ctx context.Context, w io.Writer, r *archive.Reader, user string) error {
	esc := html.EscapeString
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	m := r.Manifest()
	p(`<section id="data"><h1>Your data on %s</h1>`+"\n", esc(m.Export.ServerName))
	p("<p>Exported %s for %s. The archive holds the same, in the format other servers can import.</p>\n", esc(m.CreatedAt.UTC().Format("2006-01-02 15:04 UTC")), esc(user))

	p("<h2>Account</h2>\n<ul>\n")
	if err := archive.ReadSection(ctx, r, archive.SectionUsers, func(u *archive.User) error {
		p("<li>Display name: %s</li><li>Avatar: %s</li><li>Created: %s</li>\n", esc(u.DisplayName), esc(u.AvatarURL), when(u.CreatedTS))
		for _, t := range u.Threepids {
			p("<li>%s: %s</li>\n", esc(t.Medium), esc(t.Address))
		}
		return nil
	}); err != nil {
		return err
	}
	p("</ul>\n<h2>Devices</h2>\n<table><tr><th>device</th><th>name</th><th>last seen</th><th>from</th></tr>\n")
	if err := archive.ReadSection(ctx, r, archive.SectionDevices, func(d *archive.Device) error {
		p("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", esc(d.DeviceID), esc(d.DisplayName), when(d.LastSeenTS), esc(d.LastSeenIP))
		return nil
	}); err != nil {
		return err
	}
	p("</table>\n<h2>Settings (account data)</h2>\n<ul>\n")
	if err := archive.ReadSection(ctx, r, archive.SectionAccountData, func(a *archive.AccountData) error {
		where := "global"
		if a.RoomID != "" {
			where = "room " + a.RoomID
		}
		p("<li><b>%s</b> (%s): <code>%s</code></li>\n", esc(a.Type), esc(where), esc(clip(string(a.Content), 400)))
		return nil
	}); err != nil {
		return err
	}
	p("</ul>\n<h2>Rooms and messages</h2>\n<p>The messages you can see in each room, oldest first; yours are marked.</p>\n")
	room := ""
	if err := archive.ReadSection(ctx, r, archive.SectionEvents, func(e *archive.Event) error {
		if e.RoomID != room {
			if room != "" {
				p("</table>\n")
			}
			room = e.RoomID
			p("<h3>%s</h3>\n<table>\n", esc(room))
		}
		var ev struct {
			Type     string          `json:"type"`
			Sender   string          `json:"sender"`
			TS       int64           `json:"origin_server_ts"`
			StateKey *string         `json:"state_key"`
			Content  json.RawMessage `json:"content"`
		}
		if json.Unmarshal(e.JSON, &ev) != nil {
			return nil
		}
		var c struct {
			Body       string `json:"body"`
			Membership string `json:"membership"`
			Name       string `json:"name"`
			Topic      string `json:"topic"`
		}
		json.Unmarshal(ev.Content, &c)
		text := c.Body
		switch {
		case e.Redacted:
			text = "[deleted]"
		case ev.Type == "m.room.member" && ev.StateKey != nil:
			text = fmt.Sprintf("%s: %s", *ev.StateKey, c.Membership)
		case ev.Type == "m.room.name":
			text = "room name: " + c.Name
		case ev.Type == "m.room.topic":
			text = "topic: " + c.Topic
		case text == "":
			text = ev.Type
		}
		mine := ""
		if ev.Sender == user {
			mine = ` class="mine"`
		}
		who := esc(ev.Sender)
		if ev.Sender == user {
			who += " (you)"
		}
		p("<tr%s><td>%s</td><td>%s</td><td>%s</td></tr>\n", mine, when(ev.TS), who, esc(clip(text, 2000)))
		return nil
	}); err != nil {
		return err
	}
	if room != "" {
		p("</table>\n")
	}
	p("<h2>Files you uploaded</h2>\n<ul>\n")
	if err := archive.ReadSection(ctx, r, archive.SectionMedia, func(md *archive.Media) error {
		p("<li>%s (%s, %d bytes, %s) mxc://%s/%s</li>\n", esc(md.UploadName), esc(md.ContentType), md.Size, when(md.CreatedTS), esc(md.Origin), esc(md.MediaID))
		return nil
	}); err != nil {
		return err
	}
	p("</ul>\n</section>\n")
	return nil
}

func when(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04 UTC")
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
