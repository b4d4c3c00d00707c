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
	Edits                []struct {
		RoomID   string `json:"room_id"`
		EventID  string `json:"event_id"`
		Replaces string `json:"replaces"`
		Sender   string `json:"sender"`
	} `json:"edits"`
	Replies []struct {
		RoomID    string `json:"room_id"`
		EventID   string `json:"event_id"`
		InReplyTo string `json:"in_reply_to"`
	} `json:"replies"`
	Threads []struct {
		RoomID  string   `json:"room_id"`
		Root    string   `json:"root"`
		Replies []string `json:"replies"`
	} `json:"threads"`
	Reactions []struct {
		RoomID   string `json:"room_id"`
		EventID  string `json:"event_id"`
		Target   string `json:"target"`
		Key      string `json:"key"`
		Sender   string `json:"sender"`
		Redacted bool   `json:"redacted"`
	} `json:"reactions"`
	Redactions []struct {
		EventID        string `json:"event_id"`
		Redacts        string `json:"redacts"`
		RedactedType   string `json:"redacted_type"`
		RedactedSender string `json:"redacted_sender"`
		RoomID         string `json:"room_id"`
	} `json:"redactions"`
	Receipts []struct {
		RoomID      string `json:"room_id"`
		ReceiptType string `json:"receipt_type"`
		UserID      string `json:"user_id"`
		EventID     string `json:"event_id"`
	} `json:"receipts"`
	AccountData     []TruthAccountData `json:"account_data"`
	RoomAccountData []TruthAccountData `json:"room_account_data"`
	Tags            []struct {
		UserID  string          `json:"user_id"`
		RoomID  string          `json:"room_id"`
		Tag     string          `json:"tag"`
		Content json.RawMessage `json:"content"`
	} `json:"tags"`
	PushRules []struct {
		UserName   string            `json:"user_name"`
		RuleID     string            `json:"rule_id"`
		Actions    []json.RawMessage `json:"actions"`
		Conditions []json.RawMessage `json:"conditions"`
	} `json:"push_rules"`
	PushRulesEnable []struct {
		UserName string `json:"user_name"`
		RuleID   string `json:"rule_id"`
		Enabled  int    `json:"enabled"`
	} `json:"push_rules_enable"`
	Devices []struct {
		UserID      string `json:"user_id"`
		DeviceID    string `json:"device_id"`
		DisplayName string `json:"display_name"`
		Hidden      bool   `json:"hidden"`
	} `json:"devices"`
	OneTimeKeysRemaining []struct {
		UserID   string `json:"user_id"`
		DeviceID string `json:"device_id"`
		Count    int    `json:"count"`
	} `json:"one_time_keys_remaining"`
	E2E struct {
		DeviceKeys map[string]struct {
			UserID      string `json:"user_id"`
			Ed25519     string `json:"ed25519"`
			Curve25519  string `json:"curve25519"`
			FallbackKey bool   `json:"fallback_key"`
		} `json:"device_keys"`
		CrossSigning map[string]map[string]string `json:"cross_signing_public_keys"`
		Backup       struct {
			UserID         string `json:"user_id"`
			DeletedVersion string `json:"deleted_version"`
			Version        string `json:"version"`
		} `json:"room_key_backup"`
		RoomKeys []struct {
			RoomID    string `json:"room_id"`
			SessionID string `json:"session_id"`
			Version   string `json:"version"`
		} `json:"room_keys"`
	} `json:"e2e"`
	Media []struct {
		MediaID     string `json:"media_id"`
		ContentType string `json:"content_type"`
		Bytes       int64  `json:"bytes"`
		UploadName  string `json:"upload_name"`
		Uploader    string `json:"uploader"`
		SHA256      string `json:"sha256"`
	} `json:"media"`
	Thumbnails []struct {
		MediaID string `json:"media_id"`
		Width   int    `json:"width"`
		Height  int    `json:"height"`
		Type    string `json:"type"`
		Method  string `json:"method"`
		Bytes   int64  `json:"bytes"`
	} `json:"thumbnails"`
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
	RoomID            string   `json:"room_id"`
	Label             string   `json:"label"`
	Version           string   `json:"room_version"`
	Creator           string   `json:"creator"`
	InDirectory       bool     `json:"in_directory"`
	Name              string   `json:"name"`
	Topic             string   `json:"topic"`
	CanonicalAlias    *string  `json:"canonical_alias"`
	JoinRule          string   `json:"join_rule"`
	HistoryVisibility string   `json:"history_visibility"`
	Encryption        *string  `json:"encryption"`
	Aliases           []string `json:"aliases"`
	Members           map[string]struct {
		Membership string `json:"membership"`
		Sender     string `json:"sender"`
	} `json:"members_current"`
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
