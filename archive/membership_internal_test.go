package archive

import (
	"encoding/json"
	"testing"
)

// membershipOf reads what encoding/json reads, whatever the content.
func TestMembershipOfAgreesWithEncodingJSON(t *testing.T) {
	for _, content := range []string{
		`{"membership":"join"}`, `{"displayname":"A","membership":"leave"}`, `{}`, `{"membership":null}`,
		`{"membership":5}`, `{"membership":{"a":1}}`, `{"Membership":"ban"}`, `{"membership":"join","membership":"leave"}`,
		`{"membership":"jo\u0069n"}`, `{"membership":"\ud83d"}`, `{"membership":"join"`, `[]`, ``, `{"m\u0065mbership":"invite"}`,
	} {
		var c struct {
			Membership string `json:"membership"`
		}
		_ = json.Unmarshal([]byte(content), &c)
		if got := membershipOf([]byte(content)); got != c.Membership {
			t.Errorf("%s: %q, encoding/json %q", content, got, c.Membership)
		}
	}
}
