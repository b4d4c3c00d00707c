package synapse

import "testing"

// The text Synapse indexes for search, event by event.
func TestSearchValue(t *testing.T) {
	for _, c := range []struct {
		typ, json, want string
		ok              bool
	}{
		{"m.room.message", `{"content":{"body":"hello\u0000world"}}`, "hello world", true},
		{"m.room.message", `{"content":{"body":42}}`, "", false},
		{"m.room.name", `{"content":{"name":"Ops"}}`, "Ops", true},
		{"m.room.topic", `{"content":{"topic":"plain","m.topic":{"m.text":[{"mimetype":"text/html","body":"<b>x</b>"},{"body":"first plain"}]}}}`, "first plain", true},
		{"m.room.topic", `{"content":{"topic":"plain","m.topic":"not an object"}}`, "plain", true},
		{"m.room.topic", `{"content":{"topic":"plain","m.topic":{"m.text":[{"body":7}]}}}`, "plain", true},
		{"m.room.topic", `{"content":{"m.topic":{"m.text":[{"body":"no topic key"}]}}}`, "", false},
		{"m.room.message", `not json`, "", false},
	} {
		got, ok := searchValue(c.typ, c.json)
		if got != c.want || ok != c.ok {
			t.Errorf("%s %s: %q %v, want %q %v", c.typ, c.json, got, ok, c.want, c.ok)
		}
	}
}
