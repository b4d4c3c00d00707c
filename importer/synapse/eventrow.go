package synapse

import (
	"encoding/json"
	"fmt"
	"slices"
	"unsafe"

	"github.com/ferry-matrix/ferry/matrixevent"
)

// eventRow is what the tables need of an event's JSON beyond
// matrixevent's Fields.
type eventRow struct {
	depth int64
	// lacksReplaces: unsigned.replaces_state is absent (or null).
	lacksReplaces bool
	// hasURL: content.url is a string.
	hasURL bool
	// membership is content.membership when it is a string, else "".
	membership string
	// displayName and avatarURL are content's when strings, else nil.
	displayName, avatarURL any
	// relType and relParent are content["m.relates_to"]'s rel_type and
	// event_id when it is an object and they are strings, else "";
	// relKey is its key when a string, else nil.
	relType, relParent string
	relKey             any
}

// parseEventRow decodes an event as matrixevent.Parse does (the same
// Fields but for Content, left nil; the same refusals), with the other
// fields the tables need, in one pass over the JSON: scanEventRow where
// it is sure to give what encoding/json gives (the usual case), else
// decodeEventRow. The Fields' strings are substrings of js.
func parseEventRow(js string) (*matrixevent.Fields, *eventRow, error) {
	if f, x, ok := scanEventRow(js); ok {
		return f, x, nil
	}
	return decodeEventRow([]byte(js))
}

// eventRowOf is parseEventRow for an event whose fields the validation's
// one pass read already (f, archive.TappedEvent.Fields: each top-level
// member once, in lower case, without escapes; nil: parseEventRow): it
// reads only what the tables need beyond them (depth,
// unsigned.replaces_state, content's members) from f's raw values, and
// parses the whole event where that reading is not sure to give what
// parseEventRow gives. Fields from matrixevent.Parse would not do: it
// keeps the last of members named twice, where parseEventRow's decoder
// merges them.
func eventRowOf(js string, f *matrixevent.Fields) (*matrixevent.Fields, *eventRow, error) {
	if f == nil {
		return parseEventRow(js)
	}
	x := &eventRow{lacksReplaces: true}
	if !x.scanDepthUnsigned(rawString(f.Depth), rawString(f.Unsigned)) {
		return parseEventRow(js)
	}
	if _, ok := x.scanContent(rawString(f.Content)); !ok {
		return parseEventRow(js)
	}
	return f, x, nil
}

// rawString is raw's bytes as a string, without a copy: the strings
// scanned out of it keep it alive, and nothing writes into it.
func rawString(raw []byte) string { return unsafe.String(unsafe.SliceData(raw), len(raw)) }

// jsonEventRow is eventRow as encoding/json decodes it (its own content
// shadows RawEvent's).
type jsonEventRow struct {
	matrixevent.RawEvent
	Depth    int64 `json:"depth"`
	Unsigned struct {
		ReplacesState *string `json:"replaces_state"`
	} `json:"unsigned"`
	Content struct {
		URL         any `json:"url"`
		Membership  any `json:"membership"`
		DisplayName any `json:"displayname"`
		AvatarURL   any `json:"avatar_url"`
		RelatesTo   any `json:"m.relates_to"`
		// Redacts is any content's, which any client may set to anything
		// (as matrixevent.Parse does, a value not a string is no target).
		Redacts any `json:"redacts"`
	} `json:"content"`
}

// decodeEventRow is parseEventRow with encoding/json, for any JSON.
func decodeEventRow(data []byte) (*matrixevent.Fields, *eventRow, error) {
	var j jsonEventRow
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, nil, fmt.Errorf("event JSON: %w", err)
	}
	f, err := j.RawEvent.Fields(func() string { redacts, _ := j.Content.Redacts.(string); return redacts })
	if err != nil {
		return nil, nil, err
	}
	_, hasURL := j.Content.URL.(string)
	membership, _ := j.Content.Membership.(string)
	x := &eventRow{depth: j.Depth, lacksReplaces: j.Unsigned.ReplacesState == nil, hasURL: hasURL, membership: membership,
		displayName: stringOrNil(j.Content.DisplayName), avatarURL: stringOrNil(j.Content.AvatarURL)}
	if rel, ok := j.Content.RelatesTo.(map[string]any); ok {
		x.relType, _ = rel["rel_type"].(string)
		x.relParent, _ = rel["event_id"].(string)
		x.relKey = stringOrNil(rel["key"])
	}
	return f, x, nil
}

func stringOrNil(v any) any {
	if s, ok := v.(string); ok {
		return s
	}
	return nil
}

// The members scanEventRow reads: those of matrixevent.EventNames, then
// these.
var (
	rowNames       = append(slices.Clip(matrixevent.EventNames), "depth", "unsigned")
	unsignedNames  = []string{"replaces_state"}
	contentNames   = []string{"url", "membership", "displayname", "avatar_url", "m.relates_to", "redacts"}
	relatesToNames = []string{"rel_type", "event_id", "key"}
)

// scanEventRow is decodeEventRow without encoding/json (matrixevent's
// Scan functions), for JSON where that is sure to give the same; ok is
// false for the rest: invalid JSON, a key with an escape or in another
// case, a member named twice, a string field with an escape or invalid
// UTF-8, a field of another type than decodeEventRow decodes, a number
// encoding/json refuses in a field it decodes as interface{}, references
// that are not plain strings (room versions 1 and 2).
func scanEventRow(js string) (*matrixevent.Fields, *eventRow, bool) {
	var top [12]string
	if !matrixevent.ScanObject(js, rowNames, top[:]) {
		return nil, nil, false
	}
	x := &eventRow{lacksReplaces: true}
	if !x.scanDepthUnsigned(top[10], top[11]) {
		return nil, nil, false
	}
	redacts, ok := x.scanContent(top[7])
	if !ok {
		return nil, nil, false
	}
	f, ok := matrixevent.ScanFields(top[:10], func(string) (string, bool) { return redacts, true })
	return f, x, ok
}

// scanDepthUnsigned sets x's depth and lacksReplaces from the event's raw
// depth and unsigned ("" when absent).
func (x *eventRow) scanDepthUnsigned(depth, unsigned string) bool {
	if depth != "" && depth != "null" {
		var ok bool
		if x.depth, ok = matrixevent.ScanInt(depth); !ok {
			return false
		}
	}
	if unsigned != "" && unsigned != "null" {
		var rs [1]string
		if unsigned[0] != '{' || !matrixevent.ScanObject(unsigned, unsignedNames, rs[:]) {
			return false
		}
		switch {
		case rs[0] != "" && rs[0][0] == '"':
			x.lacksReplaces = false
		case rs[0] != "" && rs[0] != "null":
			return false
		}
	}
	return true
}

// scanContent sets x's fields from the event's raw content, and gives
// its redacts.
func (x *eventRow) scanContent(content string) (redacts string, ok bool) {
	if content == "" || content == "null" {
		return "", true
	}
	var c [6]string
	if content[0] != '{' || !matrixevent.ScanObject(content, contentNames, c[:]) {
		return "", false
	}
	for _, v := range c { // the fields decoded as interface{}
		if v != "" && !matrixevent.ScanAny(v) {
			return "", false
		}
	}
	x.hasURL = c[0] != "" && c[0][0] == '"'
	var ok1, ok2, ok3, ok4 bool
	x.membership, _, ok1 = scanIfString(c[1])
	x.displayName, ok2 = scanStringOrNil(c[2])
	x.avatarURL, ok3 = scanStringOrNil(c[3])
	ok4 = x.scanRelatesTo(c[4])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return "", false
	}
	redacts, _, ok = scanIfString(c[5])
	return redacts, ok
}

// scanRelatesTo sets x's rel fields from content["m.relates_to"], which
// encoding/json decodes into a map when it is an object.
func (x *eventRow) scanRelatesTo(rel string) bool {
	if rel == "" || rel[0] != '{' {
		return true
	}
	var r [3]string
	if !matrixevent.ScanObject(rel, relatesToNames, r[:]) {
		return false
	}
	var ok1, ok2, ok3 bool
	x.relType, _, ok1 = scanIfString(r[0])
	x.relParent, _, ok2 = scanIfString(r[1])
	x.relKey, ok3 = scanStringOrNil(r[2])
	return ok1 && ok2 && ok3
}

// scanIfString gives the text of raw, a value decoded as interface{},
// and whether it is a string; ok is false for a string ScanString
// refuses.
func scanIfString(raw string) (s string, isString, ok bool) {
	if raw == "" || raw[0] != '"' {
		return "", false, true
	}
	s, ok = matrixevent.ScanString(raw)
	return s, true, ok
}

// scanStringOrNil is stringOrNil for a raw value.
func scanStringOrNil(raw string) (any, bool) {
	s, isString, ok := scanIfString(raw)
	if !isString {
		return nil, ok
	}
	return s, ok
}
