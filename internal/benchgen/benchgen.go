// Package benchgen inflates the Synapse fixture database into a large one
// for export benchmarks: new users who join the fixture's rooms, and many
// messages, edits, replies and reactions, each hashed and signed with the
// fixture's key, with the state groups, memberships, current state and
// extremities Synapse itself would have written. Verification of the
// inflated archive therefore holds at scale.
//
// Room shares are skewed on purpose: rooms with 1%, 5% and 15% of the new
// events (Vault, Mod, DM), so that room selections of those sizes can be
// compared with the full export.
package benchgen

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-matrix/ferry/matrixevent"
)

// Version changes whenever the generated data would change, so that
// cached databases are rebuilt.
const Version = "2"

// Options of a run.
type Options struct {
	Database   string // a restored synapse-1.67 fixture
	SigningKey string // its signing key file
	Events     int    // new timeline events to add
	Users      int    // new users, each joining some rooms
	Log        func(format string, args ...any)
}

// Room shares of new timeline events (room ID -> weight).
var roomShares = map[string]float64{
	"!ogWeHYJmPRtxIzbUbr:fixture.test": 0.40, // square
	"!JYqnrDtCzMrzFHaaea:fixture.test": 0.29, // oncall
	"!ncVHMhTOeCGKwfUKBO:fixture.test": 0.15, // dm: the 15% room
	"!FMxGcxhpztUDbEOnlZ:fixture.test": 0.10, // gov
	"!jXsAyHRwxbXAilEItV:fixture.test": 0.05, // mod: the 5% room
	"!MlLrapIPzsVLZJkYQO:fixture.test": 0.01, // vault: the 1% room
}

// The rooms holding 1%, 5% and 15% of the generated events.
const (
	OnePercentRoom     = "!MlLrapIPzsVLZJkYQO:fixture.test"
	FivePercentRoom    = "!jXsAyHRwxbXAilEItV:fixture.test"
	FifteenPercentRoom = "!ncVHMhTOeCGKwfUKBO:fixture.test"
)

const server = "fixture.test"

type room struct {
	id        string
	version   matrixevent.RoomVersion
	last      string // latest event (the single forward extremity)
	depth     int64
	group     int64                // state group after the latest event
	state     map[[2]string]string // current state
	members   []string             // joined users
	recent    []string             // recent message event IDs, for replies, edits, reactions
	origEdges int
}

type gen struct {
	ctx   context.Context
	tx    pgx.Tx
	keyID string
	priv  ed25519.PrivateKey
	rng   *rand.Rand
	rooms map[string]*room
	order []string
	so    int64 // next stream ordering
	group int64 // next state group
	ts    int64 // origin_server_ts clock
	rows  map[string][][]any
	opts  Options
}

var columns = map[string][]string{
	"events": {"topological_ordering", "event_id", "type", "room_id", "processed", "outlier", "depth", "origin_server_ts",
		"received_ts", "sender", "contains_url", "instance_name", "stream_ordering", "state_key"},
	"event_json":            {"event_id", "room_id", "internal_metadata", "json", "format_version"},
	"event_to_state_groups": {"event_id", "state_group"},
	"state_groups":          {"id", "room_id", "event_id"},
	"state_group_edges":     {"state_group", "prev_state_group"},
	"state_groups_state":    {"state_group", "room_id", "type", "state_key", "event_id"},
	"state_events":          {"event_id", "room_id", "type", "state_key", "prev_state"},
	"room_memberships":      {"event_id", "user_id", "sender", "room_id", "membership", "display_name"},
	"event_edges":           {"event_id", "prev_event_id", "room_id", "is_state"},
	"users":                 {"name", "password_hash", "creation_ts", "admin", "is_guest", "deactivated", "shadow_banned"},
	"profiles":              {"user_id", "displayname"},
}

// Run inflates the database in one transaction.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	keyData, err := os.ReadFile(o.SigningKey)
	if err != nil {
		return err
	}
	f := strings.Fields(string(keyData))
	if len(f) != 3 {
		return fmt.Errorf("signing key %s: unexpected format", o.SigningKey)
	}
	seed, err := base64.RawStdEncoding.DecodeString(f[2])
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, o.Database)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	g := &gen{ctx: ctx, tx: tx, keyID: "ed25519:" + f[1], priv: ed25519.NewKeyFromSeed(seed), rng: rand.New(rand.NewPCG(42, 7)),
		rooms: map[string]*room{}, rows: map[string][][]any{}, opts: o}
	if err := g.load(); err != nil {
		return err
	}
	if err := g.addUsers(); err != nil {
		return err
	}
	if err := g.addMessages(); err != nil {
		return err
	}
	if err := g.finish(); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (g *gen) load() error {
	ctx := g.ctx
	if err := g.tx.QueryRow(ctx, `SELECT max(stream_ordering) + 1, (SELECT max(id) + 1 FROM state_groups), max(origin_server_ts) FROM events`).Scan(&g.so, &g.group, &g.ts); err != nil {
		return err
	}
	for id := range roomShares {
		r := &room{id: id, state: map[[2]string]string{}}
		var version string
		err := g.tx.QueryRow(ctx, `SELECT r.room_version, x.event_id, e.depth, s.state_group FROM rooms r
			JOIN event_forward_extremities x ON x.room_id = r.room_id JOIN events e ON e.event_id = x.event_id
			JOIN event_to_state_groups s ON s.event_id = x.event_id WHERE r.room_id = $1`, id).Scan(&version, &r.last, &r.depth, &r.group)
		if err != nil {
			return fmt.Errorf("room %s: %w", id, err)
		}
		if r.version, err = matrixevent.LookupRoomVersion(version); err != nil {
			return err
		}
		rows, err := g.tx.Query(ctx, `SELECT type, state_key, event_id, COALESCE(membership, '') FROM current_state_events WHERE room_id = $1`, id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var typ, key, ev, membership string
			if err := rows.Scan(&typ, &key, &ev, &membership); err != nil {
				rows.Close()
				return err
			}
			r.state[[2]string{typ, key}] = ev
			if typ == "m.room.member" && membership == "join" {
				r.members = append(r.members, key)
			}
		}
		rows.Close()
		g.rooms[id] = r
		g.order = append(g.order, id)
	}
	sortStrings(g.order)
	return nil
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

var words = strings.Fields(`the a deploy rollback pager incident budget review draft merge branch kiln solar panel server
	federation matrix room bridge sync timeline backup restore export archive migrate postgres vacuum index latency disk
	coffee lunch meeting tomorrow today friday weekend holiday release candidate ticket customer alert metric graph dashboard
	ok thanks sounds good agreed maybe later please check again works for me ☁️ 🚀 déjà vu naïve café 東京 привет`)

func (g *gen) sentence(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[g.rng.IntN(len(words))])
	}
	return b.String()
}

// event builds, hashes and signs an event and queues its rows.
func (g *gen) event(r *room, sender, typ string, stateKey *string, content map[string]any) (string, error) {
	g.ts += int64(1 + g.rng.IntN(3000))
	auth := []string{r.state[[2]string{"m.room.create", ""}], r.state[[2]string{"m.room.power_levels", ""}]}
	if m := r.state[[2]string{"m.room.member", sender}]; m != "" {
		auth = append(auth, m)
	}
	if typ == "m.room.member" {
		if jr := r.state[[2]string{"m.room.join_rules", ""}]; jr != "" {
			auth = append(auth, jr)
		}
	}
	r.depth++
	ev := map[string]any{"auth_events": auth, "prev_events": []string{r.last}, "type": typ, "room_id": r.id, "sender": sender,
		"content": content, "depth": r.depth, "origin": server, "origin_server_ts": g.ts}
	if stateKey != nil {
		ev["state_key"] = *stateKey
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return "", err
	}
	if raw, err = matrixevent.AddContentHash(raw); err != nil {
		return "", err
	}
	if raw, err = matrixevent.Sign(r.version, raw, server, g.keyID, g.priv); err != nil {
		return "", err
	}
	id, err := matrixevent.EventID(r.version, raw)
	if err != nil {
		return "", err
	}
	var replaces string
	if stateKey != nil {
		replaces = r.state[[2]string{typ, *stateKey}]
		unsigned := map[string]any{"age_ts": g.ts}
		if replaces != "" {
			unsigned["replaces_state"] = replaces
		}
		ub, _ := json.Marshal(unsigned)
		raw = append(raw[:len(raw)-1], []byte(`,"unsigned":`+string(ub)+`}`)...)
	}
	so := g.so
	g.so++
	var sk any
	if stateKey != nil {
		sk = *stateKey
	}
	g.add("events", r.depth, id, typ, r.id, true, false, r.depth, g.ts, g.ts, sender, false, "master", so, sk)
	g.add("event_json", id, r.id, "{}", string(raw), 3)
	g.add("event_edges", id, r.last, r.id, false)
	if stateKey != nil {
		group := g.group
		g.group++
		g.add("state_groups", group, r.id, id)
		g.add("state_group_edges", group, r.group)
		g.add("state_groups_state", group, r.id, typ, *stateKey, id)
		var prev any
		if replaces != "" {
			prev = replaces
		}
		g.add("state_events", id, r.id, typ, *stateKey, prev)
		r.group = group
		r.state[[2]string{typ, *stateKey}] = id
	}
	g.add("event_to_state_groups", id, r.group)
	r.last = id
	if len(g.rows["events"]) >= 20000 {
		if err := g.flush(); err != nil {
			return "", err
		}
	}
	return id, nil
}

func (g *gen) add(table string, values ...any) { g.rows[table] = append(g.rows[table], values) }

func (g *gen) flush() error {
	for _, table := range []string{"users", "profiles", "events", "event_json", "event_edges", "state_groups", "state_group_edges",
		"state_groups_state", "state_events", "event_to_state_groups", "room_memberships"} {
		rows := g.rows[table]
		if len(rows) == 0 {
			continue
		}
		if _, err := g.tx.CopyFrom(g.ctx, pgx.Identifier{table}, columns[table], pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copy into %s: %w", table, err)
		}
		g.rows[table] = rows[:0]
	}
	return nil
}

// BenchPassword is every generated user's password. One bcrypt hash (at
// the lowest cost) serves them all: hashing per user would dominate.
const BenchPassword = "bench-Fixtur3pw"

func (g *gen) addUsers() error {
	h, err := bcrypt.GenerateFromPassword([]byte(BenchPassword), bcrypt.MinCost)
	if err != nil {
		return err
	}
	hash := string(h)
	for i := 0; i < g.opts.Users; i++ {
		local := fmt.Sprintf("bench%05d", i)
		user := "@" + local + ":" + server
		g.add("users", user, hash, int64(1795000000+i), 0, 0, 0, false)
		g.add("profiles", local, "Bench User "+fmt.Sprint(i))
		// Join 1-3 rooms that allow it (public ones, and the others by invite-less join for the benchmark).
		n := 1 + g.rng.IntN(3)
		for j := 0; j < n; j++ {
			r := g.rooms[g.order[g.rng.IntN(len(g.order))]]
			if r.id == OnePercentRoom && g.rng.IntN(10) != 0 {
				continue
			}
			key := user
			content := map[string]any{"membership": "join", "displayname": "Bench User " + fmt.Sprint(i)}
			id, err := g.event(r, user, "m.room.member", &key, content)
			if err != nil {
				return err
			}
			g.add("room_memberships", id, user, user, r.id, "join", content["displayname"])
			r.members = append(r.members, user)
		}
	}
	g.opts.Log("added %d users", g.opts.Users)
	return g.flush()
}

func (g *gen) pickRoom() *room {
	x := g.rng.Float64()
	for _, id := range g.order {
		x -= roomShares[id]
		if x <= 0 {
			return g.rooms[id]
		}
	}
	return g.rooms[g.order[0]]
}

func (g *gen) addMessages() error {
	for i := 0; i < g.opts.Events; i++ {
		r := g.pickRoom()
		sender := r.members[g.rng.IntN(len(r.members))]
		var typ string
		var content map[string]any
		switch k := g.rng.IntN(100); {
		case r.id == OnePercentRoom:
			typ, content = "m.room.encrypted", map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "sender_key": g.sentence(1),
				"ciphertext": base64.RawStdEncoding.EncodeToString([]byte(g.sentence(20 + g.rng.IntN(40)))), "session_id": "benchsession", "device_id": "BENCH"}
		case k < 5 && len(r.recent) > 0:
			typ = "m.reaction"
			content = map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": r.recent[g.rng.IntN(len(r.recent))], "key": []string{"👍", "🚀", "ok", "🔥"}[g.rng.IntN(4)]}}
		case k < 8 && len(r.recent) > 0:
			typ = "m.room.message"
			body := g.sentence(4 + g.rng.IntN(12))
			content = map[string]any{"msgtype": "m.text", "body": "* " + body, "m.new_content": map[string]any{"msgtype": "m.text", "body": body},
				"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": r.recent[g.rng.IntN(len(r.recent))]}}
		case k < 20 && len(r.recent) > 0:
			typ = "m.room.message"
			content = map[string]any{"msgtype": "m.text", "body": g.sentence(3 + g.rng.IntN(30)),
				"m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": r.recent[g.rng.IntN(len(r.recent))]}}}
		case k < 23:
			typ = "m.room.message"
			content = map[string]any{"msgtype": "m.notice", "body": g.sentence(10 + g.rng.IntN(60))}
		default:
			typ = "m.room.message"
			content = map[string]any{"msgtype": "m.text", "body": g.sentence(2 + g.rng.IntN(40))}
		}
		id, err := g.event(r, sender, typ, nil, content)
		if err != nil {
			return err
		}
		if typ == "m.room.message" {
			r.recent = append(r.recent, id)
			if len(r.recent) > 50 {
				r.recent = r.recent[1:]
			}
		}
		if (i+1)%100000 == 0 {
			g.opts.Log("added %d events", i+1)
		}
	}
	return g.flush()
}

// finish rewrites each room's current state and forward extremity.
func (g *gen) finish() error {
	ctx := g.ctx
	for _, id := range g.order {
		r := g.rooms[id]
		if _, err := g.tx.Exec(ctx, `DELETE FROM current_state_events WHERE room_id = $1`, id); err != nil {
			return err
		}
		var rows [][]any
		for k, ev := range r.state {
			var membership any
			if k[0] == "m.room.member" {
				membership = "join"
			}
			rows = append(rows, []any{ev, id, k[0], k[1], membership})
		}
		if _, err := g.tx.CopyFrom(ctx, pgx.Identifier{"current_state_events"}, []string{"event_id", "room_id", "type", "state_key", "membership"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		// Memberships of the fixture's own users keep their real values.
		if _, err := g.tx.Exec(ctx, `UPDATE current_state_events c SET membership = m.membership FROM room_memberships m
			WHERE c.room_id = $1 AND c.type = 'm.room.member' AND m.event_id = c.event_id`, id); err != nil {
			return err
		}
		if _, err := g.tx.Exec(ctx, `UPDATE event_forward_extremities SET event_id = $2 WHERE room_id = $1`, id, r.last); err != nil {
			return err
		}
	}
	var seq *string
	if err := g.tx.QueryRow(ctx, `SELECT to_regclass('events_stream_seq')::text`).Scan(&seq); err != nil {
		return err
	}
	if seq != nil {
		if _, err := g.tx.Exec(ctx, `SELECT setval('events_stream_seq', $1)`, g.so); err != nil {
			return err
		}
	}
	_, err := g.tx.Exec(ctx, `ANALYZE`)
	return err
}
