// Package sourcetest is the conformance suite for source.Source adapters.
// It runs a whole export into memory and compares the records, content
// and all, with a ground-truth document recorded when the fixture was made
// (ground_truth.json for the Synapse fixtures; the Dendrite seeding client
// writes one in the same form). Every adapter runs the same checks.
package sourcetest

import (
	"encoding/json"
	"fmt"
	"os"
)

// GroundTruth is what a fixture holds, as recorded by whoever made it
// (through the client-server API, not from the database under test).
type GroundTruth struct {
	ServerName string      `json:"server_name"`
	Users      []TruthUser `json:"users"`
	Rooms      []TruthRoom `json:"rooms"`

	EventsTotal          int                       `json:"events_total"`
	EventsByRoomAndType  map[string]map[string]int `json:"events_by_room_and_type"`
	MessagesByRoomSender map[string]map[string]int `json:"messages_by_room_and_sender"`
	Edits                []TruthEdit               `json:"edits"`
	Replies              []TruthReply              `json:"replies"`
	Threads              []TruthThread             `json:"threads"`
	Reactions            []TruthReaction           `json:"reactions"`
	Redactions           []TruthRedaction          `json:"redactions"`
	Receipts             []TruthReceipt            `json:"receipts"`
	AccountData          []TruthAccountData        `json:"account_data"`
	RoomAccountData      []TruthAccountData        `json:"room_account_data"`
	Tags                 []TruthTag                `json:"tags"`
	PushRules            []TruthPushRule           `json:"push_rules"`
	PushRulesEnable      []TruthPushRuleEnable     `json:"push_rules_enable"`
	Devices              []TruthDevice             `json:"devices"`
	OneTimeKeysRemaining []TruthOneTimeKeys        `json:"one_time_keys_remaining"`
	E2E                  struct {
		DeviceKeys   map[string]TruthDeviceKeys   `json:"device_keys"`
		CrossSigning map[string]map[string]string `json:"cross_signing_public_keys"`
		Backup       struct {
			UserID         string `json:"user_id"`
			DeletedVersion string `json:"deleted_version"`
			Version        string `json:"version"`
		} `json:"room_key_backup"`
		RoomKeys []TruthRoomKey `json:"room_keys"`
	} `json:"e2e"`
	Media      []TruthMedia     `json:"media"`
	Thumbnails []TruthThumbnail `json:"thumbnails"`
}

// TruthEdit is one item of the ground truth.
type TruthEdit struct {
	RoomID   string `json:"room_id"`
	EventID  string `json:"event_id"`
	Replaces string `json:"replaces"`
	Sender   string `json:"sender"`
}

// TruthReply is one item of the ground truth.
type TruthReply struct {
	RoomID    string `json:"room_id"`
	EventID   string `json:"event_id"`
	InReplyTo string `json:"in_reply_to"`
}

// TruthThread is one item of the ground truth.
type TruthThread struct {
	RoomID  string   `json:"room_id"`
	Root    string   `json:"root"`
	Replies []string `json:"replies"`
}

// TruthReaction is one item of the ground truth.
type TruthReaction struct {
	RoomID   string `json:"room_id"`
	EventID  string `json:"event_id"`
	Target   string `json:"target"`
	Key      string `json:"key"`
	Sender   string `json:"sender"`
	Redacted bool   `json:"redacted"`
}

// TruthRedaction is one item of the ground truth.
type TruthRedaction struct {
	EventID        string `json:"event_id"`
	Redacts        string `json:"redacts"`
	RedactedType   string `json:"redacted_type"`
	RedactedSender string `json:"redacted_sender"`
	RoomID         string `json:"room_id"`
}

// TruthReceipt is one item of the ground truth.
type TruthReceipt struct {
	RoomID      string `json:"room_id"`
	ReceiptType string `json:"receipt_type"`
	UserID      string `json:"user_id"`
	EventID     string `json:"event_id"`
}

// TruthTag is one item of the ground truth.
type TruthTag struct {
	UserID  string          `json:"user_id"`
	RoomID  string          `json:"room_id"`
	Tag     string          `json:"tag"`
	Content json.RawMessage `json:"content"`
}

// TruthPushRule is one item of the ground truth.
type TruthPushRule struct {
	UserName   string            `json:"user_name"`
	RuleID     string            `json:"rule_id"`
	Actions    []json.RawMessage `json:"actions"`
	Conditions []json.RawMessage `json:"conditions"`
}

// TruthPushRuleEnable is one item of the ground truth.
type TruthPushRuleEnable struct {
	UserName string `json:"user_name"`
	RuleID   string `json:"rule_id"`
	Enabled  int    `json:"enabled"`
}

// TruthDevice is one item of the ground truth.
type TruthDevice struct {
	UserID      string `json:"user_id"`
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name"`
	Hidden      bool   `json:"hidden"`
}

// TruthOneTimeKeys is one item of the ground truth.
type TruthOneTimeKeys struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	Count    int    `json:"count"`
}

// TruthRoomKey is one item of the ground truth.
type TruthRoomKey struct {
	RoomID    string `json:"room_id"`
	SessionID string `json:"session_id"`
	Version   string `json:"version"`
}

// TruthMedia is one item of the ground truth.
type TruthMedia struct {
	MediaID     string `json:"media_id"`
	ContentType string `json:"content_type"`
	Bytes       int64  `json:"bytes"`
	UploadName  string `json:"upload_name"`
	Uploader    string `json:"uploader"`
	SHA256      string `json:"sha256"`
}

// TruthThumbnail is one item of the ground truth.
type TruthThumbnail struct {
	MediaID string `json:"media_id"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	Type    string `json:"type"`
	Method  string `json:"method"`
	Bytes   int64  `json:"bytes"`
}

// TruthDeviceKeys are the public keys of one device.
type TruthDeviceKeys struct {
	UserID      string `json:"user_id"`
	Ed25519     string `json:"ed25519"`
	Curve25519  string `json:"curve25519"`
	FallbackKey bool   `json:"fallback_key"`
}

// TruthMember is one membership in a room's current state.
type TruthMember struct {
	Membership string `json:"membership"`
	Sender     string `json:"sender"`
}

// TruthUser is a user of the fixture.
type TruthUser struct {
	UserID      string `json:"user_id"`
	Admin       bool   `json:"admin"`
	Deactivated bool   `json:"deactivated"`
	DisplayName string `json:"displayname"`
	AvatarURL   string `json:"avatar_url"`
	Password    string `json:"password"`
}

// TruthRoom is a room of the fixture with its current state.
type TruthRoom struct {
	RoomID            string                 `json:"room_id"`
	Label             string                 `json:"label"`
	Version           string                 `json:"room_version"`
	Creator           string                 `json:"creator"`
	InDirectory       bool                   `json:"in_directory"`
	Name              string                 `json:"name"`
	Topic             string                 `json:"topic"`
	CanonicalAlias    *string                `json:"canonical_alias"`
	JoinRule          string                 `json:"join_rule"`
	HistoryVisibility string                 `json:"history_visibility"`
	Encryption        *string                `json:"encryption"`
	Aliases           []string               `json:"aliases"`
	Members           map[string]TruthMember `json:"members_current"`
}

// TruthAccountData is one account data item.
type TruthAccountData struct {
	UserID  string          `json:"user_id"`
	RoomID  string          `json:"room_id"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// LoadGroundTruth reads a ground-truth document.
func LoadGroundTruth(path string) (*GroundTruth, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var g GroundTruth
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("ground truth %s: %w", path, err)
	}
	return &g, nil
}
