package matrixevent

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// One-pass decoding of event JSON without encoding/json, for the fields
// of a struct: each function here gives what json.Unmarshal would give,
// or says (ok false) that it cannot be sure of that, and the caller then
// decodes with encoding/json (which also gives the error, when there is
// one). Values are substrings of the JSON, never copies.

// maxScanDepth is how deep ScanObject follows nesting; deeper JSON is
// left to encoding/json (which refuses beyond 10,000).
const maxScanDepth = 1000

// ScanObject reads js, a JSON object (whitespace around it allowed, as
// json.Unmarshal allows), and sets vals[i] to the raw value of the member
// that json.Unmarshal would decode into the struct field whose json name
// is names[i], "" when there is none. names are of lower-case ASCII
// letters, digits, '_' and '.'; vals is as long as names.
//
// ok is false where encoding/json may do otherwise: js is not valid JSON
// (anywhere, also inside members not named), nests deeper than
// maxScanDepth, a key has an escape, a key matches a name only without
// regard to case (encoding/json matches such keys too), or a name comes
// twice (encoding/json decodes both).
func ScanObject(js string, names, vals []string) bool {
	clear(vals)
	p := scanner{s: js}
	p.ws()
	if p.i >= len(js) || js[p.i] != '{' || !p.object(0, names, vals) {
		return false
	}
	p.ws()
	return p.i == len(js)
}

// ScanString gives the text of raw, a JSON string value (from
// ScanObject), as encoding/json decodes it into a string; ok is false for
// any other value, and for strings with invalid UTF-8 or a lone
// surrogate (which encoding/json replaces with U+FFFD). A string without
// escapes is a substring of raw.
func ScanString(raw string) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	s := raw[1 : len(raw)-1]
	if !isASCII(s) && !utf8.ValidString(s) {
		return "", false
	}
	if strings.IndexByte(s, '\\') < 0 {
		return s, true
	}
	return unescape(s)
}

// unescape undoes the escapes of a JSON string's text (valid, as the
// scanner passes them); ok is false for a lone surrogate.
func unescape(s string) (string, bool) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			out = append(out, s[i])
			i++
			continue
		}
		switch c := s[i+1]; c {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(s[i+2:])
			i += 6
			if r >= 0xD800 && r < 0xE000 {
				lo, ok := rune(0), false
				if r < 0xDC00 && strings.HasPrefix(s[i:], "\\u") {
					lo, ok = hex4(s[i+2:])
				}
				if !ok || lo < 0xDC00 || lo >= 0xE000 {
					return "", false
				}
				r = 0x10000 + (r&0x3FF)<<10 | lo&0x3FF
				i += 6
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, c)
		}
		i += 2
	}
	return string(out), true
}

// ScanInt gives raw, a JSON value, as encoding/json decodes it into an
// int64; ok is false for any other value (null included) and where
// encoding/json fails.
func ScanInt(raw string) (int64, bool) {
	n, err := strconv.ParseInt(raw, 10, 64)
	return n, err == nil
}

// ScanStrings gives raw, a JSON array of strings, as encoding/json
// decodes it into a []string (non-nil); ok is false for anything else
// (raw is checked), and for strings that ScanString refuses.
func ScanStrings(raw string) ([]string, bool) {
	p := scanner{s: raw}
	p.ws()
	if p.i >= len(raw) || raw[p.i] != '[' {
		return nil, false
	}
	out := []string{}
	for more := !p.open(']'); more; {
		p.ws()
		start := p.i
		if p.i >= len(raw) || raw[p.i] != '"' {
			return nil, false
		}
		if _, _, ok := p.str(); !ok {
			return nil, false
		}
		s, ok := ScanString(raw[start:p.i])
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if more, ok = p.next(']'); !ok {
			return nil, false
		}
	}
	p.ws()
	return out, p.i == len(raw)
}

// ScanAny says whether raw, a JSON value that ScanObject found, decodes
// into an interface{} without error, as it does unless a number is
// beyond float64's range.
func ScanAny(raw string) bool {
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '"':
			p := scanner{s: raw, i: i}
			if _, _, ok := p.str(); !ok {
				return false
			}
			i = p.i - 1
		case c == '-' || '0' <= c && c <= '9':
			p := scanner{s: raw, i: i}
			if !p.number() {
				return false
			}
			if _, err := strconv.ParseFloat(raw[i:p.i], 64); err != nil {
				return false
			}
			i = p.i - 1
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// scanner checks JSON syntax as encoding/json's scanner does.
type scanner struct {
	s string
	i int
}

func (p *scanner) ws() { p.i = wsEnd(p.s, p.i) }

// wsEnd returns the end of the JSON whitespace at s[i:].
func wsEnd[T string | []byte](s T, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// open passes the opening bracket at p.i and reports whether closing
// follows it (an empty object or array, then passed too).
func (p *scanner) open(closing byte) bool {
	p.i++
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == closing {
		p.i++
		return true
	}
	return false
}

// next passes what follows a member or element: a comma (more) or the
// closing bracket (done); ok is false for anything else.
func (p *scanner) next(closing byte) (more, ok bool) {
	p.ws()
	if p.i >= len(p.s) {
		return false, false
	}
	switch p.s[p.i] {
	case ',':
		p.i++
		return true, true
	case closing:
		p.i++
		return false, true
	}
	return false, false
}

// value passes the value at p.i.
func (p *scanner) value(depth int) bool {
	if p.i >= len(p.s) {
		return false
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(depth+1, nil, nil)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		_, _, ok := p.str()
		return ok
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	}
	return false
}

func (p *scanner) literal(lit string) bool {
	if !strings.HasPrefix(p.s[p.i:], lit) {
		return false
	}
	p.i += len(lit)
	return true
}

// object passes the object at p.i, setting vals of names (ScanObject's
// contract) unless names is nil.
func (p *scanner) object(depth int, names, vals []string) bool {
	if depth > maxScanDepth {
		return false
	}
	if p.open('}') {
		return true
	}
	for {
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return false
		}
		key, escaped, ok := p.str()
		if !ok {
			return false
		}
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return false
		}
		p.i++
		p.ws()
		start := p.i
		if !p.value(depth) {
			return false
		}
		if names != nil && !setMember(names, vals, key, escaped, p.s[start:p.i]) {
			return false
		}
		if more, ok := p.next('}'); !more {
			return ok
		}
	}
}

// setMember records the member key: val in vals if key is one of names;
// false where encoding/json could match it otherwise (see ScanObject).
func setMember(names, vals []string, key string, escaped bool, val string) bool {
	if escaped {
		return false
	}
	for j, n := range names {
		if key == n {
			if vals[j] != "" {
				return false
			}
			vals[j] = val
			return true
		}
	}
	if !plainKey(key) {
		for _, n := range names {
			if strings.EqualFold(key, n) {
				return false
			}
		}
	}
	return true
}

func (p *scanner) array(depth int) bool {
	if depth > maxScanDepth {
		return false
	}
	if p.open(']') {
		return true
	}
	for {
		p.ws()
		if !p.value(depth) {
			return false
		}
		if more, ok := p.next(']'); !more {
			return ok
		}
	}
}

// str passes the string at p.i, giving its text as written (escapes
// undone only if escaped is false).
func (p *scanner) str() (text string, escaped, ok bool) {
	s := p.s
	start := p.i + 1
	i := start
	for {
		for i < len(s) && s[i] >= 0x20 && s[i] != '"' && s[i] != '\\' {
			i++
		}
		if i >= len(s) || s[i] < 0x20 {
			return "", false, false
		}
		if s[i] == '"' {
			p.i = i + 1
			return s[start:i], escaped, true
		}
		escaped = true
		if i+1 >= len(s) {
			return "", false, false
		}
		switch s[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if _, ok := hex4(s[i+2:]); !ok {
				return "", false, false
			}
			i += 6
		default:
			return "", false, false
		}
	}
}

// number passes the number at p.i (JSON's grammar).
func (p *scanner) number() bool {
	end := numberEnd(p.s, p.i)
	if end < 0 {
		return false
	}
	p.i = end
	return true
}

// numberEnd returns the end of the JSON number at s[i:], or -1.
func numberEnd[T string | []byte](s T, i int) int {
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() bool {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > j
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case !digits():
		return -1
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return -1
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return -1
		}
	}
	return i
}

// EventNames are the members of an event's JSON that RawEvent decodes,
// in the order ScanFields wants their values.
var EventNames = []string{"event_id", "room_id", "type", "state_key", "sender", "redacts", "origin_server_ts", "content", "prev_events", "auth_events"}

// ScanFields gives Parse's Fields, but for Content (left nil), from the
// values ScanObject found for EventNames (vals may go on with other
// members'). contentRedacts gives the content's redacts, which Fields
// takes for a redaction without a top-level one, from the raw content;
// ok false where it cannot be sure. ok is false where Parse could give
// other Fields or fail.
func ScanFields(vals []string, contentRedacts func(content string) (string, bool)) (*Fields, bool) {
	f := &Fields{}
	var ok [6]bool
	f.EventID, ok[0] = ScanNullableString(vals[0])
	f.RoomID, ok[1] = ScanNullableString(vals[1])
	f.Type, ok[2] = ScanNullableString(vals[2])
	f.Sender, ok[3] = ScanNullableString(vals[4])
	f.Redacts, ok[4] = ScanNullableString(vals[5])
	ok[5] = true
	if raw := vals[6]; raw != "" && raw != "null" {
		f.OriginServerTS, ok[5] = ScanInt(raw)
	}
	if ok != [6]bool{true, true, true, true, true, true} || f.Type == "" || f.Sender == "" {
		return nil, false
	}
	if raw := vals[3]; raw != "" && raw != "null" {
		sk, ok := ScanString(raw)
		if !ok {
			return nil, false
		}
		f.StateKey = &sk
	}
	for _, refs := range []struct {
		raw string
		dst *[]string
	}{{vals[8], &f.PrevEvents}, {vals[9], &f.AuthEvents}} {
		if refs.raw == "" || refs.raw == "null" {
			continue
		}
		ids, ok := ScanStrings(refs.raw)
		if !ok {
			return nil, false
		}
		*refs.dst = ids
	}
	if f.Redacts == "" && f.Type == "m.room.redaction" {
		r, ok := contentRedacts(vals[7])
		if !ok {
			return nil, false
		}
		f.Redacts = r
	}
	return f, true
}

// ScanNullableString is ScanString for a string field that may be absent
// ("") or null: encoding/json then leaves the field as it was, "" here.
func ScanNullableString(raw string) (string, bool) {
	if raw == "" || raw == "null" {
		return "", true
	}
	return ScanString(raw)
}
