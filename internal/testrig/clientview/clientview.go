// Package clientview records what a homeserver shows its users through the
// client-server API only: for each user, after logging in with a password,
// the joined and invited rooms, each joined room's full timeline (via
// /messages, oldest first) and current state, profiles, account data, tags,
// push rules, and the bytes of media. Two views of the same server before
// and after a move compare equal when nothing a client can see changed: the
// acceptance check of an import.
package clientview

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// Login is one user to look through.
type Login struct {
	Localpart, Password string
	// AccountDataTypes are global account data types to read.
	AccountDataTypes []string
}

// View is what the users saw.
type View struct {
	Users map[string]*UserView       `json:"users"` // by user ID
	Media map[string]string          `json:"media"` // mxc URI -> sha256 of the download
	Rooms map[string][]TimelineEvent `json:"rooms"` // room ID -> timeline, as its first joined user saw it
}

// UserView is one user's view.
type UserView struct {
	Joined      []string                   `json:"joined"`
	Invited     []string                   `json:"invited"`
	Profile     json.RawMessage            `json:"profile"`
	AccountData map[string]json.RawMessage `json:"account_data"`
	Tags        map[string]json.RawMessage `json:"tags"`  // room -> m.tag content
	State       map[string][]string        `json:"state"` // room -> sorted "type|state_key|event_id"
	PushRules   json.RawMessage            `json:"push_rules"`
	Token       string                     `json:"-"`
}

// TimelineEvent is an event as /messages returns it, without the parts
// that legitimately differ between servers (unsigned: age, transaction IDs).
type TimelineEvent struct {
	EventID  string          `json:"event_id"`
	Type     string          `json:"type"`
	Sender   string          `json:"sender"`
	StateKey *string         `json:"state_key,omitempty"`
	Content  json.RawMessage `json:"content"`
	TS       int64           `json:"origin_server_ts"`
	// PrevContent is a state event's unsigned.prev_content: the content it
	// replaced, without which a display-name change reads as a join.
	PrevContent json.RawMessage `json:"prev_content,omitempty"`
	Unsigned    *struct {
		PrevContent json.RawMessage `json:"prev_content"`
	} `json:"unsigned,omitempty"`
}

// Client calls one homeserver.
type Client struct {
	URL        string
	ServerName string
	HTTP       *http.Client
}

func (c *Client) do(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return &HTTPError{Method: method, Path: path, Status: resp.StatusCode, Body: string(data)}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// HTTPError is a non-200 answer.
type HTTPError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// Login logs a user in with a password and returns the access token.
func (c *Client) Login(ctx context.Context, localpart, password string) (string, error) {
	var out struct {
		AccessToken string `json:"access_token"`
	}
	err := c.do(ctx, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": localpart}, "password": password}, &out)
	return out.AccessToken, err
}

// Capture logs every user in and records what they see. media lists mxc
// URIs to download (as the first user).
func (c *Client) Capture(ctx context.Context, logins []Login, media []string) (*View, error) {
	v := &View{Users: map[string]*UserView{}, Media: map[string]string{}, Rooms: map[string][]TimelineEvent{}}
	var anyToken string
	for _, l := range logins {
		tok, err := c.Login(ctx, l.Localpart, l.Password)
		if err != nil {
			return nil, fmt.Errorf("%s logs in: %w", l.Localpart, err)
		}
		anyToken = tok
		uid := "@" + l.Localpart + ":" + c.ServerName
		u, err := c.user(ctx, uid, tok, l, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", uid, err)
		}
		v.Users[uid] = u
	}
	for _, mxc := range media {
		sum, err := c.Download(ctx, anyToken, mxc)
		if err != nil {
			return nil, err
		}
		v.Media[mxc] = sum
	}
	return v, nil
}

func (c *Client) user(ctx context.Context, uid, tok string, l Login, v *View) (*UserView, error) {
	u := &UserView{AccountData: map[string]json.RawMessage{}, Tags: map[string]json.RawMessage{}, State: map[string][]string{}, Token: tok}
	var sync struct {
		Rooms struct {
			Join   map[string]json.RawMessage `json:"join"`
			Invite map[string]json.RawMessage `json:"invite"`
		} `json:"rooms"`
	}
	if err := c.do(ctx, "GET", "/_matrix/client/v3/sync?timeout=0", tok, nil, &sync); err != nil {
		return nil, err
	}
	for r := range sync.Rooms.Join {
		u.Joined = append(u.Joined, r)
	}
	for r := range sync.Rooms.Invite {
		u.Invited = append(u.Invited, r)
	}
	sort.Strings(u.Joined)
	sort.Strings(u.Invited)
	if err := c.do(ctx, "GET", "/_matrix/client/v3/profile/"+url.PathEscape(uid), tok, nil, &u.Profile); err != nil {
		return nil, err
	}
	u.Profile = canonical(u.Profile)
	for _, typ := range l.AccountDataTypes {
		var raw json.RawMessage
		if err := c.do(ctx, "GET", "/_matrix/client/v3/user/"+url.PathEscape(uid)+"/account_data/"+url.PathEscape(typ), tok, nil, &raw); err != nil {
			return nil, err
		}
		u.AccountData[typ] = canonical(raw)
	}
	if err := c.do(ctx, "GET", "/_matrix/client/v3/pushrules/", tok, nil, &u.PushRules); err != nil {
		return nil, err
	}
	u.PushRules = canonical(u.PushRules)
	for _, room := range u.Joined {
		var tags json.RawMessage
		if err := c.do(ctx, "GET", "/_matrix/client/v3/user/"+url.PathEscape(uid)+"/rooms/"+url.PathEscape(room)+"/tags", tok, nil, &tags); err != nil {
			return nil, err
		}
		u.Tags[room] = canonical(tags)
		var state []struct {
			EventID  string `json:"event_id"`
			Type     string `json:"type"`
			StateKey string `json:"state_key"`
		}
		if err := c.do(ctx, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/state", tok, nil, &state); err != nil {
			return nil, err
		}
		for _, s := range state {
			u.State[room] = append(u.State[room], s.Type+"|"+s.StateKey+"|"+s.EventID)
		}
		sort.Strings(u.State[room])
		if _, seen := v.Rooms[room]; !seen {
			tl, err := c.Timeline(ctx, tok, room)
			if err != nil {
				return nil, err
			}
			v.Rooms[room] = tl
		}
	}
	return u, nil
}

// Timeline pages /messages backwards to the start of the room and returns
// the events oldest first (each once: servers may repeat the page edge).
func (c *Client) Timeline(ctx context.Context, tok, room string) ([]TimelineEvent, error) {
	var out []TimelineEvent
	seen := map[string]bool{}
	from := ""
	for page := 0; page < 10000; page++ {
		q := url.Values{"dir": {"b"}, "limit": {"100"}}
		if from != "" {
			q.Set("from", from)
		}
		var res struct {
			Chunk []TimelineEvent `json:"chunk"`
			End   string          `json:"end"`
		}
		if err := c.do(ctx, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/messages?"+q.Encode(), tok, nil, &res); err != nil {
			return nil, err
		}
		fresh := 0
		for _, e := range res.Chunk {
			if seen[e.EventID] {
				continue
			}
			seen[e.EventID] = true
			e.Content = canonical(e.Content)
			if e.Unsigned != nil && len(e.Unsigned.PrevContent) > 0 {
				e.PrevContent = canonical(e.Unsigned.PrevContent)
			}
			e.Unsigned = nil
			out = append(out, e)
			fresh++
		}
		if res.End == "" || fresh == 0 {
			break
		}
		from = res.End
	}
	slices.Reverse(out)
	return out, nil
}

// Download fetches an mxc URI (authenticated media) and returns the
// SHA-256 of its bytes.
func (c *Client) Download(ctx context.Context, tok, mxc string) (string, error) {
	rest, ok := strings.CutPrefix(mxc, "mxc://")
	if !ok {
		return "", fmt.Errorf("not an mxc URI: %s", mxc)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", c.URL+"/_matrix/client/v1/media/download/"+rest, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("download %s: HTTP %d: %s", mxc, resp.StatusCode, b)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Send sends a text message and returns its event ID.
func (c *Client) Send(ctx context.Context, tok, room, txn, text string) (string, error) {
	var out struct {
		EventID string `json:"event_id"`
	}
	err := c.do(ctx, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/send/m.room.message/"+url.PathEscape(txn), tok,
		map[string]string{"msgtype": "m.text", "body": text}, &out)
	return out.EventID, err
}

// SyncTimelineIDs runs an initial /sync and returns the event IDs of each
// joined room's timeline.
func (c *Client) SyncTimelineIDs(ctx context.Context, tok string) (map[string][]string, error) {
	var sync struct {
		Rooms struct {
			Join map[string]struct {
				Timeline struct {
					Events []struct {
						EventID string `json:"event_id"`
					} `json:"events"`
				} `json:"timeline"`
			} `json:"join"`
		} `json:"rooms"`
	}
	if err := c.do(ctx, "GET", "/_matrix/client/v3/sync?timeout=0", tok, nil, &sync); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for room, j := range sync.Rooms.Join {
		for _, e := range j.Timeline.Events {
			out[room] = append(out[room], e.EventID)
		}
	}
	return out, nil
}

// Diff lists every difference between two views, as readable lines.
func Diff(want, got *View) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, uid := range slices.Sorted(maps.Keys(want.Users)) {
		w, g := want.Users[uid], got.Users[uid]
		if g == nil {
			add("%s: missing", uid)
			continue
		}
		if !slices.Equal(w.Joined, g.Joined) {
			add("%s: joined %v, want %v", uid, g.Joined, w.Joined)
		}
		if !slices.Equal(w.Invited, g.Invited) {
			add("%s: invited %v, want %v", uid, g.Invited, w.Invited)
		}
		if !bytes.Equal(w.Profile, g.Profile) {
			add("%s: profile %s, want %s", uid, g.Profile, w.Profile)
		}
		if !bytes.Equal(w.PushRules, g.PushRules) {
			add("%s: push rules differ:\n got %s\nwant %s", uid, g.PushRules, w.PushRules)
		}
		for _, typ := range slices.Sorted(maps.Keys(w.AccountData)) {
			if !bytes.Equal(w.AccountData[typ], g.AccountData[typ]) {
				add("%s: account data %s = %s, want %s", uid, typ, g.AccountData[typ], w.AccountData[typ])
			}
		}
		for _, room := range slices.Sorted(maps.Keys(w.Tags)) {
			if !bytes.Equal(w.Tags[room], g.Tags[room]) {
				add("%s: tags in %s = %s, want %s", uid, room, g.Tags[room], w.Tags[room])
			}
		}
		for _, room := range slices.Sorted(maps.Keys(w.State)) {
			if !slices.Equal(w.State[room], g.State[room]) {
				add("%s: state of %s differs: got %d entries, want %d (first difference: %s)", uid, room, len(g.State[room]), len(w.State[room]), firstDiff(w.State[room], g.State[room]))
			}
		}
	}
	for _, room := range slices.Sorted(maps.Keys(want.Rooms)) {
		w, g := want.Rooms[room], got.Rooms[room]
		if len(w) != len(g) {
			add("room %s: %d timeline events, want %d", room, len(g), len(w))
		}
		for i := range min(len(w), len(g)) {
			a, b := w[i], g[i]
			if a.EventID != b.EventID || a.Type != b.Type || a.Sender != b.Sender || !bytes.Equal(a.Content, b.Content) || a.TS != b.TS {
				add("room %s: timeline event %d is %s %s %s, want %s %s %s", room, i, b.EventID, b.Type, b.Content, a.EventID, a.Type, a.Content)
				break
			}
			if !bytes.Equal(a.PrevContent, b.PrevContent) {
				add("room %s: timeline event %d (%s %s) has prev_content %s, want %s", room, i, b.EventID, b.Type, b.PrevContent, a.PrevContent)
				break
			}
		}
	}
	for _, mxc := range slices.Sorted(maps.Keys(want.Media)) {
		if want.Media[mxc] != got.Media[mxc] {
			add("media %s: sha256 %q, want %q", mxc, got.Media[mxc], want.Media[mxc])
		}
	}
	return out
}

func firstDiff(a, b []string) string {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return "missing " + x
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return "extra " + x
		}
	}
	return "order"
}

func canonical(raw json.RawMessage) json.RawMessage {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	out, _ := json.Marshal(v)
	return out
}

// WhoAmI returns the user and device an access token belongs to.
func (c *Client) WhoAmI(ctx context.Context, tok string) (user, device string, err error) {
	var out struct {
		UserID   string `json:"user_id"`
		DeviceID string `json:"device_id"`
	}
	err = c.do(ctx, "GET", "/_matrix/client/v3/account/whoami", tok, nil, &out)
	return out.UserID, out.DeviceID, err
}

// KeysQuery returns /keys/query for users (all their devices), in
// canonical JSON without the "failures" map and without the devices'
// "unsigned" annotations (server-local: Dendrite 0.15.2 reports there the
// display name of another user's device of the same ID).
func (c *Client) KeysQuery(ctx context.Context, tok string, users []string) (json.RawMessage, error) {
	devices := map[string][]string{}
	for _, u := range users {
		devices[u] = []string{}
	}
	var out map[string]json.RawMessage
	if err := c.do(ctx, "POST", "/_matrix/client/v3/keys/query", tok, map[string]any{"device_keys": devices}, &out); err != nil {
		return nil, err
	}
	delete(out, "failures")
	var devicesByUser map[string]map[string]map[string]json.RawMessage
	if err := json.Unmarshal(out["device_keys"], &devicesByUser); err != nil {
		return nil, err
	}
	for _, devs := range devicesByUser {
		for _, d := range devs {
			delete(d, "unsigned")
		}
	}
	out["device_keys"], _ = json.Marshal(devicesByUser)
	b, _ := json.Marshal(out)
	return canonical(b), nil
}

// StateContent returns the content of one state event of a room.
func (c *Client) StateContent(ctx context.Context, tok, room, typ, key string) (map[string]any, error) {
	var out map[string]any
	err := c.do(ctx, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/state/"+url.PathEscape(typ)+"/"+url.PathEscape(key), tok, nil, &out)
	return out, err
}

// Get fetches a client-server API path (e.g. "/_matrix/client/v3/pushrules/global/content/x")
// into out.
func (c *Client) Get(ctx context.Context, tok, path string, out any) error {
	return c.do(ctx, "GET", path, tok, nil, out)
}

// Post sends body as JSON to a client-server API path and decodes the
// answer into out.
func (c *Client) Post(ctx context.Context, tok, path string, body, out any) error {
	return c.do(ctx, "POST", path, tok, body, out)
}

// Found is one event a server-side search found.
type Found struct {
	EventID string         `json:"event_id"`
	Type    string         `json:"type"`
	Content map[string]any `json:"content"`
}

// Search asks the server's search (/search, room events) for term in one
// room, under the given keys ("content.body", "content.name",
// "content.topic"), and returns the events found, as ranked.
func (c *Client) Search(ctx context.Context, tok, room, term string, keys ...string) ([]Found, error) {
	body := map[string]any{"search_categories": map[string]any{"room_events": map[string]any{
		"search_term": term, "keys": keys, "filter": map[string]any{"rooms": []string{room}}}}}
	var out struct {
		Categories struct {
			RoomEvents struct {
				Results []struct {
					Result Found `json:"result"`
				} `json:"results"`
			} `json:"room_events"`
		} `json:"search_categories"`
	}
	if err := c.Post(ctx, tok, "/_matrix/client/v3/search", body, &out); err != nil {
		return nil, err
	}
	var found []Found
	for _, r := range out.Categories.RoomEvents.Results {
		found = append(found, r.Result)
	}
	return found, nil
}

// Directory is what a user finds in the server's directories: the public
// room directory's room IDs and, per search term, the user directory's
// user IDs, each sorted.
type Directory struct {
	PublicRooms []string
	Users       map[string][]string
}

// Directories reads the room directory and searches the user directory for
// each term.
func (c *Client) Directories(ctx context.Context, tok string, terms ...string) (*Directory, error) {
	d := &Directory{Users: map[string][]string{}}
	var rooms struct {
		Chunk []struct {
			RoomID string `json:"room_id"`
		} `json:"chunk"`
	}
	if err := c.Get(ctx, tok, "/_matrix/client/v3/publicRooms", &rooms); err != nil {
		return nil, err
	}
	for _, r := range rooms.Chunk {
		d.PublicRooms = append(d.PublicRooms, r.RoomID)
	}
	sort.Strings(d.PublicRooms)
	for _, term := range terms {
		var found struct {
			Results []struct {
				UserID string `json:"user_id"`
			} `json:"results"`
		}
		if err := c.Post(ctx, tok, "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": term, "limit": 50}, &found); err != nil {
			return nil, err
		}
		ids := []string{}
		for _, u := range found.Results {
			ids = append(ids, u.UserID)
		}
		sort.Strings(ids)
		d.Users[term] = ids
	}
	return d, nil
}

// Portable returns a copy of v without what two homeserver implementations
// show differently for the same data, to compare views across a move
// between them: a room without tags reads as {"tags":{}} (Dendrite shows
// null), and of the push rules only the users' own rules remain (each
// server serves its own default rules, in its own form).
func Portable(v *View) *View {
	out := &View{Users: map[string]*UserView{}, Media: v.Media, Rooms: v.Rooms}
	for uid, u := range v.Users {
		c := *u
		c.Tags = map[string]json.RawMessage{}
		for room, tags := range u.Tags {
			var t struct {
				Tags map[string]json.RawMessage `json:"tags"`
			}
			if json.Unmarshal(tags, &t) == nil && len(t.Tags) == 0 {
				tags = json.RawMessage(`{"tags":{}}`)
			}
			c.Tags[room] = tags
		}
		c.PushRules = ownPushRules(u.PushRules)
		out.Users[uid] = &c
	}
	return out
}

// ownPushRules keeps the rules whose IDs do not start with "." (the
// server's defaults do).
func ownPushRules(rules json.RawMessage) json.RawMessage {
	var rs struct {
		Global map[string][]map[string]json.RawMessage `json:"global"`
	}
	if json.Unmarshal(rules, &rs) != nil {
		return rules
	}
	own := map[string][]map[string]json.RawMessage{}
	for kind, list := range rs.Global {
		for _, r := range list {
			var id string
			if json.Unmarshal(r["rule_id"], &id) == nil && !strings.HasPrefix(id, ".") {
				delete(r, "default")
				own[kind] = append(own[kind], r)
			}
		}
	}
	data, _ := json.Marshal(own)
	return canonical(data)
}

// Do sends a request with an optional JSON body (the admin API's DELETE,
// for instance) and decodes the answer into out.
func (c *Client) Do(ctx context.Context, method, path, tok string, body, out any) error {
	return c.do(ctx, method, path, tok, body, out)
}
