package matrixevent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// Checked is what Check found of one event.
type Checked struct {
	// ID is the event's own ID (IDErr when it cannot be computed).
	ID    string
	IDErr error
	// Signatures is CheckSignatures' outcome, SigErr its error.
	Signatures SignatureStatus
	SigErr     error
	// HashErr is CheckContentHash's error (nil when not asked for).
	HashErr error
	// Fields are the event's fields as Parse gives them, read in the same
	// pass where that is exact: JSON without a backslash, every field of
	// the type Parse wants. Content is then the canonical form of the
	// same object. nil: call Parse.
	Fields *Fields
}

// Check computes what EventID, CheckSignatures and (when contentHash is
// set) CheckContentHash compute, with the same results, but encodes the
// event's canonical JSON once instead of five times: the redacted form
// the event ID and the signatures cover is the same bytes. JSON of a
// shape the one-pass encoder leaves alone (invalid UTF-8, lone
// surrogates, duplicate keys, a content that is no object, ...) takes the
// general functions.
func Check(v RoomVersion, data []byte, keys KeyLookup, contentHash bool) Checked {
	if c, _, ok := checkFast(v, data, keys, contentHash, nil); ok {
		return c
	}
	var c Checked
	c.ID, c.IDErr = EventID(v, data)
	c.Signatures, c.SigErr = CheckSignatures(v, data, keys)
	if contentHash {
		c.HashErr = CheckContentHash(data)
	}
	return c
}

// pendingSigs are the signatures by known keys that checkFast left to a
// Batch, in the event's order, and the bytes they sign.
type pendingSigs struct {
	signed       []byte
	senderServer string
	sigs         []pendingSig
}

// pendingSig is one signature to verify; raw is nil when it does not
// decode (it counts as not verifying).
type pendingSig struct {
	server, keyID string
	pub           ed25519.PublicKey
	raw           []byte
}

// checkFast is Check's one pass (ok false: the general functions must do
// it). With deferTo it verifies no signature: the ones by known keys are
// returned (nil when there are none to verify) for a Batch, the bytes
// they sign appended to *deferTo (which must then stay as it is until
// they are verified), and c.Signatures is only what can be said without
// them.
func checkFast(v RoomVersion, data []byte, keys KeyLookup, contentHash bool, deferTo *[]byte) (c Checked, pending *pendingSigs, ok bool) {
	deferSigs := deferTo != nil
	canon, ok := canonical(data)
	if !ok {
		return c, nil, false
	}
	lists := memberLists.Get().(*memberList)
	defer lists.release()
	top, ok := lists.split(canon)
	if !ok {
		return c, nil, false
	}
	get := func(m []member, key string) ([]byte, bool) {
		for _, f := range m {
			if f.key == key {
				return f.val, true
			}
		}
		return nil, false
	}
	for _, f := range top {
		// encoding/json matches struct fields case-insensitively (with
		// Unicode folding): keys of any other shape go the general way.
		if !plainKey(f.key) {
			return c, nil, false
		}
	}
	c.Fields = plainFields(data, top)
	evType := ""
	if t, ok := get(top, "type"); ok {
		if s, ok := plainString(t); ok {
			evType = s
		} else if t[0] == '"' {
			return c, nil, false
		}
	}
	content := []byte("{}")
	if raw, ok := get(top, "content"); ok {
		if raw[0] != '{' {
			return c, nil, false
		}
		content = raw
	}
	keptContent, ok := redactedContent(v, evType, content, lists.split)
	if !ok {
		return c, nil, false
	}
	// The redacted event without signatures (and unsigned, which redaction
	// drops): what the reference hash and every signature cover.
	red := lists.scratch(len(top) + 1)
	for _, f := range top {
		if f.key == "signatures" || f.key == "content" {
			continue
		}
		if slices.Contains(topLevelKept, f.key) || (!v.UpdatedRedactions && slices.Contains(topLevelKeptPreV11, f.key)) {
			red = append(red, f)
		}
	}
	red = append(red, member{key: "content", val: keptContent})
	slices.SortFunc(red, byKey)
	var signed []byte
	if deferSigs {
		start := len(*deferTo)
		*deferTo = appendMembers(*deferTo, red)
		signed = (*deferTo)[start:len(*deferTo):len(*deferTo)]
	} else {
		bp := joined.Get().(*[]byte)
		signed = appendMembers((*bp)[:0], red)
		defer putJoined(bp, signed)
	}

	if v.EventIDFormat == 1 {
		c.ID, c.IDErr = EventID(v, data)
	} else {
		sum := sha256.Sum256(signed)
		if v.EventIDFormat == 3 {
			c.ID = "$" + base64.RawStdEncoding.EncodeToString(sum[:])
		} else {
			c.ID = "$" + base64.RawURLEncoding.EncodeToString(sum[:])
		}
	}

	sender := ""
	if s, ok := get(top, "sender"); ok {
		if sender, ok = plainString(s); !ok {
			return c, nil, false
		}
	}
	type sig struct{ server, keyID, sig string }
	var sigs []sig
	if raw, ok := get(top, "signatures"); ok {
		servers, ok := lists.split(raw)
		if !ok {
			return c, nil, false
		}
		for _, s := range servers {
			byKey, ok := lists.split(s.val)
			if !ok || strings.IndexByte(s.key, '\\') >= 0 {
				return c, nil, false
			}
			for _, k := range byKey {
				val, ok := plainString(k.val)
				if !ok || strings.IndexByte(k.key, '\\') >= 0 {
					return c, nil, false
				}
				sigs = append(sigs, sig{s.key, k.key, val})
			}
		}
	}
	senderServer := ServerOf(sender)
	c.Signatures = SignatureMissing
	if slices.ContainsFunc(sigs, func(s sig) bool { return s.server == senderServer }) {
		c.Signatures = SignatureUnverifiable
		for _, s := range sigs {
			pub, ok := keys(s.server, s.keyID)
			if !ok {
				continue
			}
			raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s.sig, "="))
			if deferSigs {
				if pending == nil {
					pending = &pendingSigs{signed: signed, senderServer: senderServer}
				}
				if err != nil {
					raw = nil
				}
				pending.sigs = append(pending.sigs, pendingSig{server: s.server, keyID: s.keyID, pub: pub, raw: raw})
				continue
			}
			if err != nil || !ed25519.Verify(pub, signed, raw) {
				c.Signatures, c.SigErr = SignatureInvalid, sigError(s.server, s.keyID)
				break
			}
			if s.server == senderServer {
				c.Signatures = SignatureValid
			}
		}
	}

	if contentHash {
		want := ""
		if raw, ok := get(top, "hashes"); ok && string(raw) != "null" {
			hm, ok := lists.split(raw)
			if !ok {
				return c, nil, false
			}
			for _, h := range hm {
				if !plainKey(h.key) {
					return c, nil, false
				}
			}
			if s, ok := get(hm, "sha256"); ok {
				if want, ok = plainString(s); !ok {
					return c, nil, false
				}
			}
		}
		w, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(want, "="))
		if err != nil || len(w) != sha256.Size {
			c.HashErr = fmt.Errorf("%w: hashes.sha256 is missing or malformed", ErrHashMismatch)
		} else {
			rest := lists.scratch(len(top))
			for _, f := range top {
				if f.key != "unsigned" && f.key != "signatures" && f.key != "hashes" {
					rest = append(rest, f)
				}
			}
			if got := hashMembers(rest); !bytes.Equal(got[:], w) {
				c.HashErr = ErrHashMismatch
			}
		}
	}
	return c, pending, true
}

// plainFields gives Parse's Fields from an event's canonical members top,
// or nil where it could differ from Parse's: data with a backslash (the
// canonical strings could differ from the original's), a field of
// another JSON type than Parse decodes (Parse fails, or converts), an
// origin_server_ts that is not an integer, references of unusual shape.
func plainFields(data []byte, top []member) *Fields {
	if bytes.IndexByte(data, '\\') >= 0 {
		return nil
	}
	f := &Fields{}
	str := func(raw []byte, dst *string) bool {
		if string(raw) == "null" {
			return true // encoding/json leaves the field as it is
		}
		s, ok := plainString(raw)
		*dst = s
		return ok
	}
	for _, m := range top {
		ok := true
		switch m.key {
		case "event_id":
			ok = str(m.val, &f.EventID)
		case "room_id":
			ok = str(m.val, &f.RoomID)
		case "type":
			ok = str(m.val, &f.Type)
		case "sender":
			ok = str(m.val, &f.Sender)
		case "redacts":
			ok = str(m.val, &f.Redacts)
		case "state_key":
			if string(m.val) != "null" {
				var sk string
				ok = str(m.val, &sk)
				f.StateKey = &sk
			}
		case "origin_server_ts":
			if string(m.val) != "null" {
				ts, err := strconv.ParseInt(string(m.val), 10, 64)
				f.OriginServerTS, ok = ts, err == nil
			}
		case "content":
			f.Content, ok = m.val, m.val[0] == '{'
		case "depth":
			f.Depth = m.val
		case "unsigned":
			f.Unsigned = m.val
		case "prev_events", "auth_events":
			refs, err := parseRefs(m.val)
			if m.key == "prev_events" {
				f.PrevEvents = refs
			} else {
				f.AuthEvents = refs
			}
			ok = err == nil
		}
		if !ok {
			return nil
		}
	}
	if f.Type == "" || f.Sender == "" {
		return nil
	}
	if f.Redacts == "" && f.Type == "m.room.redaction" {
		var c struct {
			Redacts string `json:"redacts"`
		}
		_ = json.Unmarshal(f.Content, &c)
		f.Redacts = c.Redacts
	}
	return f
}

func sigError(server, keyID string) error {
	return fmt.Errorf("signature by %s key %s does not verify", server, keyID)
}

// redactedContent is redactContent on canonical JSON: the kept members of
// content, an object whose members split gives (asked only when the event
// type keeps any).
func redactedContent(v RoomVersion, evType string, content []byte, split func([]byte) ([]member, bool)) ([]byte, bool) {
	var keys []string
	switch evType {
	case "m.room.member":
		keys = []string{"membership", "third_party_invite"} // of the invite, only signed
		if v.AuthorisedVia {
			keys = append(keys, "join_authorised_via_users_server")
		}
	case "m.room.create":
		if v.UpdatedRedactions {
			return content, true
		}
		keys = []string{"creator"}
	case "m.room.join_rules":
		keys = []string{"join_rule"}
		if v.JoinRulesAllow {
			keys = append(keys, "allow")
		}
	case "m.room.power_levels":
		keys = []string{"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
		if v.UpdatedRedactions {
			keys = append(keys, "invite")
		}
	case "m.room.aliases":
		if v.SpecialAliases {
			keys = []string{"aliases"}
		}
	case "m.room.history_visibility":
		keys = []string{"history_visibility"}
	case "m.room.redaction":
		if v.UpdatedRedactions {
			keys = []string{"redacts"}
		}
	}
	if len(keys) == 0 {
		return []byte("{}"), true
	}
	cm, ok := split(content)
	if !ok {
		return nil, false
	}
	var kept []member
	for _, f := range cm {
		if !slices.Contains(keys, f.key) {
			continue
		}
		if f.key != "third_party_invite" {
			kept = append(kept, f)
			continue
		}
		// Of a member event's third_party_invite, rooms with the updated
		// redaction rules keep signed.
		if !v.UpdatedRedactions || f.val[0] != '{' {
			continue
		}
		tpi, ok := split(f.val)
		if !ok {
			return nil, false
		}
		for _, t := range tpi {
			if t.key == "signed" {
				kept = append(kept, member{key: f.key, val: joinMembers([]member{t})})
			}
		}
	}
	return joinMembers(kept), true
}

// plainKey: a key encoding/json can only match exactly (lower-case ASCII
// letters, digits, '_' and '.').
func plainKey(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// plainString returns the text of a canonical JSON string without escapes.
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || bytes.IndexByte(raw, '\\') >= 0 {
		return "", false
	}
	return string(raw[1 : len(raw)-1]), true
}

// member is one member of a canonical JSON object: its key (the canonical
// string's text, escapes as written) and its value's bytes.
type member struct {
	key string
	val []byte
}

func byKey(a, b member) int { return strings.Compare(a.key, b.key) }

// joinMembers encodes members (sorted, canonical) as an object.
func joinMembers(ms []member) []byte {
	n := 2
	for _, m := range ms {
		n += len(m.key) + len(m.val) + 4
	}
	return appendMembers(make([]byte, 0, n), ms)
}

// joined holds the buffers hashMembers, and checkFast verifying
// signatures, join members into.
var joined = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// hashMembers is the SHA-256 of joinMembers(ms), joined into a reused
// buffer: the content hash needs the bytes only for as long as it hashes
// them.
func hashMembers(ms []member) [sha256.Size]byte {
	bp := joined.Get().(*[]byte)
	b := appendMembers((*bp)[:0], ms)
	sum := sha256.Sum256(b)
	putJoined(bp, b)
	return sum
}

// putJoined gives back to joined the buffer bp held, now b (as it grew),
// unless it outgrew an event's limit.
func putJoined(bp *[]byte, b []byte) {
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		joined.Put(bp)
	}
}

// appendMembers appends the object of members ms, in their order, to out.
func appendMembers(out []byte, ms []member) []byte {
	out = append(out, '{')
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, m.key...)
		out = append(out, '"', ':')
		out = append(out, m.val...)
	}
	return append(out, '}')
}

// memberList holds the member lists of one checkFast: one backing array
// for all of them, reused by the next check.
type memberList struct{ m []member }

var memberLists = sync.Pool{New: func() any { return &memberList{m: make([]member, 0, 64)} }}

// split appends obj's members (appendObjectMembers) to the list and returns them
// as a slice no later split writes into.
func (l *memberList) split(obj []byte) ([]member, bool) {
	start := len(l.m)
	m, ok := appendObjectMembers(l.m, obj)
	if !ok {
		return nil, false
	}
	l.m = m
	return m[start:len(m):len(m)], true
}

// scratch returns an empty slice of capacity n in the list's storage,
// which no later split or scratch writes into: a member list for the
// event's own use, given back with the list.
func (l *memberList) scratch(n int) []member {
	start := len(l.m)
	l.m = slices.Grow(l.m, n)[:start+n]
	return l.m[start:start:len(l.m)]
}

// release clears the list (its members point into an event), including
// what a failed split left beyond its length, and puts it back for reuse,
// unless an unusual event grew it.
func (l *memberList) release() {
	clear(l.m[:cap(l.m)])
	l.m = l.m[:0]
	if cap(l.m) <= 1024 {
		memberLists.Put(l)
	}
}

// appendObjectMembers appends the members of canonical JSON object obj to
// out. Their keys point into obj (no copy): obj must not change while
// they are in use.
func appendObjectMembers(out []member, obj []byte) ([]member, bool) {
	if len(obj) < 2 || obj[0] != '{' {
		return nil, false
	}
	if obj[1] == '}' {
		return out, true
	}
	i := 1
	for {
		kEnd := skipCanonical(obj, i)
		if kEnd < 0 || obj[i] != '"' || kEnd >= len(obj) || obj[kEnd] != ':' {
			return nil, false
		}
		vEnd := skipCanonical(obj, kEnd+1)
		if vEnd < 0 || vEnd >= len(obj) {
			return nil, false
		}
		out = append(out, member{key: unsafe.String(&obj[i+1], kEnd-1-(i+1)), val: obj[kEnd+1 : vEnd]})
		switch obj[vEnd] {
		case ',':
			i = vEnd + 1
		case '}':
			return out, vEnd == len(obj)-1
		default:
			return nil, false
		}
	}
}

// skipCanonical returns the end of the canonical JSON value at b[i:], or -1.
func skipCanonical(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
			i++
		case '{', '[':
			depth++
			i++
			continue
		case '}', ']':
			depth--
			i++
		default:
			for i < len(b) && b[i] != ',' && b[i] != ':' && b[i] != '}' && b[i] != ']' {
				i++
			}
		}
		if depth == 0 {
			if i > len(b) {
				return -1
			}
			return i
		}
		if depth < 0 {
			return -1
		}
		if i < len(b) && (b[i] == ',' || b[i] == ':') {
			i++
		}
	}
	return -1
}

// errNotFast: JSON the one-pass encoder leaves to the general one.
var errNotFast = errors.New("not handled by the one-pass encoder")

// canonical encodes data as Matrix canonical JSON in one pass, giving the
// bytes canonicaljson.CanonicalJSON gives (keys sorted, no whitespace,
// strings with only the escapes JSON needs, numbers as written); ok is
// false for what it leaves to that general encoder: invalid JSON, invalid
// UTF-8, lone surrogates, duplicate or escaped keys.
func canonical(data []byte) ([]byte, bool) {
	e := encoder{src: data, dst: make([]byte, 0, len(data))}
	if err := e.value(); err != nil {
		return nil, false
	}
	e.ws()
	if e.pos != len(e.src) {
		return nil, false
	}
	return e.dst, true
}

type encoder struct {
	src, dst []byte
	pos      int
	// scratch holds an object's members while object sorts them.
	scratch []byte
}

func (e *encoder) ws() { e.pos = wsEnd(e.src, e.pos) }

func (e *encoder) value() error {
	e.ws()
	if e.pos >= len(e.src) {
		return errNotFast
	}
	switch c := e.src[e.pos]; {
	case c == '{':
		return e.object()
	case c == '[':
		if e.open('[', ']') {
			return nil
		}
		for {
			if err := e.value(); err != nil {
				return err
			}
			e.ws()
			if e.pos >= len(e.src) {
				return errNotFast
			}
			switch e.src[e.pos] {
			case ',':
				e.pos++
				e.dst = append(e.dst, ',')
			case ']':
				e.pos++
				e.dst = append(e.dst, ']')
				return nil
			default:
				return errNotFast
			}
		}
	case c == '"':
		return e.str()
	case c == '-' || c >= '0' && c <= '9':
		return e.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(e.src[e.pos:], []byte(lit)) {
				e.pos += len(lit)
				e.dst = append(e.dst, lit...)
				return nil
			}
		}
		return errNotFast
	}
}

func (e *encoder) number() error {
	end := numberEnd(e.src, e.pos)
	if end < 0 {
		return errNotFast
	}
	e.dst = append(e.dst, e.src[e.pos:end]...)
	e.pos = end
	return nil
}

const upperHex = "0123456789ABCDEF"

// controlEscapes is the escape letter canonical JSON uses for a control
// character ('u': \u00XX).
const controlEscapes = "uuuuuuuubtnufruuuuuuuuuuuuuuuuuu"

func hex4[T string | []byte](b T) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for i := range 4 {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

func (e *encoder) str() error {
	s := e.src
	i := e.pos + 1
	e.dst = append(e.dst, '"')
	for {
		start := i
		for i < len(s) && s[i] >= 0x20 && s[i] != '"' && s[i] != '\\' && s[i] < 0x80 {
			i++
		}
		e.dst = append(e.dst, s[start:i]...)
		if i >= len(s) {
			return errNotFast
		}
		switch c := s[i]; {
		case c == '"':
			e.dst = append(e.dst, '"')
			e.pos = i + 1
			return nil
		case c < 0x20:
			return errNotFast
		case c >= 0x80:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n <= 1 {
				return errNotFast
			}
			e.dst = append(e.dst, s[i:i+n]...)
			i += n
		default: // a backslash
			if i+1 >= len(s) {
				return errNotFast
			}
			switch esc := s[i+1]; esc {
			case '"', '\\', 'b', 'f', 'n', 'r', 't':
				e.dst = append(e.dst, '\\', esc)
				i += 2
			case '/':
				e.dst = append(e.dst, '/')
				i += 2
			case 'u':
				r, ok := hex4(s[i+2:])
				if !ok {
					return errNotFast
				}
				i += 6
				switch {
				case r < 0x20:
					esc := controlEscapes[r]
					e.dst = append(e.dst, '\\', esc)
					if esc == 'u' {
						e.dst = append(e.dst, '0', '0', byte('0'+(r>>4)), upperHex[r&0xF])
					}
				case r == '"' || r == '\\':
					e.dst = append(e.dst, '\\', byte(r))
				case r >= 0xD800 && r < 0xDC00:
					if i+1 >= len(s) || s[i] != '\\' || s[i+1] != 'u' {
						return errNotFast
					}
					lo, ok := hex4(s[i+2:])
					if !ok || lo < 0xDC00 || lo >= 0xE000 {
						return errNotFast
					}
					i += 6
					e.dst = utf8.AppendRune(e.dst, 0x10000+((r&0x3FF)<<10|(lo&0x3FF)))
				case r >= 0xDC00 && r < 0xE000:
					return errNotFast
				default:
					e.dst = utf8.AppendRune(e.dst, r)
				}
			default:
				return errNotFast
			}
		}
	}
}

// span is one encoded member of an object being encoded: where it
// ("key":value) sits in dst, and its key's text (dst[start+1:keyEnd]).
type span struct {
	start, keyEnd, end int
}

// open copies an array's or object's opening bracket, and its closing
// one too when it is empty (which it reports).
func (e *encoder) open(opening, closing byte) bool {
	e.pos++
	e.dst = append(e.dst, opening)
	e.ws()
	if e.pos < len(e.src) && e.src[e.pos] == closing {
		e.pos++
		e.dst = append(e.dst, closing)
		return true
	}
	return false
}

func (e *encoder) object() error {
	objStart := len(e.dst)
	if e.open('{', '}') {
		return nil
	}
	var stack [16]span
	spans := stack[:0]
	key := func(sp span) []byte { return e.dst[sp.start+1 : sp.keyEnd] }
	sorted := true
	for {
		e.ws()
		if e.pos >= len(e.src) || e.src[e.pos] != '"' {
			return errNotFast
		}
		sp := span{start: len(e.dst)}
		if err := e.str(); err != nil {
			return err
		}
		sp.keyEnd = len(e.dst) - 1
		if bytes.IndexByte(key(sp), '\\') >= 0 {
			return errNotFast // sorted by the unescaped text: left to the general encoder
		}
		if n := len(spans); n > 0 && bytes.Compare(key(sp), key(spans[n-1])) <= 0 {
			sorted = false
		}
		e.ws()
		if e.pos >= len(e.src) || e.src[e.pos] != ':' {
			return errNotFast
		}
		e.pos++
		e.dst = append(e.dst, ':')
		if err := e.value(); err != nil {
			return err
		}
		sp.end = len(e.dst)
		spans = append(spans, sp)
		e.ws()
		if e.pos >= len(e.src) {
			return errNotFast
		}
		if c := e.src[e.pos]; c == ',' {
			e.pos++
			e.dst = append(e.dst, ',')
			continue
		} else if c != '}' {
			return errNotFast
		}
		e.pos++
		break
	}
	if !sorted {
		slices.SortFunc(spans, func(a, b span) int { return bytes.Compare(key(a), key(b)) })
		for i := 1; i < len(spans); i++ {
			if bytes.Equal(key(spans[i]), key(spans[i-1])) {
				return errNotFast // duplicate keys: left to the general encoder
			}
		}
		// The members move to scratch (free again once object returns:
		// nested objects are done by now) and back in order.
		e.scratch = append(e.scratch[:0], e.dst[objStart:]...)
		e.dst = append(e.dst[:objStart], '{')
		for i, sp := range spans {
			if i > 0 {
				e.dst = append(e.dst, ',')
			}
			e.dst = append(e.dst, e.scratch[sp.start-objStart:sp.end-objStart]...)
		}
	}
	e.dst = append(e.dst, '}')
	return nil
}
