// Package matrixevent holds the few Matrix event algorithms an archive needs
// without a homeserver: the redaction algorithm of each room version, content
// hashes, reference-hash event IDs and signature checks. It works on the
// exact JSON bytes a homeserver stored and never re-encodes what it returns
// unless it has to (redaction produces canonical JSON).
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
	"strings"

	"maunium.net/go/mautrix/crypto/canonicaljson"
)

// RoomVersion describes what an archive needs to know about a room version.
type RoomVersion struct {
	ID string
	// EventIDFormat: 1 = event_id inside the event (v1, v2); 3 = reference hash,
	// standard base64 (v3); 4 = reference hash, URL-safe base64 (v4+).
	EventIDFormat int
	// Redaction rule generations.
	SpecialAliases    bool // m.room.aliases keeps "aliases" (v1-v5)
	JoinRulesAllow    bool // join_rules keeps "allow" (v8+)
	AuthorisedVia     bool // member keeps join_authorised_via_users_server (v9+)
	UpdatedRedactions bool // v11 (MSC2176, MSC3821, MSC3989)
}

var roomVersions = map[string]RoomVersion{
	"1":  {ID: "1", EventIDFormat: 1, SpecialAliases: true},
	"2":  {ID: "2", EventIDFormat: 1, SpecialAliases: true},
	"3":  {ID: "3", EventIDFormat: 3, SpecialAliases: true},
	"4":  {ID: "4", EventIDFormat: 4, SpecialAliases: true},
	"5":  {ID: "5", EventIDFormat: 4, SpecialAliases: true},
	"6":  {ID: "6", EventIDFormat: 4},
	"7":  {ID: "7", EventIDFormat: 4},
	"8":  {ID: "8", EventIDFormat: 4, JoinRulesAllow: true},
	"9":  {ID: "9", EventIDFormat: 4, JoinRulesAllow: true, AuthorisedVia: true},
	"10": {ID: "10", EventIDFormat: 4, JoinRulesAllow: true, AuthorisedVia: true},
	"11": {ID: "11", EventIDFormat: 4, JoinRulesAllow: true, AuthorisedVia: true, UpdatedRedactions: true},
}

// KnownRoomVersions lists the room versions this package implements.
func KnownRoomVersions() []string {
	return []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}
}

// ErrUnknownRoomVersion: the room version is not one this package implements.
var ErrUnknownRoomVersion = errors.New("unknown room version")

// LookupRoomVersion returns the rules of a room version.
func LookupRoomVersion(id string) (RoomVersion, error) {
	v, ok := roomVersions[id]
	if !ok {
		return RoomVersion{}, fmt.Errorf("%w %q", ErrUnknownRoomVersion, id)
	}
	return v, nil
}

// Fields are the parts of an event the archive checks look at.
type Fields struct {
	EventID        string
	RoomID         string
	Type           string
	StateKey       *string
	Sender         string
	Redacts        string
	OriginServerTS int64
	Content        json.RawMessage
	PrevEvents     []string
	AuthEvents     []string
	// Depth and Unsigned are the raw values of depth and unsigned (nil:
	// absent), for readers that need them; nothing here checks them.
	Depth, Unsigned json.RawMessage
}

// IsState reports whether the event is a state event.
func (f *Fields) IsState() bool { return f.StateKey != nil }

// RawEvent is an event's JSON as Parse decodes it. Embed it in a struct of
// more fields to decode them in the same pass, and get the Fields with its
// Fields method.
type RawEvent struct {
	EventID        string          `json:"event_id"`
	RoomID         string          `json:"room_id"`
	Type           string          `json:"type"`
	StateKey       *string         `json:"state_key"`
	Sender         string          `json:"sender"`
	Redacts        string          `json:"redacts"`
	OriginServerTS int64           `json:"origin_server_ts"`
	Content        json.RawMessage `json:"content"`
	PrevEvents     json.RawMessage `json:"prev_events"`
	AuthEvents     json.RawMessage `json:"auth_events"`
	Depth          json.RawMessage `json:"depth"`
	Unsigned       json.RawMessage `json:"unsigned"`
}

// Parse extracts the fields of an event. For room versions 1 and 2,
// references are [event_id, hashes] pairs; later versions use plain IDs.
func Parse(data []byte) (*Fields, error) {
	var raw RawEvent
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("event JSON: %w", err)
	}
	return raw.Fields(func() string {
		var c struct {
			Redacts string `json:"redacts"`
		}
		_ = json.Unmarshal(raw.Content, &c)
		return c.Redacts
	})
}

// Fields checks a decoded event and gives its Fields, as Parse does.
// contentRedacts returns content.redacts, which a redaction without a
// top-level redacts names its target with.
func (raw *RawEvent) Fields(contentRedacts func() string) (*Fields, error) {
	if raw.Type == "" || raw.Sender == "" {
		return nil, errors.New("event JSON lacks type or sender")
	}
	f := &Fields{EventID: raw.EventID, RoomID: raw.RoomID, Type: raw.Type, StateKey: raw.StateKey, Sender: raw.Sender,
		Redacts: raw.Redacts, OriginServerTS: raw.OriginServerTS, Content: raw.Content, Depth: raw.Depth, Unsigned: raw.Unsigned}
	var err error
	if f.PrevEvents, err = parseRefs(raw.PrevEvents); err != nil {
		return nil, fmt.Errorf("prev_events: %w", err)
	}
	if f.AuthEvents, err = parseRefs(raw.AuthEvents); err != nil {
		return nil, fmt.Errorf("auth_events: %w", err)
	}
	if f.Redacts == "" && f.Type == "m.room.redaction" {
		f.Redacts = contentRedacts()
	}
	return f, nil
}

func parseRefs(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if ids, ok := ScanStrings(string(raw)); ok {
		return ids, nil
	}
	return generalRefs(raw)
}

// generalRefs is parseRefs for any shape.
func generalRefs(raw json.RawMessage) ([]string, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		var id string
		if err := json.Unmarshal(it, &id); err == nil {
			out = append(out, id)
			continue
		}
		var pair []json.RawMessage
		if err := json.Unmarshal(it, &pair); err != nil || len(pair) == 0 {
			return nil, fmt.Errorf("reference %s is neither an event ID nor an [id, hashes] pair", it)
		}
		if err := json.Unmarshal(pair[0], &id); err != nil {
			return nil, fmt.Errorf("reference %s: %w", it, err)
		}
		out = append(out, id)
	}
	return out, nil
}

// ServerOf returns the server name part of a user, room or (v1/v2) event ID.
func ServerOf(id string) string {
	if i := strings.IndexByte(id, ':'); i >= 0 {
		return id[i+1:]
	}
	return ""
}

var (
	topLevelKept = []string{"event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
		"depth", "prev_events", "auth_events", "origin_server_ts"}
	topLevelKeptPreV11 = []string{"prev_state", "origin", "membership"}
)

// Redact applies the room version's redaction algorithm and returns the
// redacted event as canonical JSON. unsigned is dropped.
func Redact(v RoomVersion, data []byte) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("event JSON: %w", err)
	}
	var evType string
	_ = json.Unmarshal(top["type"], &evType)
	out := make(map[string]json.RawMessage, len(top))
	for k, val := range top {
		if slices.Contains(topLevelKept, k) || (!v.UpdatedRedactions && slices.Contains(topLevelKeptPreV11, k)) {
			out[k] = val
		}
	}
	var content map[string]json.RawMessage
	if c, ok := top["content"]; ok {
		if err := json.Unmarshal(c, &content); err != nil {
			return nil, fmt.Errorf("event content is not an object: %w", err)
		}
	}
	keptContent, err := json.Marshal(redactContent(v, evType, content))
	if err != nil {
		return nil, err
	}
	out["content"] = keptContent
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return canonicaljson.CanonicalJSON(b)
}

func redactContent(v RoomVersion, evType string, content map[string]json.RawMessage) map[string]json.RawMessage {
	keep := func(keys ...string) map[string]json.RawMessage {
		out := map[string]json.RawMessage{}
		for _, k := range keys {
			if val, ok := content[k]; ok {
				out[k] = val
			}
		}
		return out
	}
	switch evType {
	case "m.room.member":
		keys := []string{"membership"}
		if v.AuthorisedVia {
			keys = append(keys, "join_authorised_via_users_server")
		}
		out := keep(keys...)
		if v.UpdatedRedactions {
			var tpi map[string]json.RawMessage
			if json.Unmarshal(content["third_party_invite"], &tpi) == nil && tpi["signed"] != nil {
				b, _ := json.Marshal(map[string]json.RawMessage{"signed": tpi["signed"]})
				out["third_party_invite"] = b
			}
		}
		return out
	case "m.room.create":
		if v.UpdatedRedactions {
			return content
		}
		return keep("creator")
	case "m.room.join_rules":
		if v.JoinRulesAllow {
			return keep("join_rule", "allow")
		}
		return keep("join_rule")
	case "m.room.power_levels":
		keys := []string{"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
		if v.UpdatedRedactions {
			keys = append(keys, "invite")
		}
		return keep(keys...)
	case "m.room.aliases":
		if v.SpecialAliases {
			return keep("aliases")
		}
	case "m.room.history_visibility":
		return keep("history_visibility")
	case "m.room.redaction":
		if v.UpdatedRedactions {
			return keep("redacts")
		}
	}
	return map[string]json.RawMessage{}
}

func withoutKeys(data []byte, keys ...string) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("event JSON: %w", err)
	}
	for _, k := range keys {
		delete(top, k)
	}
	b, err := json.Marshal(top)
	if err != nil {
		return nil, err
	}
	return canonicaljson.CanonicalJSON(b)
}

// ContentHash computes the sha256 content hash of an unredacted event.
func ContentHash(data []byte) ([]byte, error) {
	b, err := withoutKeys(data, "unsigned", "signatures", "hashes")
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

// ErrHashMismatch: the event's content differs from what its hash covers.
var ErrHashMismatch = errors.New("content hash does not match")

// CheckContentHash verifies hashes.sha256 of an unredacted event.
func CheckContentHash(data []byte) error {
	var ev struct {
		Hashes struct {
			SHA256 string `json:"sha256"`
		} `json:"hashes"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return fmt.Errorf("event JSON: %w", err)
	}
	want, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(ev.Hashes.SHA256, "="))
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("%w: hashes.sha256 is missing or malformed", ErrHashMismatch)
	}
	got, err := ContentHash(data)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return ErrHashMismatch
	}
	return nil
}

// ReferenceHash is the sha256 of the redacted event without signatures.
func ReferenceHash(v RoomVersion, data []byte) ([]byte, error) {
	red, err := Redact(v, data)
	if err != nil {
		return nil, err
	}
	b, err := withoutKeys(red, "signatures", "unsigned", "age_ts")
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

// EventID returns the event's ID: from the JSON for v1/v2, else computed
// from the reference hash.
func EventID(v RoomVersion, data []byte) (string, error) {
	if v.EventIDFormat == 1 {
		f, err := Parse(data)
		if err != nil {
			return "", err
		}
		if f.EventID == "" {
			return "", errors.New("room version 1/2 event has no event_id")
		}
		return f.EventID, nil
	}
	h, err := ReferenceHash(v, data)
	if err != nil {
		return "", err
	}
	if v.EventIDFormat == 3 {
		return "$" + base64.RawStdEncoding.EncodeToString(h), nil
	}
	return "$" + base64.RawURLEncoding.EncodeToString(h), nil
}

// KeyLookup returns the public key of a server's key ID, if known.
type KeyLookup func(serverName, keyID string) (ed25519.PublicKey, bool)

// SignatureStatus is the outcome of checking an event's signatures.
type SignatureStatus int

const (
	SignatureValid        SignatureStatus = iota // the sender's server signed it and every known key verifies
	SignatureInvalid                             // a signature by a known key does not verify
	SignatureMissing                             // the sender's server did not sign it
	SignatureUnverifiable                        // no key of the sender's server is known offline
)

func (s SignatureStatus) String() string {
	return [...]string{"valid", "invalid", "missing", "unverifiable offline"}[s]
}

// CheckSignatures verifies an event's signatures (which cover its redacted
// form, so redacted events verify too). The sender's server must have signed;
// every signature whose key is known must verify.
func CheckSignatures(v RoomVersion, data []byte, keys KeyLookup) (SignatureStatus, error) {
	var ev struct {
		Sender     string                       `json:"sender"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return SignatureInvalid, fmt.Errorf("event JSON: %w", err)
	}
	red, err := Redact(v, data)
	if err != nil {
		return SignatureInvalid, err
	}
	signed, err := withoutKeys(red, "signatures", "unsigned")
	if err != nil {
		return SignatureInvalid, err
	}
	senderServer := ServerOf(ev.Sender)
	if len(ev.Signatures[senderServer]) == 0 {
		return SignatureMissing, nil
	}
	senderVerified := false
	for server, sigs := range ev.Signatures {
		for keyID, sig := range sigs {
			pub, ok := keys(server, keyID)
			if !ok {
				continue
			}
			raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(sig, "="))
			if err != nil || !ed25519.Verify(pub, signed, raw) {
				return SignatureInvalid, fmt.Errorf("signature by %s key %s does not verify", server, keyID)
			}
			if server == senderServer {
				senderVerified = true
			}
		}
	}
	if !senderVerified {
		return SignatureUnverifiable, nil
	}
	return SignatureValid, nil
}

// Sign adds a signature by serverName's key to an event and returns the new
// JSON (canonical). Used to build test archives and by targets that must
// re-sign nothing else.
func Sign(v RoomVersion, data []byte, serverName, keyID string, priv ed25519.PrivateKey) ([]byte, error) {
	red, err := Redact(v, data)
	if err != nil {
		return nil, err
	}
	signed, err := withoutKeys(red, "signatures", "unsigned")
	if err != nil {
		return nil, err
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(priv, signed))
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, err
	}
	sigs := map[string]map[string]string{}
	if raw, ok := top["signatures"]; ok {
		if err := json.Unmarshal(raw, &sigs); err != nil {
			return nil, err
		}
	}
	if sigs[serverName] == nil {
		sigs[serverName] = map[string]string{}
	}
	sigs[serverName][keyID] = sig
	top["signatures"], _ = json.Marshal(sigs)
	b, err := json.Marshal(top)
	if err != nil {
		return nil, err
	}
	return canonicaljson.CanonicalJSON(b)
}

// AddContentHash sets hashes.sha256 on an unsigned event.
func AddContentHash(data []byte) ([]byte, error) {
	h, err := ContentHash(data)
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, err
	}
	top["hashes"], _ = json.Marshal(map[string]string{"sha256": base64.RawStdEncoding.EncodeToString(h)})
	b, err := json.Marshal(top)
	if err != nil {
		return nil, err
	}
	return canonicaljson.CanonicalJSON(b)
}

// WithoutUnsigned returns an event's JSON without its top-level "unsigned"
// member (server-local annotations, outside hashes and signatures), every
// other byte kept as it was. JSON without "unsigned" is returned as is.
func WithoutUnsigned(data []byte) ([]byte, error) {
	if !bytes.Contains(data, []byte(`"unsigned"`)) {
		return data, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("event JSON is not an object")
	}
	first := true
	for dec.More() {
		start := dec.InputOffset() // after '{' or after the previous value
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("event JSON: %w", err)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, fmt.Errorf("event JSON: %w", err)
		}
		end := dec.InputOffset()
		if tok != "unsigned" {
			first = false
			continue
		}
		if first { // also drop the comma after the member
			rest := bytes.TrimLeft(data[end:], " \t\r\n")
			if len(rest) > 0 && rest[0] == ',' {
				end = int64(len(data) - len(rest) + 1)
			}
		}
		out := make([]byte, 0, len(data)-int(end-start))
		out = append(append(out, data[:start]...), data[end:]...)
		return out, nil
	}
	return data, nil
}
